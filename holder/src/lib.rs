//! holder receives encoded presentations from fflow over FTP and serves the same directory tree
//! to video players over HTTP, with the media types, caching, CORS and byte ranges they need.

pub mod config;
mod error;
mod ftp;
mod media;
mod metrics;
mod request_path;
mod routes;
mod startup;

pub use config::{Config, ConfigError};
pub use startup::App;
