//! The source file on disk: chunks written at their offsets on a blocking thread (comparing the
//! bytes ffmpeg already read, hashing behind the writes), reads for ffmpeg and for the digest.

use std::fmt::Display;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::SessionError;
use crate::digest::DigestTrail;

/// Bytes of a chunk's body gathered before they are handed to the spool writer together.
pub const WRITE_BATCH_BYTES: usize = 1024 * 1024;

/// How a chunk's write went.
pub struct Spooled {
    /// Bytes of the body written from the chunk's offset.
    pub written: u64,
    /// The chunk rewrote bytes ffmpeg had read with other bytes.
    pub diverged: bool,
    /// Err when the body was refused or interrupted or the disk failed.
    pub result: Result<(), SessionError>,
}

/// Writes `body` into `source` from `offset`. Bytes below `fed` were read by ffmpeg: they are
/// compared before being overwritten. `fits(written)` is asked as the body arrives and ends the
/// write when it refuses. The body is received here while the bytes before it are compared and
/// written on a blocking thread, and hashed behind them: all three overlap, and the async
/// threads never wait for the disk.
pub async fn write_chunk<S, E>(
    source: &Path,
    offset: u64,
    fed: u64,
    digest: DigestTrail,
    mut body: S,
    fits: impl Fn(u64) -> Result<(), SessionError>,
) -> Spooled
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let writer = match SpoolWriter::open(source, offset, fed, digest).await {
        Ok(writer) => writer,
        Err(err) => {
            return Spooled {
                written: 0,
                diverged: false,
                result: Err(err.into()),
            }
        }
    };
    let (batches, to_write) = tokio::sync::mpsc::channel::<Vec<Bytes>>(1);
    let spooling = tokio::task::spawn_blocking(move || writer.run(to_write));
    let mut written = 0u64;
    let received: Result<(), SessionError> = async {
        let mut batch = Vec::new();
        let mut batch_len = 0;
        while let Some(frame) = body.next().await {
            let bytes = frame.map_err(|err| SessionError::BodyInterrupted(err.to_string()))?;
            written += bytes.len() as u64;
            fits(written)?;
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
    let (diverged, result) = match (spooled, received) {
        (Ok(diverged), received) => (diverged, received),
        (Err(error), _) => (false, Err(error)),
    };
    Spooled {
        written,
        diverged,
        result,
    }
}

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
    async fn open(source: &Path, at: u64, fed: u64, digest: DigestTrail) -> anyhow::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(source)
            .await
            .context("failed to open the source file")?;
        let already_read = if at < fed {
            let reader = tokio::fs::File::open(source)
                .await
                .context("failed to open the source file")?;
            Some(reader.into_std().await)
        } else {
            None
        };
        Ok(Self {
            file: file.into_std().await,
            already_read,
            at,
            fed,
            diverged: false,
            digest,
        })
    }

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
pub async fn cut_source(path: PathBuf, len: u64) -> std::io::Result<()> {
    let file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
    file.set_len(len).await
}

/// `len` bytes of the source from `offset`.
pub async fn read_at(source: &Path, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(source)
        .await
        .context("failed to open the source file")?;
    file.seek(SeekFrom::Start(offset))
        .await
        .context("failed to seek in the source file")?;
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes)
        .await
        .context("failed to read the source file")?;
    Ok(bytes)
}

/// The SHA-256 of the first `len` bytes of the source, read from the file.
pub async fn hash_file(source: &Path, len: u64) -> anyhow::Result<String> {
    let mut file = tokio::fs::File::open(source)
        .await
        .context("failed to open the source to hash it")?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut hashed = 0u64;
    while hashed < len {
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
