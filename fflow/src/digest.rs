//! The SHA-256 of a session's source, kept as its chunks land.
//!
//! Hashing costs more than writing the bytes (about 1.3 GB/s with the CPU's SHA instructions,
//! against several GB/s into the page cache), so it is not done while a chunk is written: a
//! session's bytes go in order to a [`DigestTrail`], which hashes them behind the writes on a
//! blocking thread. A chunk is answered once its bytes are on disk; the trail catches up
//! meanwhile, and a question about the digest waits for it.

use std::collections::VecDeque;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Checkpoints kept to rewind the digest when a chunk is written again.
const DIGEST_CHECKPOINTS: usize = 64;

/// Batches of bytes the trail may lag behind the writes, each about
/// [`crate::sessions::WRITE_BATCH_BYTES`]: past that, writing waits for hashing, so a replica's
/// memory does not grow when its CPU cannot keep up.
const TRAIL_BATCHES: usize = 8;

/// SHA-256 of the source as its chunks land, in order. A chunk written again at the start of
/// one of the last chunks rewinds to the checkpoint taken there; any other rewrite makes the
/// running digest unknown, and the file is read again when the digest is asked for.
pub struct SourceDigest {
    hasher: Option<Sha256>,
    hashed: u64,
    checkpoints: VecDeque<(u64, Sha256)>,
}

impl SourceDigest {
    pub fn new() -> Self {
        Self {
            hasher: Some(Sha256::new()),
            hashed: 0,
            checkpoints: VecDeque::new(),
        }
    }

    pub fn unknown() -> Self {
        Self {
            hasher: None,
            hashed: 0,
            checkpoints: VecDeque::new(),
        }
    }

    /// The source is cut at `offset` and written from there.
    fn rewind_to(&mut self, offset: u64) {
        if let Some(hasher) = &self.hasher {
            if self.hashed == offset {
                if self.checkpoints.back().is_some_and(|(at, _)| *at == offset) {
                    self.checkpoints.pop_back();
                }
                self.checkpoints.push_back((offset, hasher.clone()));
                if self.checkpoints.len() > DIGEST_CHECKPOINTS {
                    self.checkpoints.pop_front();
                }
                return;
            }
        }
        match self.checkpoints.iter().position(|(at, _)| *at == offset) {
            Some(index) => {
                self.checkpoints.truncate(index + 1);
                self.hasher = self.checkpoints.back().map(|(_, hasher)| hasher.clone());
                self.hashed = offset;
            }
            None => {
                self.hasher = None;
                self.checkpoints.clear();
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
            self.hashed += bytes.len() as u64;
        }
    }

    fn hex_if_at(&self, len: u64) -> Option<String> {
        let hasher = self.hasher.as_ref().filter(|_| self.hashed == len)?;
        Some(format!("{:x}", hasher.clone().finalize()))
    }
}

enum Step {
    Rewind(u64),
    Hash(Vec<Bytes>),
    /// The digest of the first `len` bytes, if the trail knows it.
    Hex(u64, oneshot::Sender<Option<String>>),
}

/// A session's [`SourceDigest`], updated in the order the steps are sent, by a task of its
/// own that hashes on a blocking thread. The task ends with the trail.
#[derive(Clone)]
pub struct DigestTrail {
    steps: mpsc::Sender<Step>,
}

impl DigestTrail {
    /// Starts the trail's task; needs a Tokio runtime.
    pub fn start(digest: SourceDigest) -> Self {
        let (steps, mut queued) = mpsc::channel(TRAIL_BATCHES);
        tokio::spawn(async move {
            let mut digest = digest;
            while let Some(step) = queued.recv().await {
                match step {
                    Step::Rewind(offset) => digest.rewind_to(offset),
                    Step::Hash(batch) => {
                        digest = tokio::task::spawn_blocking(move || {
                            batch.iter().for_each(|bytes| digest.update(bytes));
                            digest
                        })
                        .await
                        .unwrap_or_else(|error| {
                            tracing::error!(error = %error, "hashing the source failed, it is hashed again from its file");
                            SourceDigest::unknown()
                        });
                    }
                    Step::Hex(len, answer) => {
                        let _ = answer.send(digest.hex_if_at(len));
                    }
                }
            }
        });
        Self { steps }
    }

    /// The source is cut at `offset` and written from there.
    pub async fn rewind_to(&self, offset: u64) {
        self.send(Step::Rewind(offset)).await;
    }

    /// Bytes written right after those sent before, from a blocking thread. Waits while the
    /// trail is [`TRAIL_BATCHES`] behind.
    pub fn blocking_hash(&self, batch: Vec<Bytes>) {
        if self.steps.blocking_send(Step::Hash(batch)).is_err() {
            tracing::error!("the source's digest trail stopped");
        }
    }

    /// The SHA-256 of the first `len` bytes, hex, once everything sent before is hashed; `None`
    /// when a rewrite made the running digest unknown, or the source is longer or shorter.
    pub async fn hex_if_at(&self, len: u64) -> Option<String> {
        let (answer, answered) = oneshot::channel();
        self.send(Step::Hex(len, answer)).await;
        answered.await.ok().flatten()
    }

    async fn send(&self, step: Step) {
        if self.steps.send(step).await.is_err() {
            tracing::error!("the source's digest trail stopped");
        }
    }
}
