//! Upload throughput through the whole stack, against writing the same bytes to disk.
//!
//! `./dev bench` runs it. Prints, from one run:
//! - one 1 GiB upload in 8 MiB PATCHes: MB/s, and its ratio to `dd ... conv=fdatasync`;
//! - 20 concurrent uploads of 64 MiB: aggregate MB/s, and every upload complete;
//! - that the source fflow stitched for every upload has the SHA-256 of the bytes sent (the
//!   bytes are noise, so the encodes fail at once; the digest is reported all the same);
//! - peak resident memory of the gateway and the uploaders;
//! - the CPU time each process of the stack, RabbitMQ, PostgreSQL and Redis used, and how busy
//!   the machine was, during the single uploads and the concurrent ones.
//!
//! The single upload and dd take turns `BENCH_ROUNDS` times (3), and their medians are compared.
//! Sizes can be changed with `BENCH_SINGLE_MIB`, `BENCH_CONCURRENT`, `BENCH_CONCURRENT_MIB`,
//! `BENCH_PATCH_MIB` (8; a tus client that sends a whole file in one PATCH is
//! `BENCH_PATCH_MIB=1024`). The services' own settings pass through (`GATEWAY_CHUNK_SIZE_BYTES`
//! and the like).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use vod_bench::{release_bin_dir, LocalStack};
use vod_contracts::api::VideoView;
use vod_contracts::VideoStatus;

/// PATCH size unless `BENCH_PATCH_MIB` says otherwise.
const PATCH_MIB: usize = 8;
const MIB: f64 = 1024.0 * 1024.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Pseudo-random bytes (xorshift), so nothing on the way can profit from repetition.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The bytes of one upload and their SHA-256, made before the clock starts: a tus client only
/// sends bytes, so the server's figure must not include the benchmark hashing or copying them.
struct Payload {
    bytes: Bytes,
    /// Hex.
    sha256: String,
}

impl Payload {
    fn new(len: usize, seed: u64) -> Self {
        let bytes = Bytes::from(noise(len, seed));
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self { bytes, sha256 }
    }
}

/// What one upload sent and what the server said it stored.
struct Uploaded {
    stored: u64,
    video_id: String,
    /// SHA-256 of the bytes sent, hex.
    sha256: String,
}

/// Uploads `payload` in PATCHes of `patch_bytes`, each body a slice of it (no copy).
async fn upload(
    http: &reqwest::Client,
    gateway: &str,
    payload: &Payload,
    patch_bytes: usize,
) -> anyhow::Result<Uploaded> {
    let len = payload.bytes.len();
    let created = http
        .post(format!("{gateway}/v1/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", len.to_string())
        .send()
        .await?;
    ensure!(
        created.status() == 201,
        "creation answered {}",
        created.status()
    );
    let location = created
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .context("no Location")?
        .to_owned();
    let video_id = created
        .headers()
        .get("video-id")
        .and_then(|value| value.to_str().ok())
        .context("no Video-Id")?
        .to_owned();
    let mut offset = 0usize;
    while offset < len {
        let size = patch_bytes.min(len - offset);
        let response = http
            .patch(&location)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset.to_string())
            .body(payload.bytes.slice(offset..offset + size))
            .send()
            .await?;
        if response.status() != 204 {
            bail!(
                "PATCH at {offset} answered {}: {}",
                response.status(),
                response.text().await?
            );
        }
        offset += size;
    }
    let head = http
        .head(&location)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await?;
    let stored = head
        .headers()
        .get("upload-offset")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .context("no Upload-Offset on HEAD")?;
    Ok(Uploaded {
        stored,
        video_id,
        sha256: payload.sha256.clone(),
    })
}

/// Waits until the video's encode ended and checks that the source fflow stitched is the one
/// sent.
async fn check_source(
    http: &reqwest::Client,
    gateway: &str,
    uploaded: &Uploaded,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let video: VideoView = http
            .get(format!("{gateway}/v1/videos/{}", uploaded.video_id))
            .send()
            .await?
            .json()
            .await?;
        if matches!(video.status, VideoStatus::Ready | VideoStatus::Failed) {
            let reported = video
                .flows
                .first()
                .and_then(|flow| flow.source_sha256.clone());
            ensure!(
                reported.as_deref() == Some(uploaded.sha256.as_str()),
                "video {}: stitched source {reported:?}, sent {}",
                uploaded.video_id,
                uploaded.sha256
            );
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "video {} never settled",
            uploaded.video_id
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// MB/s of `dd` writing `mib` MiB to `dir` and syncing them.
fn dd_baseline(dir: &std::path::Path, mib: usize) -> anyhow::Result<f64> {
    let file = dir.join("dd.bin");
    let started = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args([
            "bs=8M",
            &format!("count={}", mib / 8),
            "conv=fdatasync",
            "status=none",
        ])
        .status()
        .context("dd runs")?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(status.success(), "dd failed");
    std::fs::remove_file(&file)?;
    Ok(mib as f64 / seconds)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let single_mib = env_usize("BENCH_SINGLE_MIB", 1024);
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let concurrent = env_usize("BENCH_CONCURRENT", 20);
    let concurrent_mib = env_usize("BENCH_CONCURRENT_MIB", 64);
    let patch_mib = env_usize("BENCH_PATCH_MIB", PATCH_MIB).max(1);
    let patch_bytes = patch_mib * 1024 * 1024;
    let stack = LocalStack::start(&release_bin_dir()).await?;
    let http = reqwest::Client::new();
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()?.get()
    );

    // The disk's speed swings from run to run on shared machines: dd and the upload take turns,
    // and the medians are compared.
    let payload = Payload::new(single_mib * 1024 * 1024, 1);
    let mut dd_runs = Vec::new();
    let mut upload_runs = Vec::new();
    for round in 1..=rounds {
        let dd = dd_baseline(stack.dir.path(), single_mib)?;
        println!("round {round}: dd conv=fdatasync, {single_mib} MiB: {dd:.1} MB/s");
        let cpu_before = stack.cpu_sample();
        let started = Instant::now();
        let uploaded = upload(&http, &stack.gateway_url, &payload, patch_bytes).await?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = stack.cpu_sample().since(&cpu_before);
        let stored = uploaded.stored;
        ensure!(
            stored == (single_mib * 1024 * 1024) as u64,
            "single upload stored {stored} bytes"
        );
        let single = stored as f64 / MIB / seconds;
        println!(
            "round {round}: one {single_mib} MiB upload in {patch_mib} MiB PATCHes: {single:.1} MB/s in {seconds:.1} s"
        );
        println!("  {cpu}");
        check_source(&http, &stack.gateway_url, &uploaded).await?;
        println!("  its stitched source has the SHA-256 of the bytes sent");
        dd_runs.push(dd);
        upload_runs.push(single);
    }
    drop(payload);
    let (dd, single) = (median(&mut dd_runs), median(&mut upload_runs));
    println!(
        "median of {rounds}: dd {dd:.1} MB/s, one upload {single:.1} MB/s, {:.2} x dd",
        single / dd
    );

    let payloads: Vec<Payload> = (0..concurrent)
        .map(|index| Payload::new(concurrent_mib * 1024 * 1024, 100 + index as u64))
        .collect();
    let cpu_before = stack.cpu_sample();
    let started = Instant::now();
    let uploads = payloads.iter().map(|payload| {
        let http = http.clone();
        let gateway = stack.gateway_url.clone();
        async move { upload(&http, &gateway, payload, patch_bytes).await }
    });
    let results = futures_util::future::join_all(uploads).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = stack.cpu_sample().since(&cpu_before);
    drop(payloads);
    let expected = (concurrent_mib * 1024 * 1024) as u64;
    let complete = results
        .iter()
        .filter(|result| matches!(result, Ok(uploaded) if uploaded.stored == expected))
        .count();
    let total_mib = (concurrent * concurrent_mib) as f64;
    println!(
        "{concurrent} concurrent uploads of {concurrent_mib} MiB: {:.1} MB/s aggregate in {seconds:.1} s, {complete}/{concurrent} complete",
        total_mib / seconds
    );
    println!("  {cpu}");
    for result in &results {
        if let Err(error) = result {
            println!("  failed: {error:#}");
        }
    }
    for (name, mib) in stack
        .peak_rss_mib("gateway")
        .into_iter()
        .chain(stack.peak_rss_mib("uploader"))
    {
        println!("peak RSS {name}: {mib:.0} MiB");
    }
    ensure!(
        complete == concurrent,
        "not every concurrent upload completed"
    );
    let checks = results.iter().flatten().map(|uploaded| {
        let http = http.clone();
        let gateway = stack.gateway_url.clone();
        async move { check_source(&http, &gateway, uploaded).await }
    });
    let verified = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .filter(|checked| match checked {
            Ok(()) => true,
            Err(error) => {
                println!("  wrong source: {error:#}");
                false
            }
        })
        .count();
    println!("  {verified}/{concurrent} stitched sources have the SHA-256 of the bytes sent");
    ensure!(
        verified == concurrent,
        "a stitched source differs from what was sent"
    );
    Ok(())
}
