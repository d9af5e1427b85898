//! A chunk: `len` bytes of an upload, framed with their [`ChunkHeader`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CommandKind, Request};
use crate::{SessionId, WriterId};

/// Where an uploader replica takes chunks over HTTP, apart from the broker: `PUT` with the
/// chunk's [`ChunkHeader`] as JSON in the [`CHUNK_HEADER`] header and its bytes as the body,
/// streamed; `len` is then the most the body may carry, and the chunk is what arrives. The
/// answer is `200` with the JSON a broker reply carries (see [`super::Reply`]); a request
/// without the shared token is `401`.
pub const CHUNKS_PATH: &str = "/v1/chunks";
pub const CHUNK_HEADER: &str = "vod-chunk";

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
    /// The request holding the upload's write lock, see [`super::LockUpload`].
    #[serde(default)]
    pub writer: Option<WriterId>,
    #[serde(default)]
    pub commit: ChunkCommit,
    /// The last chunk of its request: once it is stored, `writer` gives the write lock back in
    /// the same transaction, which saves the request an [`super::UnlockUpload`].
    #[serde(default)]
    pub release: bool,
    /// Set when the chunk itself takes the write lock for `writer` (its request asked for none
    /// with [`super::LockUpload`]): while another request holds the lock, the chunk waits up
    /// to this long for it, as `LockUpload` would, before any of its bytes is read; then it is
    /// refused `upload_locked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_wait_ms: Option<u64>,
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
            lock_wait_ms: None,
        }
    }
}

impl Request for ChunkHeader {
    const KIND: CommandKind = CommandKind::Chunk;
    type Reply = ChunkReply;
}

/// What became of a chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChunkReply {
    /// The upload's bytes that are now safe; equal to `offset + len` of the chunk, or more when
    /// the chunk was a duplicate of bytes already stored.
    Stored {
        uploaded_bytes: u64,
        /// `None` while the length is deferred.
        total_bytes: Option<u64>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// A staged chunk is stored; the upload's offset has not moved.
    Staged { staged_to: u64 },
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
}
