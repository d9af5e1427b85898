//! Public write API of vod: tus resumable uploads and the JSON video API.
//!
//! The gateway never writes Video, Flow or UploadSession: every write is a request to the
//! uploader over AMQP (a body's bytes, when the uploaders' chunk listeners are configured,
//! streamed to one of them over HTTP), and clients are answered only with what the uploader
//! confirmed. It reads PostgreSQL to answer `HEAD` and the JSON `GET`s.

mod auth;
mod body_pace;
mod chunk_client;
mod config;
mod direct_uploads;
mod error;
mod events;
mod metrics;
mod openapi;
mod plain_text;
mod read_model;
mod routes;
mod startup;
mod state;
mod stream_through;
mod title;
mod tus;
mod tus_names;
mod upload_stream;
pub mod uploader_client;
mod uploads;

pub use config::Config;
pub use error::ApiError;
pub use startup::App;
