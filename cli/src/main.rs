//! `vod`: upload videos to a vod server and follow them until they play.

mod api;
mod state;
mod upload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use vod_contracts::api::VideoView;
use vod_contracts::VideoStatus;

use crate::api::Api;
use crate::upload::UploadOptions;

#[derive(Parser)]
#[command(
    name = "vod",
    version,
    about = "Upload videos to a vod server and follow them"
)]
struct Cli {
    /// Address of the vod gateway.
    #[arg(
        long,
        env = "VOD_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Seconds without an answer before a request is given up.
    #[arg(long, default_value_t = 60, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a file; run it again after an interruption and it resumes where the server is.
    Upload {
        file: PathBuf,
        /// The video's title (default: the file name).
        #[arg(long)]
        title: Option<String>,
        /// Bytes per PATCH request; each one is checksummed and can be resumed after.
        #[arg(long, default_value_t = 8 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
        chunk_size: u64,
        /// Send at most this many bytes per second.
        #[arg(long)]
        limit_rate: Option<u64>,
        /// Attempts of one request that fails on the way before giving up.
        #[arg(long, default_value_t = 5)]
        retries: u32,
        /// Where unfinished uploads are remembered.
        #[arg(long, env = "VOD_STATE_FILE")]
        state_file: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Show a video: its status, its uploads and, once ready, where it plays.
    Status { video_id: String },
    /// Follow a video until it is ready, then print its playback URLs.
    Wait {
        video_id: String,
        /// Seconds between two looks.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Give up after this many seconds.
        #[arg(long)]
        max_wait: Option<u64>,
    },
    /// List videos, newest first.
    Ls {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let api = Api::new(&cli.server, Duration::from_secs(cli.timeout))?;
    match cli.command {
        Command::Upload {
            file,
            title,
            chunk_size,
            limit_rate,
            retries,
            state_file,
            quiet,
        } => {
            let options = UploadOptions {
                file,
                title,
                chunk_size,
                limit_rate,
                retries,
                state_file: state_file.unwrap_or_else(state::default_path),
                quiet,
            };
            upload::upload(&api, &options).await?;
        }
        Command::Status { video_id } => print_video(&api.video(&video_id).await?),
        Command::Wait {
            video_id,
            interval,
            max_wait,
        } => wait(&api, &video_id, interval, max_wait).await?,
        Command::Ls { limit } => {
            let list = api.videos(limit).await?;
            if list.videos.is_empty() {
                println!("no videos");
            }
            for video in &list.videos {
                println!(
                    "{}  {:<10}  {}  {}",
                    video.id,
                    video.status.as_str(),
                    video.created_at.format("%Y-%m-%d %H:%M"),
                    video.title
                );
            }
        }
    }
    Ok(())
}

fn print_video(video: &VideoView) {
    println!("{}  {}", video.id, video.title);
    println!("status: {}", video.status.as_str());
    for flow in &video.flows {
        let total = if flow.total_bytes > 0 {
            flow.total_bytes.to_string()
        } else {
            "?".to_owned()
        };
        print!(
            "  upload {}: {} ({} of {total} bytes)",
            flow.id,
            flow.status.as_str(),
            flow.uploaded_bytes
        );
        if let Some(duration) = flow.duration_seconds {
            print!(", {duration:.1} s");
        }
        if let (Some(width), Some(height)) = (flow.width, flow.height) {
            print!(", {width}x{height}");
        }
        if let Some(error) = &flow.error {
            print!(", failed: {error}");
        }
        println!();
    }
    if let Some(playback) = &video.playback {
        println!("hls:  {}", playback.hls);
        println!("dash: {}", playback.dash);
    }
}

async fn wait(
    api: &Api,
    video_id: &str,
    interval: f64,
    max_wait: Option<u64>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let interval = Duration::from_secs_f64(interval.max(0.1));
    loop {
        let video = api.video(video_id).await?;
        match video.status {
            VideoStatus::Ready => {
                spinner.finish_and_clear();
                println!("{} is ready", video.title);
                if let Some(playback) = &video.playback {
                    println!("hls:  {}", playback.hls);
                    println!("dash: {}", playback.dash);
                }
                return Ok(());
            }
            VideoStatus::Failed => {
                spinner.finish_and_clear();
                let reason = video
                    .flows
                    .iter()
                    .find_map(|flow| flow.error.clone())
                    .unwrap_or_else(|| "no reason given".to_owned());
                anyhow::bail!("video {video_id} failed: {reason}");
            }
            status => {
                let message = match video.flows.first() {
                    Some(flow) if status == VideoStatus::Uploading && flow.total_bytes > 0 => {
                        format!(
                            "uploading: {} of {} bytes",
                            flow.uploaded_bytes, flow.total_bytes
                        )
                    }
                    Some(flow) if status == VideoStatus::Processing => {
                        match flow.progress_percent {
                            Some(percent) => format!("processing: {percent}%"),
                            None => "processing".to_owned(),
                        }
                    }
                    _ => status.as_str().to_lowercase(),
                };
                spinner.set_message(message);
                spinner.tick();
            }
        }
        if max_wait.is_some_and(|max| started.elapsed() >= Duration::from_secs(max)) {
            spinner.finish_and_clear();
            anyhow::bail!(
                "video {video_id} is not ready after {} seconds",
                started.elapsed().as_secs()
            );
        }
        tokio::time::sleep(interval).await;
    }
}
