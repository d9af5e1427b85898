//! The sessions of this replica: one spool directory each, holding `session.json`
//! ([`record`]), the stitched `source` ([`spool`]) and, while encoding, the `out` directory.
//! What is on disk is enough to carry on after a restart.
//!
//! A [`Session`] keeps its state in a [`machine::Machine`], which decides every step without
//! I/O; the session does what the step asks, under one lock per session.

mod error;
mod machine;
mod record;
mod registry;
pub(crate) mod spool;

use std::fmt::Display;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vod_contracts::fflow::{EncodeTarget, PartSource};
use vod_contracts::SessionId;
use vod_infra::free_space::FreeSpaceReserve;

use crate::digest::DigestTrail;
use machine::{Chunk, Encoder, Feed, Machine, Refusal, StreamStart, Writer};
use record::SessionRecord;

pub use error::SessionError;
pub use machine::Phase;
pub use registry::{check_writable, Created, Sessions};

pub const SOURCE_FILE: &str = "source";
pub const OUTPUT_DIR: &str = "out";

/// What `finish` must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeginEncode {
    /// Start the encode of the complete source.
    Start,
    /// A streaming encode runs and finishes the session.
    StreamingRunning,
    /// Already finished earlier.
    AlreadyStarted,
}

/// The next bytes for a streaming encode's ffmpeg.
pub enum FeedRead {
    Bytes(Vec<u8>),
    /// Everything was fed.
    End,
    /// Nothing new was uploaded yet.
    Wait,
}

/// A chunk of the upload, as its request announces it.
#[derive(Clone, Copy, Debug)]
pub struct ChunkWrite {
    pub offset: u64,
    /// The fencing token of the writer's lease; 0 when the caller sends none.
    pub epoch: u64,
    /// The length the request declared, when it did.
    pub declared_len: Option<u64>,
    pub max_chunk_bytes: u64,
}

struct SessionState {
    machine: Machine,
    /// Cancels the streaming encode while one runs.
    streaming_cancel: Option<CancellationToken>,
    digest: DigestTrail,
    parts: Vec<PartSource>,
}

pub struct Session {
    pub session_id: SessionId,
    /// `None` for a partial upload, which is never encoded itself.
    pub target: Option<EncodeTarget>,
    pub dir: PathBuf,
    /// Serializes the steps of one session.
    state: tokio::sync::Mutex<SessionState>,
    /// Cancelled by `DELETE` or by shutdown; stops the encode and kills its ffmpeg.
    pub cancel: CancellationToken,
    deleted: AtomicBool,
    /// Bytes received, for a streaming encode waiting for more.
    received_watch: watch::Sender<u64>,
    /// Set once the upload is complete and the encode was asked for.
    finished_watch: watch::Sender<bool>,
    /// When the session was created, reloaded or last written to.
    touched: Mutex<Instant>,
    /// The spool's free-space reserve, which every write asks first.
    space: FreeSpaceReserve,
}

impl Session {
    fn new(
        record: &SessionRecord,
        dir: PathBuf,
        machine: Machine,
        cancel: CancellationToken,
        space: FreeSpaceReserve,
    ) -> Self {
        let received = machine.received();
        // A reloaded source is hashed from its file when the digest is asked for.
        let digest = DigestTrail::start(if received == 0 {
            crate::digest::SourceDigest::new()
        } else {
            crate::digest::SourceDigest::unknown()
        });
        Self {
            session_id: record.session_id,
            target: record.target(),
            dir,
            finished_watch: watch::Sender::new(machine.phase() != Phase::Receiving),
            received_watch: watch::Sender::new(received),
            state: tokio::sync::Mutex::new(SessionState {
                machine,
                streaming_cancel: None,
                digest,
                parts: record.parts.clone(),
            }),
            cancel,
            deleted: AtomicBool::new(false),
            touched: Mutex::new(Instant::now()),
            space,
        }
    }

    fn record(&self, machine: &Machine, parts: &[PartSource]) -> SessionRecord {
        SessionRecord::new(
            self.session_id,
            self.target,
            machine.total_bytes(),
            machine.is_finished(),
            parts.to_vec(),
            machine.epoch(),
        )
    }

    /// Takes `step` on a copy of the machine, persists the copy when `persist` says so, and
    /// keeps it only once that succeeded.
    async fn step<T>(
        &self,
        state: &mut SessionState,
        step: impl FnOnce(&mut Machine) -> Result<T, Refusal>,
        persist: impl FnOnce(&T) -> Option<Persist>,
    ) -> Result<T, SessionError> {
        let mut next = state.machine.clone();
        let taken = step(&mut next)?;
        let record = self.record(&next, &state.parts);
        match persist(&taken) {
            Some(Persist::Synced) => record.write(&self.dir).await?,
            Some(Persist::ForRestart) => record.write_for_restart(&self.dir).await?,
            None => {}
        }
        state.machine = next;
        Ok(taken)
    }

    pub async fn total_bytes(&self) -> Option<u64> {
        self.state.lock().await.machine.total_bytes()
    }

    pub async fn parts(&self) -> Vec<PartSource> {
        self.state.lock().await.parts.clone()
    }

    pub fn source_path(&self) -> PathBuf {
        self.dir.join(SOURCE_FILE)
    }

    pub fn output_dir(&self) -> PathBuf {
        self.dir.join(OUTPUT_DIR)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    pub async fn phase(&self) -> Phase {
        self.state.lock().await.machine.phase()
    }

    fn touch(&self) {
        *self
            .touched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
    }

    fn untouched_for(&self) -> Duration {
        self.touched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .elapsed()
    }

    /// Writes a chunk at its offset, over whatever was there: a chunk sent again leaves the same
    /// bytes, and the source ends where the chunk ends. Returns the bytes now held. A chunk
    /// that changes bytes a streaming encode already read abandons that encode: the source is
    /// then encoded once complete. A chunk whose writer epoch is below the highest one seen is
    /// refused untouched; a higher one is recorded in `session.json` before the write. A chunk
    /// that would leave the spool's disk below its free-space reserve is refused untouched too.
    pub async fn write_chunk<S, E>(&self, chunk: ChunkWrite, body: S) -> Result<u64, SessionError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let writer = Writer::Upload { epoch: chunk.epoch };
        let chunk = Chunk {
            offset: chunk.offset,
            declared_len: chunk.declared_len,
            max_bytes: chunk.max_chunk_bytes,
        };
        self.write(writer, chunk, body).await
    }

    /// Appends one part of a concatenated upload while the session is joining.
    pub async fn write_part<S, E>(
        &self,
        offset: u64,
        len: u64,
        body: S,
    ) -> Result<u64, SessionError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let chunk = Chunk {
            offset,
            declared_len: Some(len),
            max_bytes: u64::MAX,
        };
        self.write(Writer::Join, chunk, body).await
    }

    async fn write<S, E>(&self, writer: Writer, chunk: Chunk, body: S) -> Result<u64, SessionError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut state = self.state.lock().await;
        self.touch();
        // The bytes the request announced are admitted before anything changes, so a chunk the
        // disk has no room for leaves the session exactly as it was; bytes past the announced
        // length (or of a body that announced none) are admitted as they arrive.
        let announced = chunk.declared_len.unwrap_or(0);
        self.space.admit(announced)?;
        let admitted = AtomicU64::new(announced);
        // Persisted before the first byte: a restarted replica fences the older writer too.
        let accepted = self
            .step(
                &mut state,
                |machine| machine.accept_chunk(writer, &chunk),
                // Every request raises the epoch: an fsync per request would cost more than
                // the bytes it guards, which are not synced either.
                |accepted| accepted.persist_epoch.then_some(Persist::ForRestart),
            )
            .await?;
        let offset = chunk.offset;
        state.digest.rewind_to(offset).await;
        let machine = state.machine.clone();
        let spooled = spool::write_chunk(
            &self.source_path(),
            offset,
            accepted.fed,
            state.digest.clone(),
            body,
            |written| {
                machine.check_growth(&chunk, written)?;
                let before = admitted.load(Ordering::Relaxed);
                if written > before {
                    self.space.admit(written - before)?;
                    admitted.store(written, Ordering::Relaxed);
                }
                Ok(())
            },
        )
        .await;
        // Bytes ffmpeg read stay on disk until the upload reaches them again, to be compared
        // with what it sends then.
        let keep = if spooled.diverged { 0 } else { accepted.fed };
        let end = offset + spooled.written;
        let result = match spooled.result {
            Ok(()) => spool::cut_source(self.source_path(), end.max(keep))
                .await
                .map_err(|err| {
                    SessionError::Unexpected(
                        anyhow::Error::new(err).context("failed to cut the source file"),
                    )
                }),
            Err(err) => Err(err),
        };
        if spooled.diverged {
            self.abandon_streaming(&mut state, "the upload rewrote bytes the encoder had read");
        }
        match result {
            Ok(()) => {
                state.machine.chunk_written(end);
                self.received_watch.send_replace(end);
                Ok(end)
            }
            Err(err) => {
                // What was received stays exactly `offset` bytes.
                let _ = spool::cut_source(self.source_path(), offset.max(keep)).await;
                state.digest.rewind_to(offset).await;
                self.received_watch.send_replace(offset);
                Err(err)
            }
        }
    }

    fn abandon_streaming(&self, state: &mut SessionState, why: &str) {
        if state.machine.abandon_streaming() {
            tracing::warn!(session_id = %self.session_id, why, "streaming encode abandoned, encoding once complete");
        }
        if let Some(cancel) = state.streaming_cancel.take() {
            cancel.cancel();
        }
    }

    /// Records the source's length, given at finish when it was deferred at creation.
    pub async fn set_total_bytes(&self, total_bytes: u64) -> Result<(), SessionError> {
        let mut state = self.state.lock().await;
        self.step(
            &mut state,
            |machine| machine.give_length(total_bytes),
            |newly_known| newly_known.then_some(Persist::Synced),
        )
        .await?;
        Ok(())
    }

    /// Starts joining `parts` into the source. `Ok(true)` when the caller must run the join,
    /// `Ok(false)` when it was already started.
    pub async fn begin_join(&self, parts: Vec<PartSource>) -> Result<bool, SessionError> {
        let mut state = self.state.lock().await;
        let mut next = state.machine.clone();
        match next.begin_join() {
            Ok(()) => {}
            Err(Refusal::NotNow) => return Ok(false),
            Err(refusal) => return Err(refusal.into()),
        }
        self.record(&next, &parts).write(&self.dir).await?;
        state.parts = parts;
        state.machine = next;
        Ok(true)
    }

    /// The SHA-256 of the whole source, from the running digest or, when a rewrite made it
    /// unknown, from the file.
    pub async fn source_sha256(&self) -> anyhow::Result<String> {
        let received = {
            let state = self.state.lock().await;
            let received = state.machine.received();
            if let Some(hex) = state.digest.hex_if_at(received).await {
                return Ok(hex);
            }
            received
        };
        spool::hash_file(&self.source_path(), received).await
    }

    /// Moves a complete session to encoding and says who encodes it.
    pub async fn begin_encode(&self) -> Result<BeginEncode, SessionError> {
        self.enter_encoding(Machine::begin_encode).await
    }

    /// The join is done: the session moves on to encoding.
    pub async fn joined(&self) -> Result<BeginEncode, SessionError> {
        self.enter_encoding(Machine::joined).await
    }

    async fn enter_encoding(
        &self,
        step: fn(&mut Machine) -> Result<Encoder, Refusal>,
    ) -> Result<BeginEncode, SessionError> {
        let mut state = self.state.lock().await;
        let mut next = state.machine.clone();
        let encoder = match step(&mut next) {
            Ok(encoder) => encoder,
            Err(Refusal::NotNow) => return Ok(BeginEncode::AlreadyStarted),
            Err(refusal) => return Err(refusal.into()),
        };
        self.record(&next, &state.parts).write(&self.dir).await?;
        state.machine = next;
        self.finished_watch.send_replace(true);
        Ok(match encoder {
            Encoder::RunningStream => BeginEncode::StreamingRunning,
            Encoder::CompleteSource => BeginEncode::Start,
        })
    }

    /// Waits until the upload is complete and its encode was asked for.
    pub async fn finished(&self) {
        let mut finished = self.finished_watch.subscribe();
        // Err only when the sender is gone, and `self` holds it.
        let _ = finished.wait_for(|finished| *finished).await;
    }

    /// Bytes received so far, and whether the upload is still arriving with no decision on
    /// streaming yet. When it is, the caller becomes the one task that decides: it must end
    /// with [`Session::start_streaming`], [`Session::streaming_undecided`] or
    /// [`Session::streaming_refused`].
    pub async fn claim_streaming_decision(&self) -> Option<u64> {
        let mut state = self.state.lock().await;
        state.machine.claim_streaming_decision().ok()
    }

    /// The decision needs more bytes; a later chunk tries again.
    pub async fn streaming_undecided(&self) {
        // Refused only when the upload was finished meanwhile: nothing is left to decide.
        let _ = self.state.lock().await.machine.streaming_undecided();
    }

    /// The source is encoded once complete.
    pub async fn streaming_refused(&self) {
        let _ = self.state.lock().await.machine.streaming_refused();
    }

    /// Records the streaming encode as running, unless the upload completed meanwhile. Returns
    /// the bytes received as it starts.
    pub async fn start_streaming(&self, cancel: CancellationToken) -> Option<u64> {
        let mut state = self.state.lock().await;
        match state.machine.start_streaming() {
            Ok(StreamStart::Started { received }) => {
                state.streaming_cancel = Some(cancel);
                Some(received)
            }
            Ok(StreamStart::TooLate) | Err(_) => None,
        }
    }

    /// The streaming encode ended without a presentation. Returns true when the upload is
    /// already complete, so that the caller encodes it now; otherwise `finish` will.
    pub async fn streaming_failed(&self) -> bool {
        let mut state = self.state.lock().await;
        state.streaming_cancel = None;
        state.machine.streaming_failed().unwrap_or(false)
    }

    #[cfg(test)]
    async fn is_streaming(&self) -> bool {
        self.state.lock().await.machine.streaming() == machine::Streaming::Running
    }

    /// Up to `max` bytes of the source from `fed` on, for the streaming encode's ffmpeg.
    pub async fn read_for_feed(&self, fed: u64, max: usize) -> Result<FeedRead, SessionError> {
        let mut state = self.state.lock().await;
        match state.machine.feed_window(fed, max) {
            Feed::End => Ok(FeedRead::End),
            Feed::Wait => Ok(FeedRead::Wait),
            Feed::Read { len } => {
                let bytes = spool::read_at(&self.source_path(), fed, len).await?;
                state.machine.fed_to(fed + len as u64);
                Ok(FeedRead::Bytes(bytes))
            }
        }
    }

    /// Notified whenever bytes are received.
    pub fn received_changes(&self) -> watch::Receiver<u64> {
        self.received_watch.subscribe()
    }

    pub async fn mark_done(&self) {
        if let Err(refusal) = self.state.lock().await.machine.mark_done() {
            tracing::debug!(session_id = %self.session_id, ?refusal, "session not marked done");
        }
    }

    pub async fn remove_spool(&self) -> std::io::Result<()> {
        match tokio::fs::remove_dir_all(&self.dir).await {
            Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// How a step's record is written.
enum Persist {
    Synced,
    ForRestart,
}

#[cfg(test)]
mod tests;
