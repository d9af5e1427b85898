//! holder receives encoded presentations from fflow over FTP and serves the same directory tree
//! to video players over HTTP, with the media types, caching, CORS and byte ranges they need.

mod byte_range;
mod conditional;
pub mod config;
mod error;
mod ftp;
mod media;
mod metrics;
mod request_path;
mod routes;
mod startup;
mod store;

pub use config::{Config, ConfigError, S3Settings, StoreKind};
pub use startup::App;
