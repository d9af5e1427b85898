//! Why a session step failed, as the HTTP API and the join report it.

use vod_contracts::SessionId;
use vod_infra::free_space::LowSpace;

use super::machine::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no session {0} on this replica")]
    NotFound(SessionId),
    #[error("session {0} already exists for another flow or size")]
    Conflict(SessionId),
    #[error("a writer of epoch {epoch} came after one of epoch {highest}")]
    StaleWriter { epoch: u64, highest: u64 },
    #[error("offset {offset} is past the {received} bytes received")]
    OffsetGap { offset: u64, received: u64 },
    #[error("the chunk would end at byte {end}, past the {total} bytes announced")]
    LengthExceeded { end: u64, total: u64 },
    #[error("a chunk may carry at most {max} bytes")]
    ChunkTooLarge { max: u64 },
    #[error("the session is finished and takes no more chunks")]
    Finished,
    #[error("only {received} of {total} bytes were received")]
    Incomplete { received: u64, total: u64 },
    #[error("the session is {known} bytes long, not {given}")]
    LengthMismatch { known: u64, given: u64 },
    #[error("a partial upload is never encoded itself")]
    NotEncodable,
    #[error("the chunk body was interrupted: {0}")]
    BodyInterrupted(String),
    #[error("no room in the spool: {0}")]
    InsufficientStorage(#[from] LowSpace),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<Refusal> for SessionError {
    /// The steps that answer an error are the writes and the start of an encode: a write at
    /// the wrong time means the session takes no more chunks.
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotNow => Self::Finished,
            Refusal::NotEncodable => Self::NotEncodable,
            Refusal::StaleWriter { epoch, highest } => Self::StaleWriter { epoch, highest },
            Refusal::OffsetGap { offset, received } => Self::OffsetGap { offset, received },
            Refusal::LengthExceeded { end, total } => Self::LengthExceeded { end, total },
            Refusal::ChunkTooLarge { max } => Self::ChunkTooLarge { max },
            Refusal::Incomplete { received, total } => Self::Incomplete { received, total },
            Refusal::LengthMismatch { known, given } => Self::LengthMismatch { known, given },
        }
    }
}
