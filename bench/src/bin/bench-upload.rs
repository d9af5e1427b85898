//! Upload throughput through the whole stack, against writing the same bytes to disk.
//!
//! `./dev bench` runs it. Prints, from one run:
//! - one 1 GiB upload in 8 MiB PATCHes: MB/s, and its ratio to `dd ... conv=fdatasync`;
//! - 20 concurrent uploads of 64 MiB: aggregate MB/s, and every upload complete;
//! - peak resident memory of the gateway and the uploaders.
//!
//! Sizes can be changed with `BENCH_SINGLE_MIB`, `BENCH_CONCURRENT`, `BENCH_CONCURRENT_MIB`.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use vod_bench::{release_bin_dir, LocalStack};

const PATCH_BYTES: usize = 8 * 1024 * 1024;
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

/// Uploads `len` bytes in PATCHes of [`PATCH_BYTES`]; returns the server's final offset.
async fn upload(
    http: &reqwest::Client,
    gateway: &str,
    len: usize,
    seed: u64,
) -> anyhow::Result<u64> {
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
    let piece = noise(PATCH_BYTES, seed);
    let mut offset = 0usize;
    while offset < len {
        let size = PATCH_BYTES.min(len - offset);
        let mut body = piece[..size].to_vec();
        body[..8.min(size)].copy_from_slice(&offset.to_le_bytes()[..8.min(size)]);
        let response = http
            .patch(&location)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset.to_string())
            .body(body)
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
    head.headers()
        .get("upload-offset")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .context("no Upload-Offset on HEAD")
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
    let concurrent = env_usize("BENCH_CONCURRENT", 20);
    let concurrent_mib = env_usize("BENCH_CONCURRENT_MIB", 64);
    let stack = LocalStack::start(&release_bin_dir()).await?;
    let http = reqwest::Client::new();
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()?.get()
    );

    let dd = dd_baseline(stack.dir.path(), single_mib)?;
    println!("dd conv=fdatasync, {single_mib} MiB: {dd:.1} MB/s");

    let started = Instant::now();
    let stored = upload(&http, &stack.gateway_url, single_mib * 1024 * 1024, 1).await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        stored == (single_mib * 1024 * 1024) as u64,
        "single upload stored {stored} bytes"
    );
    let single = stored as f64 / MIB / seconds;
    println!(
        "one {single_mib} MiB upload in 8 MiB PATCHes: {single:.1} MB/s in {seconds:.1} s, {:.2} x dd",
        single / dd
    );

    let started = Instant::now();
    let uploads = (0..concurrent).map(|index| {
        let http = http.clone();
        let gateway = stack.gateway_url.clone();
        async move {
            upload(
                &http,
                &gateway,
                concurrent_mib * 1024 * 1024,
                100 + index as u64,
            )
            .await
        }
    });
    let results = futures_util::future::join_all(uploads).await;
    let seconds = started.elapsed().as_secs_f64();
    let expected = (concurrent_mib * 1024 * 1024) as u64;
    let complete = results
        .iter()
        .filter(|result| matches!(result, Ok(stored) if *stored == expected))
        .count();
    let total_mib = (concurrent * concurrent_mib) as f64;
    println!(
        "{concurrent} concurrent uploads of {concurrent_mib} MiB: {:.1} MB/s aggregate in {seconds:.1} s, {complete}/{concurrent} complete",
        total_mib / seconds
    );
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
    Ok(())
}
