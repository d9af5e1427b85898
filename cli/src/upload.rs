//! `vod upload`: a resumable tus upload with a progress bar. The upload URL is remembered by
//! the file's fingerprint as soon as the server creates it; run again, the command asks the
//! server where the upload stands and sends only the rest.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::api::{Api, ApiError};
use crate::state::{self, State, Unfinished};

/// Frames of a PATCH body; the progress bar and the rate limit move per frame.
const FRAME_BYTES: usize = 64 * 1024;

pub struct UploadOptions {
    pub file: PathBuf,
    pub title: Option<String>,
    pub chunk_size: u64,
    /// Bytes per second at most, for slow or shared links.
    pub limit_rate: Option<u64>,
    /// Attempts of one PATCH before giving up.
    pub retries: u32,
    pub state_file: PathBuf,
    pub quiet: bool,
}

/// Uploads the file, resuming an earlier attempt; returns the video's id.
pub async fn upload(api: &Api, options: &UploadOptions) -> anyhow::Result<String> {
    let size = std::fs::metadata(&options.file)
        .with_context(|| format!("cannot read {}", options.file.display()))?
        .len();
    if size == 0 {
        bail!(
            "{} is empty: there is nothing to upload",
            options.file.display()
        );
    }
    let fingerprint = state::fingerprint(&options.file, &api.server)?;
    let mut state = State::load(&options.state_file)?;
    let (location, video_id, mut offset) = match resumable(api, &state, &fingerprint).await? {
        Some((upload, offset)) => {
            println!(
                "resuming upload of {} at byte {offset} of {size}",
                options.file.display()
            );
            (upload.location, upload.video_id, offset)
        }
        None => {
            let created = api
                .create_upload(size, &metadata(&options.file, options.title.as_deref()))
                .await?;
            let video_id = created.video_id.map(|id| id.to_string());
            state.remember(
                fingerprint.clone(),
                Unfinished {
                    location: created.location.clone(),
                    video_id: video_id.clone(),
                    file: options.file.clone(),
                    size,
                },
            );
            state.save(&options.state_file)?;
            println!(
                "uploading {} ({size} bytes) as video {}",
                options.file.display(),
                video_id.as_deref().unwrap_or("?")
            );
            (created.location, video_id, 0)
        }
    };

    let progress = progress_bar(size, offset, options.quiet);
    let pace = Pace::new(options.limit_rate);
    let mut file = tokio::fs::File::open(&options.file).await?;
    let mut failures = 0u32;
    while offset < size {
        let len = options.chunk_size.min(size - offset);
        file.seek(SeekFrom::Start(offset)).await?;
        let mut chunk = vec![0u8; usize::try_from(len)?];
        file.read_exact(&mut chunk)
            .await
            .with_context(|| format!("cannot read {}", options.file.display()))?;
        let checksum = format!(
            "sha256 {}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&chunk))
        );
        progress.set_position(offset);
        let body = paced_body(Bytes::from(chunk), progress.clone(), pace.clone());
        match api.patch(&location, offset, &checksum, body).await {
            Ok(new_offset) => {
                offset = new_offset;
                failures = 0;
            }
            Err(error) if error.is_transient() || error.code() == Some("offset_mismatch") => {
                failures += 1;
                if failures > options.retries {
                    return Err(error)
                        .context("the upload stopped; run the same command again to resume");
                }
                progress.println(format!(
                    "{error}; asking the server where the upload stands"
                ));
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                offset = match api.upload_status(&location).await {
                    Ok(status) => status.offset,
                    Err(status_error) if status_error.is_transient() => offset,
                    Err(status_error) => return Err(status_error.into()),
                };
            }
            Err(error) => {
                if matches!(error.code(), Some("upload_not_found" | "upload_expired")) {
                    state.forget(&fingerprint);
                    state.save(&options.state_file)?;
                }
                return Err(error.into());
            }
        }
    }
    progress.finish_with_message("uploaded");
    state.forget(&fingerprint);
    state.save(&options.state_file)?;
    let video_id = video_id.unwrap_or_default();
    println!("upload complete: video {video_id} is processing; `vod wait {video_id}` follows it");
    Ok(video_id)
}

/// The remembered upload of this file and where it stands, if the server still has it.
async fn resumable(
    api: &Api,
    state: &State,
    fingerprint: &str,
) -> anyhow::Result<Option<(Unfinished, u64)>> {
    let Some(upload) = state.get(fingerprint) else {
        return Ok(None);
    };
    match api.upload_status(&upload.location).await {
        Ok(status) => Ok(Some((upload.clone(), status.offset))),
        Err(ApiError::Refused(refusal)) if matches!(refusal.status.as_u16(), 404 | 410) => {
            println!(
                "the earlier upload of this file is gone ({}); starting over",
                refusal.message
            );
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// tus `Upload-Metadata`: the file name, and the title when given.
fn metadata(file: &Path, title: Option<&str>) -> String {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".to_owned());
    let mut pairs = vec![format!("filename {}", encode(&name))];
    if let Some(title) = title {
        pairs.push(format!("title {}", encode(title)));
    }
    pairs.join(",")
}

fn progress_bar(size: u64, position: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let progress = ProgressBar::new(size);
    let style = ProgressStyle::with_template(
        "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    progress.set_style(style);
    progress.set_position(position);
    progress
}

/// The rate limit of one whole upload: every byte sent, in every PATCH, counts against the
/// same clock, so small chunks are paced as well as large ones.
#[derive(Clone)]
struct Pace(Option<Arc<PaceState>>);

struct PaceState {
    bytes_per_second: u64,
    started: Instant,
    sent: std::sync::atomic::AtomicU64,
}

impl Pace {
    fn new(limit_rate: Option<u64>) -> Self {
        Self(limit_rate.filter(|rate| *rate > 0).map(|bytes_per_second| {
            Arc::new(PaceState {
                bytes_per_second,
                started: Instant::now(),
                sent: std::sync::atomic::AtomicU64::new(0),
            })
        }))
    }

    /// Frames small enough that a limited upload moves several times a second.
    fn frame_bytes(&self) -> usize {
        match &self.0 {
            Some(state) => usize::try_from(state.bytes_per_second / 8)
                .unwrap_or(FRAME_BYTES)
                .clamp(1024, FRAME_BYTES),
            None => FRAME_BYTES,
        }
    }

    /// Waits until the bytes sent before this frame are within the rate, then counts the frame.
    async fn admit(&self, frame_len: usize) {
        let Some(state) = &self.0 else { return };
        let before = state
            .sent
            .fetch_add(frame_len as u64, std::sync::atomic::Ordering::Relaxed);
        let due = Duration::from_secs_f64(before as f64 / state.bytes_per_second as f64);
        if let Some(wait) = due.checked_sub(state.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A PATCH body sent frame by frame, moving the progress bar and keeping to the upload's pace.
fn paced_body(chunk: Bytes, progress: ProgressBar, pace: Pace) -> reqwest::Body {
    let frame_bytes = pace.frame_bytes();
    let frames: Vec<Bytes> = (0..chunk.len())
        .step_by(frame_bytes)
        .map(|start| chunk.slice(start..(start + frame_bytes).min(chunk.len())))
        .collect();
    let stream = futures_util::stream::iter(frames).then(move |frame| {
        let progress = progress.clone();
        let pace = pace.clone();
        async move {
            pace.admit(frame.len()).await;
            progress.inc(frame.len() as u64);
            Ok::<_, std::io::Error>(frame)
        }
    });
    reqwest::Body::wrap_stream(stream)
}
