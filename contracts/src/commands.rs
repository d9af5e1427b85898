//! Requests from the gateway to the uploader, and the uploader's replies.
//!
//! They travel over AMQP as request/response: the gateway publishes to the commands queue with
//! `reply_to` and `correlation_id` set, one uploader replica handles the request and publishes a
//! [`Reply`] back. Every request is safe to process twice.
//!
//! A chunk carries raw bytes, so its message body is framed: a big-endian `u32` length, the JSON
//! [`ChunkHeader`], then the payload. All other commands are plain JSON [`Command`]s. The AMQP
//! `type` property says which of the two a message is.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{FlowId, SessionId, VideoId, WriterId};

/// AMQP `type` property of a JSON [`Command`].
pub const COMMAND_MESSAGE_TYPE: &str = "vod.command";
/// AMQP `type` property of a framed chunk.
pub const CHUNK_MESSAGE_TYPE: &str = "vod.chunk";

/// A request that is not a chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Create an empty video.
    CreateVideo { title: String, description: String },
    /// Create a flow and its upload session (the tus upload), on a new video unless
    /// `video_id` names an existing one.
    CreateUpload {
        video_id: Option<VideoId>,
        title: String,
        filename: Option<String>,
        /// `None` while the length is deferred (tus `creation-defer-length`).
        total_bytes: Option<u64>,
        /// The raw tus `Upload-Metadata` header, echoed on `HEAD`.
        metadata: Option<String>,
    },
    /// Create a partial upload (tus `concatenation`): an upload session with no flow, whose
    /// bytes only count once a final upload joins them.
    CreatePartialUpload {
        total_bytes: Option<u64>,
        metadata: Option<String>,
    },
    /// Create a final upload from complete partial uploads, in order: a flow whose source is
    /// their joined bytes, processed at once.
    CreateFinalUpload {
        video_id: Option<VideoId>,
        title: String,
        filename: Option<String>,
        metadata: Option<String>,
        parts: Vec<SessionId>,
    },
    /// The client gave up on the upload (tus termination).
    TerminateUpload { session_id: SessionId },
    /// Declares the length of an upload created with a deferred length; it never changes
    /// afterwards.
    DeclareLength {
        session_id: SessionId,
        total_bytes: u64,
    },
    /// Takes the write lock of an upload for one request that will write from `offset`. Only
    /// the holder's chunks are taken until it unlocks or its lease runs out, so two requests
    /// never interleave their bytes.
    LockUpload {
        session_id: SessionId,
        writer: WriterId,
        offset: u64,
    },
    /// Gives the write lock back; nothing happens unless `writer` holds it. A request whose
    /// last chunk gave the lock back ([`ChunkHeader::release`]) does not need this.
    UnlockUpload {
        session_id: SessionId,
        writer: WriterId,
    },
}

/// How a chunk counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ChunkCommit {
    /// The upload's offset moves past the chunk as soon as it is stored.
    #[default]
    Immediate,
    /// Stored past the offset, which stays at `base` until a [`ChunkCommit::CommitStaged`]
    /// moves it over every staged byte; bytes staged and never committed are overwritten by the
    /// next write. A request whose body must be verified as a whole (tus `checksum`) stages all
    /// but its last piece.
    Stage { base: u64 },
    /// The last piece of a staged request: the offset moves from `base` to the chunk's end.
    CommitStaged { base: u64 },
}

/// Metadata of one chunk: `len` bytes of the upload starting at `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    pub session_id: SessionId,
    pub offset: u64,
    pub len: u64,
    /// The request holding the upload's write lock, see [`Command::LockUpload`].
    #[serde(default)]
    pub writer: Option<WriterId>,
    #[serde(default)]
    pub commit: ChunkCommit,
    /// The last chunk of its request: once it is stored, `writer` gives the write lock back in
    /// the same transaction, which saves the request an [`Command::UnlockUpload`].
    #[serde(default)]
    pub release: bool,
}

impl ChunkHeader {
    /// A chunk counted at once, outside any write lock.
    pub fn immediate(session_id: SessionId, offset: u64, len: u64) -> Self {
        Self {
            session_id,
            offset,
            len,
            writer: None,
            commit: ChunkCommit::Immediate,
            release: false,
        }
    }
}

/// What a successful command returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ack {
    VideoCreated {
        video_id: VideoId,
    },
    UploadCreated {
        video_id: VideoId,
        flow_id: FlowId,
        session_id: SessionId,
        /// When the upload expires unless more bytes arrive; `None` once it is complete.
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    PartialUploadCreated {
        session_id: SessionId,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// The upload's bytes that are now safe; equal to `offset + len` of the chunk, or more when
    /// the chunk was a duplicate of bytes already stored.
    ChunkStored {
        uploaded_bytes: u64,
        /// `None` while the length is deferred.
        total_bytes: Option<u64>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// A staged chunk is stored; the upload's offset has not moved.
    ChunkStaged {
        staged_to: u64,
    },
    UploadTerminated,
    LengthDeclared {
        uploaded_bytes: u64,
        total_bytes: u64,
    },
    UploadLocked {
        uploaded_bytes: u64,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    UploadUnlocked,
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
    /// `video_id` names no video.
    VideoNotFound,
    /// The command itself is malformed.
    InvalidCommand,
    /// A dependency (fflow, the database) could not be reached; retrying later may work.
    Unavailable,
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
}

impl Reject {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The body of a reply message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(Ack),
    Rejected(Reject),
}

impl From<Result<Ack, Reject>> for Reply {
    fn from(result: Result<Ack, Reject>) -> Self {
        match result {
            Ok(ack) => Reply::Ok(ack),
            Err(reject) => Reply::Rejected(reject),
        }
    }
}

impl From<Reply> for Result<Ack, Reject> {
    fn from(reply: Reply) -> Self {
        match reply {
            Reply::Ok(ack) => Ok(ack),
            Reply::Rejected(reject) => Err(reject),
        }
    }
}

/// A chunk message body that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("chunk frame is shorter than its header")]
    Truncated,
    #[error("chunk header is not valid JSON: {0}")]
    Header(#[from] serde_json::Error),
    #[error("chunk header says {declared} bytes but the frame carries {actual}")]
    LengthMismatch { declared: u64, actual: u64 },
}

/// Frames a chunk: `u32` header length, JSON header, payload.
pub fn encode_chunk(header: &ChunkHeader, payload: &[u8]) -> Vec<u8> {
    let mut frame = chunk_frame_prefix(header);
    frame.extend_from_slice(payload);
    frame
}

/// What goes before the payload in a chunk's frame, for a sender that keeps room for it in
/// front of the payload instead of copying the payload after it.
pub fn chunk_frame_prefix(header: &ChunkHeader) -> Vec<u8> {
    let header_json = serde_json::to_vec(header).unwrap_or_default();
    let mut prefix = Vec::with_capacity(4 + header_json.len());
    prefix.extend_from_slice(&(header_json.len() as u32).to_be_bytes());
    prefix.extend_from_slice(&header_json);
    prefix
}

/// Splits a framed chunk into its header and payload, checking the declared length.
pub fn decode_chunk(frame: &[u8]) -> Result<(ChunkHeader, &[u8]), FrameError> {
    let (len_bytes, rest) = frame
        .split_first_chunk::<4>()
        .ok_or(FrameError::Truncated)?;
    let header_len = u32::from_be_bytes(*len_bytes) as usize;
    if rest.len() < header_len {
        return Err(FrameError::Truncated);
    }
    let (header_json, payload) = rest.split_at(header_len);
    let header: ChunkHeader = serde_json::from_slice(header_json)?;
    if header.len != payload.len() as u64 {
        return Err(FrameError::LengthMismatch {
            declared: header.len,
            actual: payload.len() as u64,
        });
    }
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_frame_round_trips() {
        let header = ChunkHeader {
            writer: Some(WriterId::new()),
            commit: ChunkCommit::Stage { base: 40 },
            release: true,
            ..ChunkHeader::immediate(SessionId::new(), 42, 3)
        };
        let frame = encode_chunk(&header, b"abc");
        let (decoded, payload) = decode_chunk(&frame).expect("frame decodes");
        assert_eq!(decoded, header);
        assert_eq!(payload, b"abc");
    }

    #[test]
    fn chunk_frame_with_wrong_length_is_refused() {
        let header = ChunkHeader::immediate(SessionId::new(), 0, 10);
        let frame = encode_chunk(&header, b"abc");
        assert!(matches!(
            decode_chunk(&frame),
            Err(FrameError::LengthMismatch {
                declared: 10,
                actual: 3
            })
        ));
        assert!(matches!(
            decode_chunk(&frame[..2]),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn reply_serializes_with_stable_codes() {
        let reply = Reply::Rejected(Reject::new(RejectCode::OffsetMismatch, "expected 5"));
        let json = serde_json::to_value(&reply).unwrap_or_default();
        assert_eq!(json["rejected"]["code"], "offset_mismatch");
    }
}
