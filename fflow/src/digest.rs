//! The SHA-256 of a session's source, kept as its chunks land.
//!
//! Hashing costs more than writing the bytes (about 1.3 GB/s with the CPU's SHA instructions,
//! against several GB/s into the page cache), so it is not done while a chunk is written: a
//! session's bytes go in order to a [`DigestTrail`], which hashes them behind the writes on the
//! replica's hashing threads. These run at a lower priority than the rest of the process, so
//! that what a chunk's answer waits for (receiving and writing it, and the other services on
//! the same machine) goes first and hashing takes the CPU left over. A chunk is answered once
//! its bytes are on disk; the trail catches up meanwhile, and a question about the digest waits
//! for it.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Checkpoints kept to rewind the digest when a chunk is written again.
const DIGEST_CHECKPOINTS: usize = 64;

/// Batches of bytes the trail may lag behind the writes, each about
/// [`crate::session::spool::WRITE_BATCH_BYTES`]: past that, writing waits for hashing, so a replica's
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
/// own that hashes on the replica's hashing threads. The task ends with the trail.
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
                        let (hashed, answer) = oneshot::channel();
                        hashers().run(Box::new(move || {
                            batch.iter().for_each(|bytes| digest.update(bytes));
                            let _ = hashed.send(digest);
                        }));
                        digest = answer.await.unwrap_or_else(|_| {
                            tracing::error!(
                                "hashing the source failed, it is hashed again from its file"
                            );
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

/// How much lower than the rest of the process the hashing threads run (`nice`, 0 to 19).
const HASHING_NICENESS: i32 = 5;

type HashJob = Box<dyn FnOnce() + Send>;

/// The replica's hashing threads, one per core, taking jobs in turn.
struct Hashers {
    jobs: std::sync::mpsc::Sender<HashJob>,
}

fn hashers() -> &'static Hashers {
    static HASHERS: OnceLock<Hashers> = OnceLock::new();
    HASHERS.get_or_init(|| {
        let (jobs, queued) = std::sync::mpsc::channel::<HashJob>();
        let queued = Arc::new(Mutex::new(queued));
        let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        for index in 0..threads {
            let queued = queued.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("source-hash-{index}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match queued.lock() {
                            Ok(queued) => queued.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        let Ok(job) = job else { return };
                        // A job that panics drops its answer: the session's digest becomes
                        // unknown and is read from the file when asked for.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(error = %error, "no hashing thread started");
            }
        }
        Hashers { jobs }
    })
}

impl Hashers {
    fn run(&self, job: HashJob) {
        if self.jobs.send(job).is_err() {
            tracing::error!("no hashing thread runs");
        }
    }
}

/// Lowers the calling thread's priority by [`HASHING_NICENESS`] (on Linux, the priority of a
/// thread id is that thread's alone).
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), HASHING_NICENESS) {
        tracing::debug!(error = %error, "hashing thread keeps its priority");
    }
}
