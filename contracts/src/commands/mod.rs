//! Requests from the gateway to the uploader, and the uploader's replies.
//!
//! They travel over AMQP as request/response: the gateway publishes to the commands queue with
//! `reply_to` and `correlation_id` set, one uploader replica handles the request and publishes a
//! [`Reply`] back. Every request is safe to process twice.
//!
//! Each request is a type of its own that implements [`Request`], which ties it to the type of
//! its reply, so that a caller gets that reply or an error, never another request's reply. The
//! AMQP `type` property names the request ([`CommandKind::message_type`]), and the reply carries
//! the same `type`. A chunk carries raw bytes, so its message body is framed (see
//! [`encode_chunk`]); every other request's body is its JSON ([`JsonRequest`]). A reply's body is
//! the JSON of `{"ok": <reply>}` or `{"rejected": {"code", "message"}}`.

mod chunk;
mod direct_upload;
mod project;
mod upload;
mod video;
mod webhook;
mod write_lock;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use chunk::{
    chunk_frame_prefix, decode_chunk, encode_chunk, ChunkCommit, ChunkHeader, ChunkReply,
    FrameError, CHUNKS_PATH, CHUNK_HEADER,
};
pub use direct_upload::{
    CancelDirectUpload, CreateDirectUpload, DirectUploadCancelled, DirectUploadStored,
};
pub use project::{
    ApiKeyCreated, ApiKeyRevoked, ApiKeysTouched, CreateApiKey, CreateProject, ProjectCreated,
    ProjectQuotasSet, RevokeApiKey, SetProjectQuotas, TouchApiKeys,
};
pub use upload::{
    CreateFinalUpload, CreatePartialUpload, CreateUpload, DeclareLength, LengthDeclared,
    PartialUploadCreated, TerminateUpload, UploadCreated, UploadTerminated,
};
pub use video::{
    present, CreateVideo, DeleteVideo, UpdateVideo, VideoCreated, VideoDeleted, VideoUpdated,
};
pub use webhook::{
    CreateWebhook, DeleteWebhook, QueueDeliveries, RotateWebhookSecret, ToDeliver, UpdateWebhook,
    WebhookDeleted,
};
pub use write_lock::{LockUpload, UnlockUpload, UploadLocked, UploadUnlocked};

/// A request the uploader answers with a [`Request::Reply`].
pub trait Request {
    /// Which request this is; its [`CommandKind::message_type`] names it on the wire.
    const KIND: CommandKind;
    /// What the uploader answers when it did the request.
    type Reply: Serialize + DeserializeOwned + Debug + Send + 'static;
}

/// A request whose message body is its JSON: every request but a chunk, which is framed.
pub trait JsonRequest: Request + Serialize + DeserializeOwned {}

/// Implements [`Request`] and [`JsonRequest`] for a request sent as JSON.
macro_rules! json_request {
    ($request:ty, $kind:ident => $reply:ty) => {
        impl $crate::commands::Request for $request {
            const KIND: $crate::commands::CommandKind = $crate::commands::CommandKind::$kind;
            type Reply = $reply;
        }

        impl $crate::commands::JsonRequest for $request {}
    };
}
pub(crate) use json_request;

/// Every request, by the name it has on the wire and in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandKind {
    CreateVideo,
    CreateUpload,
    CreatePartialUpload,
    CreateFinalUpload,
    TerminateUpload,
    DeclareLength,
    LockUpload,
    UnlockUpload,
    Chunk,
    CreateProject,
    CreateApiKey,
    RevokeApiKey,
    TouchApiKeys,
    UpdateVideo,
    DeleteVideo,
    CreateDirectUpload,
    CancelDirectUpload,
    SetProjectQuotas,
    CreateWebhook,
    UpdateWebhook,
    DeleteWebhook,
    RotateWebhookSecret,
    QueueDeliveries,
}

impl CommandKind {
    pub const ALL: [CommandKind; 23] = [
        CommandKind::CreateVideo,
        CommandKind::CreateUpload,
        CommandKind::CreatePartialUpload,
        CommandKind::CreateFinalUpload,
        CommandKind::TerminateUpload,
        CommandKind::DeclareLength,
        CommandKind::LockUpload,
        CommandKind::UnlockUpload,
        CommandKind::Chunk,
        CommandKind::CreateProject,
        CommandKind::CreateApiKey,
        CommandKind::RevokeApiKey,
        CommandKind::TouchApiKeys,
        CommandKind::UpdateVideo,
        CommandKind::DeleteVideo,
        CommandKind::CreateDirectUpload,
        CommandKind::CancelDirectUpload,
        CommandKind::SetProjectQuotas,
        CommandKind::CreateWebhook,
        CommandKind::UpdateWebhook,
        CommandKind::DeleteWebhook,
        CommandKind::RotateWebhookSecret,
        CommandKind::QueueDeliveries,
    ];

    /// The request's name: `create_video`, …, `chunk`.
    pub const fn name(self) -> &'static str {
        match self {
            CommandKind::CreateVideo => "create_video",
            CommandKind::CreateUpload => "create_upload",
            CommandKind::CreatePartialUpload => "create_partial_upload",
            CommandKind::CreateFinalUpload => "create_final_upload",
            CommandKind::TerminateUpload => "terminate_upload",
            CommandKind::DeclareLength => "declare_length",
            CommandKind::LockUpload => "lock_upload",
            CommandKind::UnlockUpload => "unlock_upload",
            CommandKind::Chunk => "chunk",
            CommandKind::CreateProject => "create_project",
            CommandKind::CreateApiKey => "create_api_key",
            CommandKind::RevokeApiKey => "revoke_api_key",
            CommandKind::TouchApiKeys => "touch_api_keys",
            CommandKind::UpdateVideo => "update_video",
            CommandKind::DeleteVideo => "delete_video",
            CommandKind::CreateDirectUpload => "create_direct_upload",
            CommandKind::CancelDirectUpload => "cancel_direct_upload",
            CommandKind::SetProjectQuotas => "set_project_quotas",
            CommandKind::CreateWebhook => "create_webhook",
            CommandKind::UpdateWebhook => "update_webhook",
            CommandKind::DeleteWebhook => "delete_webhook",
            CommandKind::RotateWebhookSecret => "rotate_webhook_secret",
            CommandKind::QueueDeliveries => "queue_deliveries",
        }
    }

    /// The AMQP `type` property of the request and of its reply: `vod.<name>`.
    pub const fn message_type(self) -> &'static str {
        match self {
            CommandKind::CreateVideo => "vod.create_video",
            CommandKind::CreateUpload => "vod.create_upload",
            CommandKind::CreatePartialUpload => "vod.create_partial_upload",
            CommandKind::CreateFinalUpload => "vod.create_final_upload",
            CommandKind::TerminateUpload => "vod.terminate_upload",
            CommandKind::DeclareLength => "vod.declare_length",
            CommandKind::LockUpload => "vod.lock_upload",
            CommandKind::UnlockUpload => "vod.unlock_upload",
            CommandKind::Chunk => "vod.chunk",
            CommandKind::CreateProject => "vod.create_project",
            CommandKind::CreateApiKey => "vod.create_api_key",
            CommandKind::RevokeApiKey => "vod.revoke_api_key",
            CommandKind::TouchApiKeys => "vod.touch_api_keys",
            CommandKind::UpdateVideo => "vod.update_video",
            CommandKind::DeleteVideo => "vod.delete_video",
            CommandKind::CreateDirectUpload => "vod.create_direct_upload",
            CommandKind::CancelDirectUpload => "vod.cancel_direct_upload",
            CommandKind::SetProjectQuotas => "vod.set_project_quotas",
            CommandKind::CreateWebhook => "vod.create_webhook",
            CommandKind::UpdateWebhook => "vod.update_webhook",
            CommandKind::DeleteWebhook => "vod.delete_webhook",
            CommandKind::RotateWebhookSecret => "vod.rotate_webhook_secret",
            CommandKind::QueueDeliveries => "vod.queue_deliveries",
        }
    }

    /// The request an AMQP `type` property names, if any.
    pub fn from_message_type(message_type: &str) -> Option<CommandKind> {
        CommandKind::ALL
            .into_iter()
            .find(|kind| kind.message_type() == message_type)
    }
}

/// Why the uploader refused or could not do a command. The gateway maps each code to an HTTP
/// status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// No such upload session.
    UploadNotFound,
    /// The session exists but takes no more bytes (finished, terminated, expired or failed).
    UploadClosed,
    /// The chunk does not start at the upload's current offset.
    OffsetMismatch,
    /// The chunk would go past the declared length.
    LengthExceeded,
    /// The upload expired; its bytes are gone.
    UploadExpired,
    /// Another request holds the upload's write lock.
    UploadLocked,
    /// A declared length is not acceptable: already set to another value, or below the bytes
    /// already uploaded.
    InvalidLength,
    /// The partial uploads named by a final upload cannot be joined.
    InvalidConcat,
    /// `video_id` names no video (of the project).
    VideoNotFound,
    /// No such project.
    ProjectNotFound,
    /// Another project has this name.
    ProjectNameTaken,
    /// No such key in the project.
    KeyNotFound,
    /// A direct upload's URL was used already, timed out or was cancelled.
    UploadUrlExpired,
    /// No such direct upload in the project.
    DirectUploadNotFound,
    /// The direct upload created its upload already and cannot be cancelled.
    DirectUploadFinished,
    /// The project stores as many bytes as its quota allows: no upload is created.
    QuotaExceeded,
    /// No such webhook endpoint in the project.
    WebhookNotFound,
    /// No such event in the project (or it is past its retention).
    EventNotFound,
    /// The project has as many open uploads as its quota allows; retry after
    /// `retry_after_secs`.
    TooManyOpenUploads,
    /// The project created as many uploads this hour as its quota allows; retry once the hour
    /// ends (`retry_after_secs`).
    RateLimited,
    /// The command itself is malformed.
    InvalidCommand,
    /// A dependency (fflow, the database) could not be reached; retrying later may work.
    Unavailable,
    /// The encoder has no room for more bytes (its disk is down to its free-space reserve);
    /// nothing of the chunk was stored, and retrying once space is freed may work.
    InsufficientStorage,
    /// The uploader failed in a way retrying does not mend (a defect, or a state it cannot
    /// handle); the cause is in its log only.
    Internal,
}

/// A refused command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
    /// When retrying may succeed, in seconds from now (the gateway's `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl Reject {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The refusal, with the seconds after which retrying may succeed.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

/// The body of a reply message: `T` is the [`Request::Reply`] of the request it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    Ok(T),
    Rejected(Reject),
}

impl<T> From<Result<T, Reject>> for Reply<T> {
    fn from(result: Result<T, Reject>) -> Self {
        match result {
            Ok(reply) => Reply::Ok(reply),
            Err(reject) => Reply::Rejected(reject),
        }
    }
}

impl<T> From<Reply<T>> for Result<T, Reject> {
    fn from(reply: Reply<T>) -> Self {
        match reply {
            Reply::Ok(reply) => Ok(reply),
            Reply::Rejected(reject) => Err(reject),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_serializes_with_stable_codes() {
        let reply = Reply::<UploadTerminated>::Rejected(Reject::new(
            RejectCode::OffsetMismatch,
            "expected 5",
        ));
        let json = serde_json::to_value(&reply).unwrap_or_default();
        assert_eq!(json["rejected"]["code"], "offset_mismatch");
        let internal = serde_json::to_value(RejectCode::Internal).unwrap_or_default();
        assert_eq!(internal, "internal");
        let full = serde_json::to_value(RejectCode::InsufficientStorage).unwrap_or_default();
        assert_eq!(full, "insufficient_storage");
    }

    #[test]
    fn every_kind_has_a_message_type_of_its_own() {
        for kind in CommandKind::ALL {
            assert_eq!(
                CommandKind::from_message_type(kind.message_type()),
                Some(kind)
            );
            assert_eq!(kind.message_type(), format!("vod.{}", kind.name()));
        }
        assert_eq!(CommandKind::from_message_type("vod.command"), None);
    }

    #[test]
    fn a_reply_of_another_shape_does_not_decode_as_the_expected_one() {
        let staged = serde_json::json!({"ok": {"type": "staged", "staged_to": 3}});
        assert!(serde_json::from_value::<Reply<VideoCreated>>(staged.clone()).is_err());
        assert!(matches!(
            serde_json::from_value::<Reply<ChunkReply>>(staged),
            Ok(Reply::Ok(ChunkReply::Staged { staged_to: 3 }))
        ));
    }
}
