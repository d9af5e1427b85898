//! The HTTP API of an fflow replica, as the uploader calls it.
//!
//! `POST {default}/processes` with a [`CreateProcess`] body goes to any replica (through a
//! reverse proxy, or one picked from a configured list); the replica that takes it answers with
//! its own address, e.g. `http://fflow:4050/r1/`. Every later call for that session goes to that
//! address, relative to it:
//!
//! - `PUT  {address}sessions/{session_id}/chunks?offset=N&epoch=E`, body = bytes →
//!   [`ChunkWritten`]; `epoch` is optional (see "Writer fencing" below)
//! - `POST {address}sessions/{session_id}/finish` with a [`FinishProcess`] body → 202; encoding
//!   starts (after joining the parts of a concatenated upload), the outcome comes later on the
//!   outcomes queue
//! - `GET  {address}sessions/{session_id}/source` → the bytes received so far, for the replica
//!   that joins this session into a concatenated upload
//! - `GET {address}sessions/{session_id}` → 204 while the replica holds the session, else 404
//! - `DELETE {address}sessions/{session_id}` → 204; the process and its spool are removed
//!
//! `DELETE {default}/videos/{video_id}` also goes to any replica: it removes the video's
//! directory on holder (every presentation of the video, hidden temporaries of an interrupted
//! upload included) and answers 204, also when there was nothing to remove, so it may be
//! retried freely. A malformed id is refused with 400 `invalid_video_id`; 503
//! `holder_unavailable` or 502 `holder_refused` mean the tree may still be (partly) there.
//!
//! # Authentication
//!
//! Every route but `/healthz`, `/readyz` and `/metrics` is internal: it takes
//! `Authorization: Bearer <token>`, the secret shared by the uploaders and the fflow replicas
//! (`FFLOW_INTERNAL_TOKEN` = `UPLOADER_FFLOW_TOKEN`). A call without it, or with another one, is
//! refused with 401 `unauthorized` before anything else is looked at.
//!
//! Errors are JSON [`FflowError`]s. A chunk at an offset at or below what the replica holds
//! overwrites from that offset (so a redelivered chunk is harmless); one past it is refused with
//! 409 `offset_gap`. A chunk (or a new process) that would leave the spool's disk with less than
//! the replica's free-space reserve is refused with 507 `insufficient_storage`, and the session
//! keeps exactly the bytes it held before.
//!
//! # Writer fencing
//!
//! Each write lease on an upload carries a fencing token, its `epoch`: a `u64` that grows with
//! every new lease. A chunk without `epoch` is epoch 0. A session keeps the highest epoch a
//! chunk it accepted came with, in its `session.json`, so a restarted replica keeps it too:
//!
//! - a chunk whose epoch is **lower** is refused with 409 `stale_writer`; the session's bytes
//!   and its received count are untouched;
//! - a chunk whose epoch is **equal or higher** is checked (offset, length) and written as any
//!   other; once it passed those checks, a higher epoch is recorded and persisted before the
//!   first byte is written, so it stays recorded even when the write then fails.
//!
//! A writer whose lease was taken over can therefore no longer change the upload, even when its
//! chunk reaches fflow after the new writer's. The epoch is checked after the session's phase
//! (a finished session answers `session_finished` to any writer) and before the offset.

use serde::{Deserialize, Serialize};

use crate::{FlowId, SessionId, VideoId};

/// Path of process creation, relative to the default (or any replica's) address.
pub const PROCESSES_PATH: &str = "processes";

/// Path of a video's removal from holder, relative to the default (or any replica's) address.
pub fn video_path(video_id: VideoId) -> String {
    format!("videos/{video_id}")
}

/// Body of `POST /processes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateProcess {
    pub session_id: SessionId,
    /// What the encode is for; `None` for a partial upload, which is never encoded itself.
    #[serde(default)]
    pub target: Option<EncodeTarget>,
    /// `None` while the length is deferred; the finish call gives it.
    #[serde(default)]
    pub total_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeTarget {
    pub video_id: VideoId,
    pub flow_id: FlowId,
    /// Which MP4 downloads the encode makes besides the presentation.
    #[serde(default)]
    pub mp4_support: Mp4Support,
}

/// MP4 downloads of a video: `none`, or `standard` (`highest.mp4`, the top rendition with its
/// sound, and `audio.m4a` when there is sound), remuxed from the stored renditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mp4Support {
    #[default]
    None,
    Standard,
}

/// Body of `POST sessions/{id}/finish`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishProcess {
    /// The source's length, known by now even when it was deferred.
    pub total_bytes: u64,
    /// For a concatenated upload: the partial uploads whose bytes, in order, are the source.
    #[serde(default)]
    pub parts: Vec<PartSource>,
}

/// Where a partial upload's bytes are: the replica holding it, by id. fflow reaches another
/// replica only at the address its own configuration gives that id; a part naming a replica it
/// does not know is refused with 400 `unknown_replica`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSource {
    /// Id of the replica holding it, as in [`ProcessCreated::replica_id`].
    pub replica_id: String,
    pub session_id: SessionId,
    pub len: u64,
}

/// Answer to `POST /processes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCreated {
    /// The replica's own address, ending in `/`, e.g. `http://127.0.0.1:4050/r1/`.
    pub address: String,
    pub replica_id: String,
}

/// The replica id an advertised address ends in (`http://fflow:4050/r1/` → `r1`).
pub fn replica_id_of_address(address: &str) -> Option<&str> {
    address
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && !id.contains(':'))
}

/// Answer to a chunk `PUT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkWritten {
    /// Bytes of the source the replica now holds.
    pub received_bytes: u64,
}

/// An error answer of fflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FflowError {
    pub code: FflowErrorCode,
    pub message: String,
}

/// The stable `code` of an [`FflowError`], spelled in snake case on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FflowErrorCode {
    /// 404: the call named another replica than the one it reached.
    WrongReplica,
    /// 400: the request is malformed.
    InvalidRequest,
    /// 404: no such route.
    NotFound,
    /// 400: the path does not name a video id.
    InvalidVideoId,
    /// 503: holder could not be reached.
    HolderUnavailable,
    /// 502: holder answered but did not do what was asked.
    HolderRefused,
    /// 404: the replica holds no such session (deleted, or lost with its spool).
    SessionNotFound,
    /// 409: the session exists for another flow or size.
    SessionConflict,
    /// 409: the chunk's writer epoch is below the highest one the session has seen.
    StaleWriter,
    /// 409: the chunk starts past the bytes received.
    OffsetGap,
    /// 413: the chunk would go past the announced length.
    LengthExceeded,
    /// 413: the chunk is larger than the replica takes at once.
    ChunkTooLarge,
    /// 409: the session takes no more chunks.
    SessionFinished,
    /// 409: finish came before every byte.
    Incomplete,
    /// 409: finish gave another length than the one announced.
    LengthMismatch,
    /// 409: a partial upload is never encoded itself.
    NotEncodable,
    /// 400: the chunk's body ended before its declared length.
    BodyInterrupted,
    /// 500: the replica failed; the cause is in its log.
    InternalError,
    /// 401: the call did not carry the internal token.
    Unauthorized,
    /// 400: a part of a concatenated upload names a replica this one does not know.
    UnknownReplica,
    /// 507: the spool's disk would keep less than the replica's free-space reserve; nothing of
    /// the chunk was kept (or no session created). The same call may pass once space is freed.
    InsufficientStorage,
    /// A code this side does not know (from an older or newer peer), kept as it was spelled.
    #[serde(untagged)]
    Other(String),
}

impl FflowErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            Self::WrongReplica => "wrong_replica",
            Self::InvalidRequest => "invalid_request",
            Self::NotFound => "not_found",
            Self::InvalidVideoId => "invalid_video_id",
            Self::HolderUnavailable => "holder_unavailable",
            Self::HolderRefused => "holder_refused",
            Self::SessionNotFound => "session_not_found",
            Self::SessionConflict => "session_conflict",
            Self::StaleWriter => "stale_writer",
            Self::OffsetGap => "offset_gap",
            Self::LengthExceeded => "length_exceeded",
            Self::ChunkTooLarge => "chunk_too_large",
            Self::SessionFinished => "session_finished",
            Self::Incomplete => "incomplete",
            Self::LengthMismatch => "length_mismatch",
            Self::NotEncodable => "not_encodable",
            Self::BodyInterrupted => "body_interrupted",
            Self::InternalError => "internal_error",
            Self::Unauthorized => "unauthorized",
            Self::UnknownReplica => "unknown_replica",
            Self::InsufficientStorage => "insufficient_storage",
            Self::Other(code) => code,
        }
    }
}

impl std::fmt::Display for FflowErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `sessions/{id}/chunks`, relative to a replica address.
pub fn chunks_path(session_id: SessionId) -> String {
    format!("sessions/{session_id}/chunks")
}

/// `sessions/{id}/finish`, relative to a replica address.
pub fn finish_path(session_id: SessionId) -> String {
    format!("sessions/{session_id}/finish")
}

/// `sessions/{id}/source`, relative to a replica address.
pub fn source_path(session_id: SessionId) -> String {
    format!("sessions/{session_id}/source")
}

/// `sessions/{id}`, relative to a replica address.
pub fn session_path(session_id: SessionId) -> String {
    format!("sessions/{session_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [FflowErrorCode; 21] = [
        FflowErrorCode::WrongReplica,
        FflowErrorCode::InvalidRequest,
        FflowErrorCode::NotFound,
        FflowErrorCode::InvalidVideoId,
        FflowErrorCode::HolderUnavailable,
        FflowErrorCode::HolderRefused,
        FflowErrorCode::SessionNotFound,
        FflowErrorCode::SessionConflict,
        FflowErrorCode::StaleWriter,
        FflowErrorCode::OffsetGap,
        FflowErrorCode::LengthExceeded,
        FflowErrorCode::ChunkTooLarge,
        FflowErrorCode::SessionFinished,
        FflowErrorCode::Incomplete,
        FflowErrorCode::LengthMismatch,
        FflowErrorCode::NotEncodable,
        FflowErrorCode::BodyInterrupted,
        FflowErrorCode::InternalError,
        FflowErrorCode::Unauthorized,
        FflowErrorCode::UnknownReplica,
        FflowErrorCode::InsufficientStorage,
    ];

    #[test]
    fn the_replica_id_is_the_last_segment_of_an_address() {
        assert_eq!(replica_id_of_address("http://fflow:4050/r1/"), Some("r1"));
        assert_eq!(
            replica_id_of_address("http://127.0.0.1:4051/fflow-2"),
            Some("fflow-2")
        );
        assert_eq!(replica_id_of_address("http://127.0.0.1:4051/"), None);
        assert_eq!(replica_id_of_address("r1"), None);
    }

    #[test]
    fn every_code_is_spelled_on_the_wire_as_its_name_says_and_parses_back() {
        for code in KNOWN {
            let json = serde_json::to_value(&code).expect("a code serializes");
            assert_eq!(json, serde_json::Value::from(code.as_str()));
            assert_eq!(
                serde_json::from_value::<FflowErrorCode>(json).expect("a code parses"),
                code
            );
        }
    }

    #[test]
    fn a_code_of_another_version_parses_and_keeps_its_spelling() {
        let error: FflowError = serde_json::from_str(r#"{"code":"quota_exceeded","message":"m"}"#)
            .expect("an unknown code parses");
        assert_eq!(
            error.code,
            FflowErrorCode::Other("quota_exceeded".to_owned())
        );
        assert_eq!(
            serde_json::to_string(&error).expect("an error serializes"),
            r#"{"code":"quota_exceeded","message":"m"}"#
        );
    }
}
