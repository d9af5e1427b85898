//! Measures the encode pipeline through the whole stack and prints the figures of
//! BENCHMARKS.md; it asserts nothing about time.
//!
//! ```sh
//! ./dev bench                # or: cargo run --release -p vod-tests --bin bench-encode
//! ./dev bench --seconds 20   # a shorter clip
//! ```
//!
//! It makes a 720p clip with picture and sound twice (the same content as an MP4 with its index
//! at the end, as a camera writes it, and as a faststart MP4 that can be read as it arrives),
//! times a bare ffmpeg run of fflow's own ladder command on it, then uploads each through the
//! whole stack (gateway, two uploaders, two fflow replicas, holder, on the real PostgreSQL,
//! Redis and RabbitMQ): once as fast as it goes, once throttled to the clip's own duration
//! (about realtime).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use vod_contracts::{EncodePath, VideoStatus};
use vod_tests::{Stack, StackOptions, TestEnv};

/// Bytes per PATCH; the gateway cuts them into its own chunks.
const PATCH_BYTES: usize = 1024 * 1024;

struct Run {
    first_byte_to_ready: Duration,
    last_byte_to_ready: Duration,
    upload: Duration,
    path: Option<EncodePath>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    vod_infra::telemetry::init("error");
    let seconds = clip_seconds()?;
    print_machine();

    let env = TestEnv::new().await;
    let camera = env.dir.path().join("camera.mp4");
    let faststart = env.dir.path().join("faststart.mp4");
    println!("making a {seconds} s 1280x720 clip with picture and sound ...");
    make_clips(&camera, &faststart, seconds)?;
    let size = std::fs::metadata(&camera)?.len();
    println!(
        "clip: {:.1} MB, {:.2} Mbit/s\n",
        size as f64 / 1e6,
        size as f64 * 8.0 / f64::from(seconds) / 1e6
    );

    let bare = bare_ffmpeg(&camera, env.dir.path()).await?;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            chunk_size_bytes: 8 * 1024 * 1024,
            max_upload_bytes: 16 * 1024 * 1024 * 1024,
            ..StackOptions::default()
        },
    )
    .await;
    let realtime = Duration::from_secs(u64::from(seconds));
    let fast_stream = upload_and_time(&stack, &faststart, None).await?;
    let fast_camera = upload_and_time(&stack, &camera, None).await?;
    let slow_stream = upload_and_time(&stack, &faststart, Some(realtime)).await?;
    let slow_camera = upload_and_time(&stack, &camera, Some(realtime)).await?;
    stack.shutdown().await;

    let secs = |duration: Duration| duration.as_secs_f64();
    println!("bare ffmpeg, same ladder, same file: {:.2} s", secs(bare));
    println!(
        "encode speed: {:.2}x realtime\n",
        f64::from(seconds) / secs(bare)
    );
    println!(
        "{:<44} {:>10} {:>10} {:>12} {:>12}  path",
        "upload through the stack", "upload s", "ready s", "last→READY s", "÷ bare"
    );
    for (name, run) in [
        ("faststart MP4, unthrottled", &fast_stream),
        ("moov-at-end MP4, unthrottled", &fast_camera),
        ("faststart MP4, throttled to realtime", &slow_stream),
        ("moov-at-end MP4, throttled to realtime", &slow_camera),
    ] {
        println!(
            "{:<44} {:>10.2} {:>10.2} {:>12.2} {:>12.3}  {}",
            name,
            secs(run.upload),
            secs(run.first_byte_to_ready),
            secs(run.last_byte_to_ready),
            secs(run.first_byte_to_ready) / secs(bare),
            run.path.map_or("-", EncodePath::as_str),
        );
    }
    println!(
        "\n\"ready s\" is first byte → READY; \"÷ bare\" divides it by the bare ffmpeg run \
         (the pipeline's overhead when the upload is faster than the encode)."
    );
    Ok(())
}

fn clip_seconds() -> anyhow::Result<u32> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 60;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a whole number of seconds")?;
            }
            other => bail!("unknown argument {other:?}; usage: bench-encode [--seconds N]"),
        }
    }
    ensure!(seconds >= 5, "--seconds must be at least 5");
    Ok(seconds)
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let ffmpeg = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("machine: {cpu}, {cores} cores available\n{ffmpeg}\n");
}

fn make_clips(camera: &Path, faststart: &Path, seconds: u32) -> anyhow::Result<()> {
    let seconds = seconds.to_string();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds, "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(camera)
        .status()?;
    ensure!(status.success(), "ffmpeg could not make the clip");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(camera)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(faststart)
        .status()?;
    ensure!(status.success(), "ffmpeg could not remux the clip");
    Ok(())
}

/// Runs fflow's ladder command on the complete file with nothing around it.
async fn bare_ffmpeg(source: &Path, dir: &Path) -> anyhow::Result<Duration> {
    let work = dir.join("bare");
    std::fs::create_dir_all(work.join("out"))?;
    std::fs::copy(source, work.join("source"))?;
    let config = fflow::Config::default();
    let args = fflow::encode_args_for_file(&config, &work, "source", "out").await?;
    println!("bare ffmpeg run ...");
    let started = Instant::now();
    let output = Command::new("ffmpeg")
        .current_dir(&work)
        .args(&args)
        .output()?;
    let elapsed = started.elapsed();
    ensure!(
        output.status.success(),
        "bare ffmpeg failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

/// Uploads `path` in PATCHes, spread over `spread` when given, and waits for READY.
async fn upload_and_time(
    stack: &Stack,
    path: &Path,
    spread: Option<Duration>,
) -> anyhow::Result<Run> {
    let bytes = std::fs::read(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("clip");
    println!(
        "uploading {name}{} ...",
        if spread.is_some() {
            " at about realtime"
        } else {
            ""
        }
    );
    let upload = stack.create_upload(bytes.len() as u64, name).await;
    let first_byte = Instant::now();
    let mut offset = 0usize;
    for piece in bytes.chunks(PATCH_BYTES) {
        if let Some(spread) = spread {
            let due = spread.mul_f64(offset as f64 / bytes.len() as f64);
            tokio::time::sleep_until((first_byte + due).into()).await;
        }
        let response = stack
            .patch(&upload.location, offset as u64, piece.to_vec())
            .await;
        ensure!(
            response.status() == 204,
            "PATCH at {offset} answered {}",
            response.status()
        );
        offset += piece.len();
    }
    let last_byte = Instant::now();
    loop {
        let video = stack.video(upload.video_id).await;
        match video.status {
            VideoStatus::Ready => {
                let ready = Instant::now();
                return Ok(Run {
                    first_byte_to_ready: ready - first_byte,
                    last_byte_to_ready: ready - last_byte,
                    upload: last_byte - first_byte,
                    path: video.flows[0].encode_path,
                });
            }
            VideoStatus::Failed => bail!("{name} failed: {:?}", video.flows[0].error),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
