//! The wire contracts of vod: everything that crosses a process boundary.
//!
//! Ids, statuses, the AMQP messages between gateway, uploader and fflow, the HTTP DTOs that
//! fflow and the gateway's JSON API exchange, and the layout of a presentation on holder. This
//! crate depends on serde and little else so that every service can share it.

pub mod access;
pub mod api;
pub mod commands;
pub mod direct_upload;
pub mod event;
pub mod fflow;
mod ids;
pub mod layout;
pub mod outcome;
#[cfg(feature = "postgres")]
mod postgres;
pub mod queues;
mod status;
pub mod webhook;

pub use ids::{
    ApiKeyId, DeliveryId, DirectUploadId, FlowId, ProjectId, SessionId, VideoId, WebhookId,
    WriterId,
};
pub use status::{EncodePath, FlowStatus, SessionStatus, UnknownStatus, UploadKind, VideoStatus};
