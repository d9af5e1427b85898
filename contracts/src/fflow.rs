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
//! Errors are JSON [`FflowError`]s. A chunk at an offset at or below what the replica holds
//! overwrites from that offset (so a redelivered chunk is harmless); one past it is refused with
//! 409 `offset_gap`.
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

/// Where a partial upload's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSource {
    /// Address of the replica holding it, as in [`ProcessCreated::address`].
    pub address: String,
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

/// Answer to a chunk `PUT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkWritten {
    /// Bytes of the source the replica now holds.
    pub received_bytes: u64,
}

/// An error answer of fflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FflowError {
    pub code: String,
    pub message: String,
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
