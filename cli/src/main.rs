//! `vod`: upload videos to a vod server and follow them until they play.

mod api;
mod api_key;
mod direct_uploads;
mod events;
mod keys;
mod state;
mod upload;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use vod_contracts::api::VideoView;
use vod_contracts::{VideoId, VideoStatus};

use crate::api::Api;
use crate::api_key::ApiKey;
use crate::direct_uploads::DirectUploadCommand;
use crate::events::EventsArgs;
use crate::keys::KeysCommand;
use crate::upload::UploadOptions;
use crate::webhooks::WebhooksCommand;

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
    /// The API key sent with every request (`vod keys create` makes one; `./dev up` writes one
    /// to .dev/api-key).
    #[arg(
        long,
        env = "VOD_API_KEY",
        hide_env_values = true,
        global = true,
        value_name = "KEY",
        value_parser = ApiKey::parse
    )]
    api_key: Option<ApiKey>,
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
    /// Delete a video: its uploads, and its presentation on holder.
    Rm {
        #[arg(value_parser = parse_video_id)]
        video_id: VideoId,
    },
    /// The project's usage counters, as JSON.
    Usage,
    /// The project's API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Single-use upload URLs that need no key, for browsers and apps.
    DirectUpload {
        #[command(subcommand)]
        command: DirectUploadCommand,
    },
    /// The project's events, oldest first; `--follow` prints new ones as they happen.
    Events(EventsArgs),
    /// The endpoints the project's events are posted to, signed.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
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
    let api_key = ApiKey::given(cli.api_key);
    let api = Api::new(
        &cli.server,
        Duration::from_secs(cli.timeout),
        api_key.as_ref(),
    )?;
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
        Command::Rm { video_id } => {
            api.delete_video(video_id).await?;
            println!("video {video_id} deleted");
        }
        Command::Usage => println!("{}", serde_json::to_string_pretty(&api.usage().await?)?),
        Command::Keys { command } => keys::run(&api, command).await?,
        Command::DirectUpload { command } => direct_uploads::run(&api, command).await?,
        Command::Events(args) => events::run(&api, args).await?,
        Command::Webhooks { command } => webhooks::run(&api, command).await?,
    }
    Ok(())
}

fn parse_video_id(text: &str) -> Result<VideoId, String> {
    text.parse()
        .map_err(|_| "a video id is a UUID (`vod ls` lists them)".to_owned())
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    const KEY: &str =
        "vod_0123456789abcdef0123456789abcdef_secretsecretsecretsecretsecretsecretsec";

    #[test]
    fn the_api_key_is_a_global_option_read_from_the_environment_but_never_shown() {
        for args in [
            ["vod", "--api-key", KEY, "usage"],
            ["vod", "usage", "--api-key", KEY],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            let key = ApiKey::given(cli.api_key).expect("a key");
            assert!(!format!("{key:?}").contains(KEY));
        }
        let command = Cli::command();
        let option = command
            .get_arguments()
            .find(|arg| arg.get_id() == "api_key")
            .expect("--api-key");
        assert_eq!(
            option.get_env().and_then(|name| name.to_str()),
            Some("VOD_API_KEY")
        );
        assert!(
            option.is_hide_env_values_set(),
            "--help must not print the key found in VOD_API_KEY"
        );
    }

    #[test]
    fn the_client_built_with_a_key_does_not_show_it() {
        let key = ApiKey::parse(KEY).unwrap_or_else(|never| match never {});
        let api =
            Api::new("http://127.0.0.1:8080/", Duration::from_secs(1), Some(&key)).expect("client");
        let shown = format!("{api:?}");
        assert!(shown.contains("http://127.0.0.1:8080"), "{shown}");
        assert!(!shown.contains("secretsecret"), "{shown}");
    }

    #[test]
    fn rm_and_keys_revoke_take_ids_not_paths() {
        assert!(Cli::try_parse_from(["vod", "rm", "../keys/1"]).is_err());
        let id = VideoId::new();
        let cli = Cli::try_parse_from(["vod", "rm", &id.to_string()]).expect("parses");
        assert!(matches!(cli.command, Command::Rm { video_id } if video_id == id));
        assert!(Cli::try_parse_from(["vod", "keys", "ls"]).is_ok());
        assert!(Cli::try_parse_from(["vod", "usage"]).is_ok());
    }
}
