//! The write lock of an upload: one request writes at a time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::json_request;
use crate::{ProjectId, SessionId, WriterId};

/// Takes the write lock of an upload for one request that will write from `offset`. Only the
/// holder's chunks are taken until it unlocks or its lease runs out, so two requests never
/// interleave their bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockUpload {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub session_id: SessionId,
    pub writer: WriterId,
    pub offset: u64,
}

/// Gives the write lock back; nothing happens unless `writer` holds it. A request whose last
/// chunk gave the lock back ([`super::ChunkHeader::release`]) does not need this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnlockUpload {
    pub session_id: SessionId,
    pub writer: WriterId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UploadLocked {
    pub uploaded_bytes: u64,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The write lock is free of `writer` (also when it did not hold it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadUnlocked {}

json_request!(LockUpload, LockUpload => UploadLocked);
json_request!(UnlockUpload, UnlockUpload => UploadUnlocked);
