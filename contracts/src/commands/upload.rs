//! Creating an upload (tus creation and concatenation), declaring its length, ending it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::json_request;
use crate::{DirectUploadId, FlowId, PlaybackPolicy, ProjectId, SessionId, VideoId};

/// Create a flow and its upload session (the tus upload), on a new video unless `video_id`
/// names an existing one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateUpload {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub video_id: Option<VideoId>,
    pub title: String,
    pub filename: Option<String>,
    /// `None` while the length is deferred (tus `creation-defer-length`).
    pub total_bytes: Option<u64>,
    /// The raw tus `Upload-Metadata` header, echoed on `HEAD`.
    pub metadata: Option<String>,
    /// The direct upload whose URL the upload is created through: it is claimed in the same
    /// transaction (`upload_url_expired` when it is not waiting any more), and its new video's
    /// title and description win over the upload's.
    #[serde(default)]
    pub direct_upload_id: Option<DirectUploadId>,
    /// The new video's policy (`playback_policy` in `Upload-Metadata`); an existing video, or
    /// a direct upload's, keeps its own.
    #[serde(default)]
    pub playback_policy: PlaybackPolicy,
}

/// Create a partial upload (tus `concatenation`): an upload session with no flow, whose bytes
/// only count once a final upload joins them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatePartialUpload {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub total_bytes: Option<u64>,
    pub metadata: Option<String>,
}

/// Create a final upload from complete partial uploads, in order: a flow whose source is their
/// joined bytes, processed at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateFinalUpload {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub video_id: Option<VideoId>,
    pub title: String,
    pub filename: Option<String>,
    pub metadata: Option<String>,
    pub parts: Vec<SessionId>,
    /// As in [`CreateUpload`].
    #[serde(default)]
    pub playback_policy: PlaybackPolicy,
}

/// The client gave up on the upload (tus termination).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerminateUpload {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub session_id: SessionId,
}

/// Declares the length of an upload created with a deferred length; it never changes
/// afterwards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeclareLength {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub session_id: SessionId,
    pub total_bytes: u64,
}

/// An upload with its flow, and the flow's video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UploadCreated {
    pub video_id: VideoId,
    pub flow_id: FlowId,
    pub session_id: SessionId,
    /// When the upload expires unless more bytes arrive; `None` once it is complete.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialUploadCreated {
    pub session_id: SessionId,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The upload is terminated (also when it already was).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTerminated {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthDeclared {
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
}

json_request!(CreateUpload, CreateUpload => UploadCreated);
json_request!(CreatePartialUpload, CreatePartialUpload => PartialUploadCreated);
json_request!(CreateFinalUpload, CreateFinalUpload => UploadCreated);
json_request!(TerminateUpload, TerminateUpload => UploadTerminated);
json_request!(DeclareLength, DeclareLength => LengthDeclared);
