//! Writing to an upload, apart from HTTP: a handler says where a body goes ([`BodyTarget`])
//! and learns from [`store_body`] where the upload stands; this component reserves the body's
//! memory, takes the upload's write lease, cuts the body into pieces and sends them to the
//! uploader, and gives the lease back.

mod lock;
mod store;

pub use store::{log_body_end, store_body, BodyTarget};
