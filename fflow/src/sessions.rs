//! The sessions of this replica: one spool directory each, holding `session.json`, the stitched
//! `source` and, while encoding, the `out` directory. What is on disk is enough to carry on after
//! a restart.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vod_contracts::fflow::{CreateProcess, EncodeTarget, PartSource};
use vod_contracts::{FlowId, SessionId, VideoId};

use crate::digest::{DigestTrail, SourceDigest};

pub const SOURCE_FILE: &str = "source";
pub const OUTPUT_DIR: &str = "out";
const RECORD_FILE: &str = "session.json";

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
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// `session.json`: what a restarted replica needs to take a session up again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SessionRecord {
    session_id: SessionId,
    #[serde(default)]
    target: Option<EncodeTarget>,
    /// Written by earlier versions, before partial uploads had no target.
    #[serde(default, skip_serializing)]
    video_id: Option<VideoId>,
    #[serde(default, skip_serializing)]
    flow_id: Option<FlowId>,
    #[serde(default)]
    total_bytes: Option<u64>,
    /// The encode was started; a restarted replica starts it again.
    #[serde(default)]
    finished: bool,
    /// Parts being joined into the source; a restarted replica joins them again.
    #[serde(default)]
    parts: Vec<PartSource>,
    /// The highest writer epoch a chunk came with: a restarted replica still refuses older
    /// writers.
    #[serde(default)]
    epoch: u64,
}

impl SessionRecord {
    fn target(&self) -> Option<EncodeTarget> {
        self.target.or(match (self.video_id, self.flow_id) {
            (Some(video_id), Some(flow_id)) => Some(EncodeTarget { video_id, flow_id }),
            _ => None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Receiving,
    /// The source is being joined from the parts of a concatenated upload.
    Joining,
    Encoding,
    /// Outcome published, spool removed; kept so that `finish` stays idempotent.
    Done,
}

struct SessionState {
    received: u64,
    phase: Phase,
    streaming: Streaming,
    /// Bytes of the source handed to the streaming encode's ffmpeg; 0 without one.
    fed: u64,
    /// `None` while the length is deferred.
    total_bytes: Option<u64>,
    digest: DigestTrail,
    parts: Vec<PartSource>,
    /// The highest writer epoch seen; chunks of a lower one are refused.
    epoch: u64,
}

/// Whether the session is encoded while it uploads.
#[derive(Debug)]
enum Streaming {
    /// Not decided yet: the first bytes did not tell, or probing needs more of them.
    Undecided,
    /// One task is probing the source to start a streaming encode.
    Starting,
    /// A streaming encode runs; cancelling its token stops it.
    Running { cancel: CancellationToken },
    /// Encoded once complete: the source cannot be read as it arrives, streaming is off, or a
    /// streaming encode was abandoned.
    AtLastByte,
}

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

pub struct Session {
    pub session_id: SessionId,
    /// `None` for a partial upload, which is never encoded itself.
    pub target: Option<EncodeTarget>,
    pub dir: PathBuf,
    /// Serializes the writes of one session.
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
}

impl Session {
    fn record(&self, state: &SessionState, finished: bool) -> SessionRecord {
        SessionRecord {
            session_id: self.session_id,
            target: self.target,
            video_id: None,
            flow_id: None,
            total_bytes: state.total_bytes,
            finished,
            parts: state.parts.clone(),
            epoch: state.epoch,
        }
    }

    pub async fn total_bytes(&self) -> Option<u64> {
        self.state.lock().await.total_bytes
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
        self.state.lock().await.phase
    }

    /// Writes a chunk at `offset`, over whatever was there: a chunk sent again leaves the same
    /// bytes, and the source ends where the chunk ends. Returns the bytes now held. A chunk
    /// that changes bytes a streaming encode already read abandons that encode: the source is
    /// then encoded once complete. A chunk whose writer `epoch` is below the highest one seen
    /// is refused untouched; a higher one is recorded in `session.json` before the write.
    pub async fn write_chunk<S, E>(
        &self,
        offset: u64,
        epoch: u64,
        declared_len: Option<u64>,
        max_chunk_bytes: u64,
        body: S,
    ) -> Result<u64, SessionError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        self.write(
            Phase::Receiving,
            offset,
            Some(epoch),
            declared_len,
            max_chunk_bytes,
            body,
        )
        .await
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
        // The join is this replica's own writer: no epoch fences it.
        self.write(Phase::Joining, offset, None, Some(len), u64::MAX, body)
            .await
    }

    async fn write<S, E>(
        &self,
        phase: Phase,
        offset: u64,
        epoch: Option<u64>,
        declared_len: Option<u64>,
        max_chunk_bytes: u64,
        mut body: S,
    ) -> Result<u64, SessionError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut state = self.state.lock().await;
        *self
            .touched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        if state.phase != phase {
            return Err(SessionError::Finished);
        }
        if let Some(epoch) = epoch.filter(|epoch| *epoch < state.epoch) {
            return Err(SessionError::StaleWriter {
                epoch,
                highest: state.epoch,
            });
        }
        if offset > state.received {
            return Err(SessionError::OffsetGap {
                offset,
                received: state.received,
            });
        }
        let total = state.total_bytes;
        if let Some(len) = declared_len {
            check_chunk(offset, len, max_chunk_bytes, total)?;
        }
        if let Some(epoch) = epoch.filter(|epoch| *epoch > state.epoch) {
            // Persisted before the write is answered: a restarted replica fences the older
            // writer too.
            let record = SessionRecord {
                epoch,
                ..self.record(&state, false)
            };
            write_record(&self.dir, &record).await?;
            state.epoch = epoch;
        }

        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.source_path())
            .await
            .context("failed to open the source file")?;
        // Bytes below `fed` were read by ffmpeg: they are compared before being overwritten.
        let fed = state.fed;
        let already_read = if offset < fed {
            let reader = tokio::fs::File::open(self.source_path())
                .await
                .context("failed to open the source file")?;
            Some(reader.into_std().await)
        } else {
            None
        };
        state.received = offset;
        state.digest.rewind_to(offset).await;
        let spool = SpoolWriter {
            file: file.into_std().await,
            already_read,
            at: offset,
            fed,
            diverged: false,
            digest: state.digest.clone(),
        };
        // The body is received here while the bytes before it are compared and written on a
        // blocking thread, and hashed behind them: all three overlap, and the async threads
        // never wait for the disk.
        let (batches, to_write) = tokio::sync::mpsc::channel::<Vec<Bytes>>(1);
        let spooling = tokio::task::spawn_blocking(move || spool.run(to_write));
        let mut written = 0u64;
        let received: Result<(), SessionError> = async {
            let mut batch = Vec::new();
            let mut batch_len = 0;
            while let Some(frame) = body.next().await {
                let bytes = frame.map_err(|err| SessionError::BodyInterrupted(err.to_string()))?;
                written += bytes.len() as u64;
                check_chunk(offset, written, max_chunk_bytes, total)?;
                batch_len += bytes.len();
                batch.push(bytes);
                if batch_len >= WRITE_BATCH_BYTES {
                    batch_len = 0;
                    if batches.send(std::mem::take(&mut batch)).await.is_err() {
                        // The writer failed; its error is the answer.
                        return Ok(());
                    }
                }
            }
            let _ = batches.send(batch).await;
            Ok(())
        }
        .await;
        drop(batches);
        let spooled = spooling
            .await
            .unwrap_or_else(|err| Err(anyhow::anyhow!("the spool writer failed: {err}").into()));
        let (diverged, copied) = match (spooled, received) {
            (Ok(diverged), received) => (diverged, received),
            (Err(error), _) => (false, Err(error)),
        };
        // Bytes ffmpeg read stay on disk until the upload reaches them again, to be compared
        // with what it sends then.
        let keep = if diverged { 0 } else { fed };
        let copied = match copied {
            Ok(()) => cut_source(self.source_path(), (offset + written).max(keep))
                .await
                .context("failed to cut the source file")
                .map_err(SessionError::from),
            Err(err) => Err(err),
        };
        if diverged {
            self.abandon_streaming(&mut state, "the upload rewrote bytes the encoder had read");
        }
        match copied {
            Ok(()) => {
                state.received = offset + written;
                self.received_watch.send_replace(state.received);
                Ok(state.received)
            }
            Err(err) => {
                // What was received stays exactly `offset` bytes.
                let _ = cut_source(self.source_path(), offset.max(keep)).await;
                state.digest.rewind_to(offset).await;
                self.received_watch.send_replace(offset);
                Err(err)
            }
        }
    }

    fn abandon_streaming(&self, state: &mut SessionState, why: &str) {
        if let Streaming::Running { cancel, .. } = &state.streaming {
            tracing::warn!(session_id = %self.session_id, why, "streaming encode abandoned, encoding once complete");
            cancel.cancel();
        }
        state.streaming = Streaming::AtLastByte;
        state.fed = 0;
    }

    /// Records the source's length, given at finish when it was deferred at creation.
    pub async fn set_total_bytes(&self, total_bytes: u64) -> Result<(), SessionError> {
        let mut state = self.state.lock().await;
        match state.total_bytes {
            Some(known) if known != total_bytes => Err(SessionError::LengthMismatch {
                known,
                given: total_bytes,
            }),
            Some(_) => Ok(()),
            None => {
                state.total_bytes = Some(total_bytes);
                write_record(&self.dir, &self.record(&state, false)).await?;
                Ok(())
            }
        }
    }

    /// Starts joining `parts` into the source. `Ok(true)` when the caller must run the join,
    /// `Ok(false)` when it was already started.
    pub async fn begin_join(&self, parts: Vec<PartSource>) -> Result<bool, SessionError> {
        if self.target.is_none() {
            return Err(SessionError::NotEncodable);
        }
        let mut state = self.state.lock().await;
        if state.phase != Phase::Receiving {
            return Ok(false);
        }
        state.parts = parts;
        write_record(&self.dir, &self.record(&state, false)).await?;
        state.phase = Phase::Joining;
        Ok(true)
    }

    /// The SHA-256 of the whole source, from the running digest or, when a rewrite made it
    /// unknown, from the file.
    pub async fn source_sha256(&self) -> anyhow::Result<String> {
        let received = {
            let state = self.state.lock().await;
            if let Some(hex) = state.digest.hex_if_at(state.received).await {
                return Ok(hex);
            }
            state.received
        };
        let mut file = tokio::fs::File::open(self.source_path())
            .await
            .context("failed to open the source to hash it")?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1024 * 1024];
        let mut hashed = 0u64;
        while hashed < received {
            let read = file
                .read(&mut buffer)
                .await
                .context("failed to read the source to hash it")?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            hashed += read as u64;
        }
        Ok(format!("{:x}", hasher.finalize()))
    }

    /// Moves a complete session to encoding and says who encodes it.
    pub async fn begin_encode(&self) -> Result<BeginEncode, SessionError> {
        if self.target.is_none() {
            return Err(SessionError::NotEncodable);
        }
        self.to_encoding(Phase::Receiving).await
    }

    /// The join is done: the session moves on to encoding.
    pub async fn joined(&self) -> Result<BeginEncode, SessionError> {
        self.to_encoding(Phase::Joining).await
    }

    async fn to_encoding(&self, from: Phase) -> Result<BeginEncode, SessionError> {
        let mut state = self.state.lock().await;
        if state.phase != from {
            return Ok(BeginEncode::AlreadyStarted);
        }
        let total = state.total_bytes.unwrap_or(state.received);
        if state.received != total {
            return Err(SessionError::Incomplete {
                received: state.received,
                total,
            });
        }
        state.total_bytes = Some(total);
        write_record(&self.dir, &self.record(&state, true)).await?;
        state.phase = Phase::Encoding;
        self.finished_watch.send_replace(true);
        Ok(match state.streaming {
            Streaming::Running { .. } => BeginEncode::StreamingRunning,
            _ => {
                // A probe still running finds the session finished and gives up.
                state.streaming = Streaming::AtLastByte;
                BeginEncode::Start
            }
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
        // Only a whole upload of known length is encoded as it arrives: not a partial upload,
        // nor one whose length is deferred.
        if self.target.is_none() || state.total_bytes.is_none() {
            return None;
        }
        match (&state.phase, &state.streaming) {
            (Phase::Receiving, Streaming::Undecided) => {
                state.streaming = Streaming::Starting;
                Some(state.received)
            }
            _ => None,
        }
    }

    /// The decision needs more bytes; a later chunk tries again.
    pub async fn streaming_undecided(&self) {
        let mut state = self.state.lock().await;
        if matches!(state.streaming, Streaming::Starting) {
            state.streaming = Streaming::Undecided;
        }
    }

    /// The source is encoded once complete.
    pub async fn streaming_refused(&self) {
        let mut state = self.state.lock().await;
        if matches!(state.streaming, Streaming::Starting) {
            state.streaming = Streaming::AtLastByte;
        }
    }

    /// Records the streaming encode as running, unless the upload completed meanwhile. Returns
    /// the bytes received as it starts.
    pub async fn start_streaming(&self, cancel: CancellationToken) -> Option<u64> {
        let mut state = self.state.lock().await;
        if state.phase != Phase::Receiving || !matches!(state.streaming, Streaming::Starting) {
            if matches!(state.streaming, Streaming::Starting) {
                state.streaming = Streaming::AtLastByte;
            }
            return None;
        }
        state.streaming = Streaming::Running { cancel };
        state.fed = 0;
        Some(state.received)
    }

    /// The streaming encode ended without a presentation. Returns true when the upload is
    /// already complete, so that the caller encodes it now; otherwise `finish` will.
    pub async fn streaming_failed(&self) -> bool {
        let mut state = self.state.lock().await;
        if matches!(state.streaming, Streaming::Running { .. }) {
            state.streaming = Streaming::AtLastByte;
            state.fed = 0;
        }
        state.phase == Phase::Encoding
    }

    #[cfg(test)]
    async fn is_streaming(&self) -> bool {
        matches!(self.state.lock().await.streaming, Streaming::Running { .. })
    }

    /// Up to `max` bytes of the source from `fed` on, for the streaming encode's ffmpeg.
    pub async fn read_for_feed(&self, fed: u64, max: usize) -> Result<FeedRead, SessionError> {
        let mut state = self.state.lock().await;
        if state.total_bytes.is_some_and(|total| fed >= total) {
            return Ok(FeedRead::End);
        }
        if state.received <= fed {
            return Ok(FeedRead::Wait);
        }
        let len = (state.received - fed).min(max as u64) as usize;
        let mut file = tokio::fs::File::open(self.source_path())
            .await
            .context("failed to open the source file")?;
        file.seek(SeekFrom::Start(fed))
            .await
            .context("failed to seek in the source file")?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes)
            .await
            .context("failed to read the source file")?;
        state.fed = state.fed.max(fed + len as u64);
        Ok(FeedRead::Bytes(bytes))
    }

    /// Notified whenever bytes are received.
    pub fn received_changes(&self) -> watch::Receiver<u64> {
        self.received_watch.subscribe()
    }

    pub async fn mark_done(&self) {
        self.state.lock().await.phase = Phase::Done;
    }

    pub async fn remove_spool(&self) -> std::io::Result<()> {
        match tokio::fs::remove_dir_all(&self.dir).await {
            Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// The sessions of this replica, by id.
pub struct Sessions {
    root: PathBuf,
    /// New sessions may be encoded while they upload.
    streaming: bool,
    by_id: Mutex<HashMap<SessionId, Arc<Session>>>,
    creating: tokio::sync::Mutex<()>,
    stopping: CancellationToken,
}

pub enum Created {
    New(Arc<Session>),
    Existing(Arc<Session>),
}

/// Bytes of a chunk's body gathered before they are handed to the spool writer together.
pub const WRITE_BATCH_BYTES: usize = 1024 * 1024;

/// Writes a chunk's bytes into the source file at their offset, on a blocking thread, comparing
/// those the encoder already read, and hands them on to be hashed.
struct SpoolWriter {
    file: std::fs::File,
    /// The source from `at`, while `at` is below `fed`.
    already_read: Option<std::fs::File>,
    at: u64,
    fed: u64,
    diverged: bool,
    digest: DigestTrail,
}

impl SpoolWriter {
    /// Whether the chunk rewrote bytes the encoder had read with other bytes.
    fn run(
        mut self,
        mut batches: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
    ) -> Result<bool, SessionError> {
        self.seek()?;
        while let Some(batch) = batches.blocking_recv() {
            batch.iter().try_for_each(|bytes| self.write(bytes))?;
            self.digest.blocking_hash(batch);
        }
        Ok(self.diverged)
    }

    fn seek(&mut self) -> anyhow::Result<()> {
        use std::io::Seek;
        self.file
            .seek(SeekFrom::Start(self.at))
            .context("failed to seek in the source file")?;
        if let Some(reader) = self.already_read.as_mut() {
            reader
                .seek(SeekFrom::Start(self.at))
                .context("failed to seek in the source file")?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        use std::io::{Read, Write};
        if let Some(reader) = self.already_read.as_mut() {
            let overlap = self.fed.saturating_sub(self.at).min(bytes.len() as u64) as usize;
            let mut before = vec![0u8; overlap];
            reader
                .read_exact(&mut before)
                .context("failed to read the source file")?;
            self.diverged |= before[..] != bytes[..overlap];
            if self.at + bytes.len() as u64 >= self.fed {
                self.already_read = None;
            }
        }
        self.file
            .write_all(bytes)
            .context("failed to write the chunk")?;
        self.at += bytes.len() as u64;
        Ok(())
    }
}

/// Cuts (or extends) the source file to `len` bytes.
async fn cut_source(path: PathBuf, len: u64) -> std::io::Result<()> {
    let file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
    file.set_len(len).await
}

fn check_chunk(
    offset: u64,
    len: u64,
    max_chunk_bytes: u64,
    total: Option<u64>,
) -> Result<(), SessionError> {
    if len > max_chunk_bytes {
        return Err(SessionError::ChunkTooLarge {
            max: max_chunk_bytes,
        });
    }
    let end = offset.saturating_add(len);
    match total {
        Some(total) if end > total => Err(SessionError::LengthExceeded { end, total }),
        _ => Ok(()),
    }
}

impl Sessions {
    /// Loads the sessions spooled under `root` (`{spool_dir}/{replica_id}`) by an earlier run.
    pub async fn load(
        root: PathBuf,
        streaming: bool,
        stopping: CancellationToken,
    ) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(&root)
            .await
            .with_context(|| format!("failed to create spool directory {}", root.display()))?;
        let sessions = Self {
            root,
            streaming,
            by_id: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            stopping,
        };
        let mut entries = tokio::fs::read_dir(&sessions.root)
            .await
            .context("failed to list the spool directory")?;
        while let Some(entry) = entries.next_entry().await? {
            let dir = entry.path();
            if !entry.file_type().await?.is_dir() {
                continue;
            }
            match sessions.reload(&dir).await {
                Ok(session) => {
                    tracing::info!(
                        session_id = %session.session_id,
                        "session reloaded from spool"
                    );
                    sessions.insert(session);
                }
                Err(err) => {
                    // A directory whose creation never completed: nobody was told about it.
                    tracing::warn!(dir = %dir.display(), error = %format!("{err:#}"), "unusable spool directory removed");
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                }
            }
        }
        Ok(sessions)
    }

    async fn reload(&self, dir: &Path) -> anyhow::Result<Arc<Session>> {
        let text = tokio::fs::read(dir.join(RECORD_FILE))
            .await
            .context("failed to read session.json")?;
        let record: SessionRecord =
            serde_json::from_slice(&text).context("failed to parse session.json")?;
        let source = dir.join(SOURCE_FILE);
        let received = match tokio::fs::metadata(&source).await {
            Ok(metadata) => metadata.len(),
            Err(err) if err.kind() == ErrorKind::NotFound => 0,
            Err(err) => return Err(err).context("failed to read the source size"),
        };
        let received = record
            .total_bytes
            .map_or(received, |total| received.min(total));
        let phase = if record.finished && Some(received) == record.total_bytes {
            Phase::Encoding
        } else if !record.parts.is_empty() {
            Phase::Joining
        } else {
            Phase::Receiving
        };
        Ok(self.session(&record, dir.to_path_buf(), received, phase))
    }

    fn session(
        &self,
        record: &SessionRecord,
        dir: PathBuf,
        received: u64,
        phase: Phase,
    ) -> Arc<Session> {
        // A reloaded source is hashed from its file when the digest is asked for.
        let digest = DigestTrail::start(if received == 0 {
            SourceDigest::new()
        } else {
            SourceDigest::unknown()
        });
        Arc::new(Session {
            session_id: record.session_id,
            target: record.target(),
            dir,
            state: tokio::sync::Mutex::new(SessionState {
                received,
                phase,
                streaming: if self.streaming {
                    Streaming::Undecided
                } else {
                    Streaming::AtLastByte
                },
                fed: 0,
                total_bytes: record.total_bytes,
                digest,
                parts: record.parts.clone(),
                epoch: record.epoch,
            }),
            cancel: self.stopping.child_token(),
            deleted: AtomicBool::new(false),
            received_watch: watch::Sender::new(received),
            finished_watch: watch::Sender::new(phase != Phase::Receiving),
            touched: Mutex::new(Instant::now()),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.by_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, session: Arc<Session>) {
        self.map().insert(session.session_id, session);
    }

    pub fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        self.map().get(&id).cloned()
    }

    /// Sessions reloaded in the middle of their encode.
    pub async fn encoding(&self) -> Vec<Arc<Session>> {
        let all: Vec<Arc<Session>> = self.map().values().cloned().collect();
        let mut encoding = Vec::new();
        for session in all {
            if matches!(session.phase().await, Phase::Joining | Phase::Encoding) {
                encoding.push(session);
            }
        }
        encoding
    }

    /// Creates the session, or returns the one with the same ids and size.
    pub async fn create(&self, request: &CreateProcess) -> Result<Created, SessionError> {
        let _creating = self.creating.lock().await;
        if let Some(existing) = self.get(request.session_id) {
            let same = existing.target == request.target
                && existing.total_bytes().await == request.total_bytes;
            return if same {
                Ok(Created::Existing(existing))
            } else {
                Err(SessionError::Conflict(request.session_id))
            };
        }
        let record = SessionRecord {
            session_id: request.session_id,
            target: request.target,
            video_id: None,
            flow_id: None,
            total_bytes: request.total_bytes,
            finished: false,
            parts: Vec::new(),
            epoch: 0,
        };
        let dir = self.root.join(request.session_id.to_string());
        // Left over by a session deleted while its encode was still writing.
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir_all(&dir)
            .await
            .context("failed to create the session directory")?;
        write_record(&dir, &record).await?;
        let session = self.session(&record, dir, 0, Phase::Receiving);
        self.insert(session.clone());
        Ok(Created::New(session))
    }

    /// Sessions nobody wrote to for `ttl` that are still receiving (an upload abandoned, or
    /// moved to another replica while this one was away) or done (kept only so that a
    /// repeated `finish` is answered): nothing will ask for them any more. Sessions being
    /// joined or encoded are never idle.
    pub async fn idle(&self, ttl: Duration) -> Vec<Arc<Session>> {
        let all: Vec<Arc<Session>> = self.map().values().cloned().collect();
        let mut idle = Vec::new();
        for session in all {
            let untouched = session
                .touched
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .elapsed();
            if untouched >= ttl && matches!(session.phase().await, Phase::Receiving | Phase::Done) {
                idle.push(session);
            }
        }
        idle
    }

    /// Forgets the session and stops its encode; the caller removes the spool.
    pub fn remove(&self, id: SessionId) -> Option<Arc<Session>> {
        let session = self.map().remove(&id)?;
        session.deleted.store(true, Ordering::SeqCst);
        session.cancel.cancel();
        Some(session)
    }
}

async fn write_record(dir: &Path, record: &SessionRecord) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(record).context("failed to encode session.json")?;
    let temporary = dir.join(format!(".{RECORD_FILE}.tmp"));
    let mut file = tokio::fs::File::create(&temporary)
        .await
        .context("failed to create session.json")?;
    file.write_all(&json)
        .await
        .context("failed to write session.json")?;
    file.sync_all()
        .await
        .context("failed to write session.json")?;
    drop(file);
    tokio::fs::rename(&temporary, dir.join(RECORD_FILE))
        .await
        .context("failed to write session.json")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;

    use super::*;

    fn request(total_bytes: u64) -> CreateProcess {
        CreateProcess {
            session_id: SessionId::new(),
            target: Some(EncodeTarget {
                video_id: VideoId::new(),
                flow_id: FlowId::new(),
            }),
            total_bytes: Some(total_bytes),
        }
    }

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part)))
                .collect::<Vec<_>>(),
        )
    }

    async fn new_session(sessions: &Sessions, total: u64) -> Arc<Session> {
        match sessions.create(&request(total)).await.unwrap() {
            Created::New(session) => session,
            Created::Existing(_) => panic!("session existed"),
        }
    }

    #[tokio::test]
    async fn chunks_stitch_and_redelivery_is_harmless() {
        let spool = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
            .await
            .unwrap();
        let session = new_session(&sessions, 10).await;
        assert_eq!(
            session
                .write_chunk(0, 0, None, 100, body(&[b"abc", b"d"]))
                .await
                .unwrap(),
            4
        );
        assert_eq!(
            session
                .write_chunk(4, 0, Some(3), 100, body(&[b"efg"]))
                .await
                .unwrap(),
            7
        );
        assert_eq!(
            session
                .write_chunk(4, 0, None, 100, body(&[b"efg"]))
                .await
                .unwrap(),
            7
        );
        assert!(matches!(
            session.write_chunk(8, 0, None, 100, body(&[b"x"])).await,
            Err(SessionError::OffsetGap {
                offset: 8,
                received: 7
            })
        ));
        assert!(matches!(
            session.write_chunk(7, 0, None, 100, body(&[b"hijk"])).await,
            Err(SessionError::LengthExceeded { end: 11, total: 10 })
        ));
        assert!(matches!(
            session.write_chunk(7, 0, Some(4), 100, body(&[b"hijk"])).await,
            Err(SessionError::LengthExceeded { .. })
        ));
        assert!(matches!(
            session.write_chunk(7, 0, None, 2, body(&[b"hij"])).await,
            Err(SessionError::ChunkTooLarge { max: 2 })
        ));
        assert!(matches!(
            session.begin_encode().await,
            Err(SessionError::Incomplete {
                received: 7,
                total: 10
            })
        ));
        assert_eq!(
            session
                .write_chunk(7, 0, None, 100, body(&[b"hij"]))
                .await
                .unwrap(),
            10
        );
        assert_eq!(
            tokio::fs::read(session.source_path()).await.unwrap(),
            b"abcdefghij"
        );
        assert_eq!(session.begin_encode().await.unwrap(), BeginEncode::Start);
        assert_eq!(
            session.begin_encode().await.unwrap(),
            BeginEncode::AlreadyStarted
        );
        assert!(matches!(
            session.write_chunk(0, 0, None, 100, body(&[b"a"])).await,
            Err(SessionError::Finished)
        ));
    }

    #[tokio::test]
    async fn a_rewrite_of_bytes_ffmpeg_read_abandons_streaming_unless_identical() {
        let spool = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
            .await
            .unwrap();
        let session = new_session(&sessions, 8).await;
        session
            .write_chunk(0, 0, None, 100, body(&[b"abcd"]))
            .await
            .unwrap();
        assert_eq!(session.claim_streaming_decision().await, Some(4));
        assert_eq!(
            session.claim_streaming_decision().await,
            None,
            "one decider"
        );
        let cancel = CancellationToken::new();
        assert_eq!(session.start_streaming(cancel.clone()).await, Some(4));
        let FeedRead::Bytes(fed) = session.read_for_feed(0, 3).await.unwrap() else {
            panic!("bytes to feed");
        };
        assert_eq!(fed, b"abc");
        assert!(matches!(
            session.read_for_feed(4, 3).await.unwrap(),
            FeedRead::Wait
        ));

        // A redelivery with the same bytes changes nothing for ffmpeg.
        session
            .write_chunk(2, 0, None, 100, body(&[b"c", b"d"]))
            .await
            .unwrap();
        assert!(!cancel.is_cancelled());
        assert!(session.is_streaming().await);
        // Past what was fed, anything may be rewritten.
        session
            .write_chunk(3, 0, None, 100, body(&[b"D"]))
            .await
            .unwrap();
        assert!(!cancel.is_cancelled());
        // A different byte ffmpeg already read does.
        session
            .write_chunk(1, 0, None, 100, body(&[b"Bcd"]))
            .await
            .unwrap();
        assert!(cancel.is_cancelled());
        assert!(!session.is_streaming().await);
        assert_eq!(session.claim_streaming_decision().await, None);

        session
            .write_chunk(4, 0, None, 100, body(&[b"efgh"]))
            .await
            .unwrap();
        assert_eq!(
            tokio::fs::read(session.source_path()).await.unwrap(),
            b"aBcdefgh"
        );
        assert_eq!(session.begin_encode().await.unwrap(), BeginEncode::Start);
    }

    #[tokio::test]
    async fn a_running_streaming_encode_finishes_the_session() {
        let spool = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
            .await
            .unwrap();
        let session = new_session(&sessions, 4).await;
        session
            .write_chunk(0, 0, None, 100, body(&[b"ab"]))
            .await
            .unwrap();
        session.claim_streaming_decision().await.unwrap();
        session
            .start_streaming(CancellationToken::new())
            .await
            .unwrap();
        session
            .write_chunk(2, 0, None, 100, body(&[b"cd"]))
            .await
            .unwrap();
        assert!(matches!(
            session.read_for_feed(4, 10).await.unwrap(),
            FeedRead::End
        ));
        assert_eq!(
            session.begin_encode().await.unwrap(),
            BeginEncode::StreamingRunning
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), session.finished())
            .await
            .unwrap();
        // Had it failed now, its task would encode the complete source itself.
        assert!(session.streaming_failed().await);
    }

    #[tokio::test]
    async fn without_streaming_every_session_waits_for_its_last_byte() {
        let spool = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(spool.path().join("r1"), false, CancellationToken::new())
            .await
            .unwrap();
        let session = new_session(&sessions, 4).await;
        session
            .write_chunk(0, 0, None, 100, body(&[b"ab"]))
            .await
            .unwrap();
        assert_eq!(session.claim_streaming_decision().await, None);
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn the_digest_follows_the_source_through_rewrites() {
        let spool = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(spool.path().join("r1"), false, CancellationToken::new())
            .await
            .unwrap();
        let session = new_session(&sessions, 9).await;
        session
            .write_chunk(0, 0, None, 100, body(&[b"abc"]))
            .await
            .unwrap();
        session
            .write_chunk(3, 0, None, 100, body(&[b"XYZ"]))
            .await
            .unwrap();
        // The last chunk again, with other bytes (staged bytes overwritten): rewinds.
        session
            .write_chunk(3, 0, None, 100, body(&[b"def"]))
            .await
            .unwrap();
        session
            .write_chunk(6, 0, None, 100, body(&[b"ghi"]))
            .await
            .unwrap();
        assert_eq!(
            session.source_sha256().await.unwrap(),
            sha256_hex(b"abcdefghi")
        );
        assert!(session
            .state
            .lock()
            .await
            .digest
            .hex_if_at(9)
            .await
            .is_some());

        // A rewrite from the middle of a chunk: the digest comes from the file.
        session
            .write_chunk(4, 0, None, 100, body(&[b"EFGHI"]))
            .await
            .unwrap();
        assert!(session
            .state
            .lock()
            .await
            .digest
            .hex_if_at(9)
            .await
            .is_none());
        assert_eq!(
            session.source_sha256().await.unwrap(),
            sha256_hex(b"abcdEFGHI")
        );
    }

    #[tokio::test]
    async fn create_is_idempotent_and_refuses_conflicts() {
        let spool = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
            .await
            .unwrap();
        let request = request(5);
        assert!(matches!(
            sessions.create(&request).await.unwrap(),
            Created::New(_)
        ));
        assert!(matches!(
            sessions.create(&request).await.unwrap(),
            Created::Existing(_)
        ));
        let other = CreateProcess {
            total_bytes: Some(6),
            ..request.clone()
        };
        assert!(matches!(
            sessions.create(&other).await,
            Err(SessionError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn sessions_are_reloaded_from_the_spool() {
        let spool = tempfile::tempdir().unwrap();
        let root = spool.path().join("r1");
        let (receiving, finished) = {
            let sessions = Sessions::load(root.clone(), true, CancellationToken::new())
                .await
                .unwrap();
            let receiving = new_session(&sessions, 10).await;
            receiving
                .write_chunk(0, 0, None, 100, body(&[b"abc"]))
                .await
                .unwrap();
            let finished = new_session(&sessions, 2).await;
            finished
                .write_chunk(0, 0, None, 100, body(&[b"ab"]))
                .await
                .unwrap();
            finished.begin_encode().await.unwrap();
            (receiving.session_id, finished.session_id)
        };
        tokio::fs::create_dir_all(root.join("half-created"))
            .await
            .unwrap();

        let sessions = Sessions::load(root.clone(), true, CancellationToken::new())
            .await
            .unwrap();
        let reloaded = sessions.get(receiving).unwrap();
        assert_eq!(reloaded.phase().await, Phase::Receiving);
        assert_eq!(
            reloaded
                .write_chunk(3, 0, None, 100, body(&[b"d"]))
                .await
                .unwrap(),
            4
        );
        let encoding = sessions.encoding().await;
        assert_eq!(encoding.len(), 1);
        assert_eq!(encoding[0].session_id, finished);
        assert!(!root.join("half-created").exists());
    }

    #[tokio::test]
    async fn removing_cancels_and_forgets() {
        let spool = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
            .await
            .unwrap();
        let session = new_session(&sessions, 10).await;
        let removed = sessions.remove(session.session_id).unwrap();
        assert!(removed.cancel.is_cancelled());
        assert!(removed.is_deleted());
        removed.remove_spool().await.unwrap();
        assert!(!session.dir.exists());
        assert!(sessions.get(session.session_id).is_none());
        assert!(sessions.remove(session.session_id).is_none());
    }
}
