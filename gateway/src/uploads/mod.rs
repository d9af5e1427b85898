//! Writing to an upload, apart from HTTP: the handlers say where a body goes
//! ([`BodyTarget`]) and learn where the upload stands ([`Stored`]); this component reserves the
//! body's memory, takes the upload's write lease, cuts the body into pieces and sends them to
//! the uploader, and gives the lease back.

mod lock;
mod store;

pub use store::{log_body_end, store_body, BodyTarget};
