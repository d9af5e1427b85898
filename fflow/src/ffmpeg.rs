//! The one ffmpeg run that turns a source into CMAF segments with an MPD and HLS playlists.

use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use ffmpeg_sidecar::iter::FfmpegIterator;
use vod_contracts::layout::{DASH_MANIFEST, HLS_MASTER};

use crate::config::Config;
use crate::probe::readable_line;

/// What the encode makes of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodePlan {
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    /// ffmpeg ran and failed; carries its last error line, readable.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// ffmpeg's arguments, relative to the session directory: it reads `source` and writes into
/// `output_dir`.
pub fn encode_args(
    config: &Config,
    plan: &EncodePlan,
    source: &str,
    output_dir: &str,
) -> Vec<String> {
    let keyframes = format!("expr:gte(t,n_forced*{})", config.keyframe_interval_seconds);
    let adaptation_sets = if plan.has_audio {
        "id=0,streams=v id=1,streams=a"
    } else {
        "id=0,streams=v"
    };
    let mut args: Vec<String> = [
        "-nostdin",
        "-y",
        "-i",
        source,
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-sn",
        "-dn",
        "-map_metadata",
        "-1",
    ]
    .map(str::to_owned)
    .into();
    args.extend(
        [
            "-vf",
            &format!("scale={}:{}", plan.width, plan.height),
            "-c:v",
            "libx264",
            "-preset",
            &config.x264_preset,
            "-crf",
            &config.crf.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-force_key_frames",
            &keyframes,
            "-sc_threshold",
            "0",
        ]
        .map(str::to_owned),
    );
    if plan.has_audio {
        args.extend(["-c:a", "aac", "-ac", "2", "-b:a", &config.audio_bitrate].map(str::to_owned));
    }
    args.extend(
        [
            "-f",
            "dash",
            "-seg_duration",
            &config.segment_seconds.to_string(),
            "-use_template",
            "1",
            "-use_timeline",
            "1",
            "-hls_playlist",
            "1",
            "-hls_master_name",
            HLS_MASTER,
            "-adaptation_sets",
            adaptation_sets,
            &format!("{output_dir}/{DASH_MANIFEST}"),
        ]
        .map(str::to_owned),
    );
    args
}

/// Runs ffmpeg in `dir` until it exits, draining all its output. Dropping the returned future
/// kills ffmpeg: that is how a deleted session or a shutdown stops an encode.
pub async fn run(ffmpeg_path: &str, dir: &Path, args: Vec<String>) -> Result<(), FfmpegError> {
    let mut command = FfmpegCommand::new_with_path(ffmpeg_path);
    command.as_inner_mut().current_dir(dir);
    command.args(&args);
    let mut child = command
        .spawn()
        .with_context(|| format!("failed to start {ffmpeg_path}"))?;
    let events = child.iter().context("failed to read ffmpeg's output")?;
    let child = Arc::new(Mutex::new(child));
    let _kill_on_drop = KillOnDrop(child.clone());

    let (status, last_error) = tokio::task::spawn_blocking(move || drain(events, &child))
        .await
        .context("ffmpeg supervision panicked")?
        .context("failed to wait for ffmpeg")?;
    if status.success() {
        return Ok(());
    }
    let reason = last_error
        .map(|line| readable_line(&line, dir, "source"))
        .filter(|line| !line.is_empty())
        .unwrap_or_else(|| format!("ffmpeg exited with {status}"));
    Err(FfmpegError::Failed(reason))
}

/// Reads every event (ffmpeg blocks when its stderr is not read), remembers the last error
/// line, then reaps the process.
fn drain(
    events: FfmpegIterator,
    child: &Mutex<FfmpegChild>,
) -> std::io::Result<(ExitStatus, Option<String>)> {
    let mut last_error = None;
    for event in events {
        match event {
            FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line) => {
                tracing::debug!(line = %line, "ffmpeg error line");
                last_error = Some(line);
            }
            FfmpegEvent::Log(LogLevel::Warning, line) => {
                tracing::debug!(line = %line, "ffmpeg warning");
            }
            FfmpegEvent::LogEOF => break,
            _ => {}
        }
    }
    let status = lock(child).wait()?;
    Ok((status, last_error))
}

fn lock(child: &Mutex<FfmpegChild>) -> std::sync::MutexGuard<'_, FfmpegChild> {
    child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct KillOnDrop(Arc<Mutex<FfmpegChild>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Held only by `drain` while reaping, after ffmpeg closed its output: it is exiting.
        // Killing an already reaped child does nothing.
        if let Ok(mut child) = self.0.try_lock() {
            let _ = child.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn config() -> Config {
        Config::for_tests(
            PathBuf::from("/tmp/spool"),
            "r1",
            "127.0.0.1:2121",
            "pw",
            "test",
        )
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|arg| arg == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    #[test]
    fn args_make_cmaf_dash_and_hls_from_one_encode() {
        let plan = EncodePlan {
            width: 640,
            height: 360,
            has_audio: true,
        };
        let args = encode_args(&config(), &plan, "source", "out");
        assert_eq!(value_of(&args, "-i"), Some("source"));
        assert_eq!(value_of(&args, "-f"), Some("dash"));
        assert_eq!(value_of(&args, "-hls_playlist"), Some("1"));
        assert_eq!(value_of(&args, "-hls_master_name"), Some("master.m3u8"));
        assert_eq!(value_of(&args, "-seg_duration"), Some("4"));
        assert_eq!(value_of(&args, "-use_template"), Some("1"));
        assert_eq!(value_of(&args, "-use_timeline"), Some("1"));
        assert_eq!(value_of(&args, "-c:v"), Some("libx264"));
        assert_eq!(value_of(&args, "-preset"), Some("veryfast"));
        assert_eq!(value_of(&args, "-crf"), Some("23"));
        assert_eq!(value_of(&args, "-pix_fmt"), Some("yuv420p"));
        assert_eq!(
            value_of(&args, "-force_key_frames"),
            Some("expr:gte(t,n_forced*2)")
        );
        assert_eq!(value_of(&args, "-sc_threshold"), Some("0"));
        assert_eq!(value_of(&args, "-vf"), Some("scale=640:360"));
        assert_eq!(value_of(&args, "-c:a"), Some("aac"));
        assert_eq!(value_of(&args, "-ac"), Some("2"));
        assert_eq!(value_of(&args, "-b:a"), Some("128k"));
        assert_eq!(
            value_of(&args, "-adaptation_sets"),
            Some("id=0,streams=v id=1,streams=a")
        );
        let maps: Vec<_> = args
            .windows(2)
            .filter(|pair| pair[0] == "-map")
            .map(|pair| pair[1].as_str())
            .collect();
        assert_eq!(maps, ["0:v:0", "0:a:0?"]);
        assert_eq!(args.last().map(String::as_str), Some("out/manifest.mpd"));
        assert!(args.iter().any(|arg| arg == "-y"));
    }

    #[test]
    fn args_without_audio_have_no_audio_set() {
        let plan = EncodePlan {
            width: 320,
            height: 240,
            has_audio: false,
        };
        let args = encode_args(&config(), &plan, "source", "out");
        assert_eq!(value_of(&args, "-adaptation_sets"), Some("id=0,streams=v"));
        assert_eq!(value_of(&args, "-c:a"), None);
    }

    #[test]
    fn keyframe_interval_comes_from_config() {
        let config = Config {
            segment_seconds: 6,
            keyframe_interval_seconds: 3,
            ..config()
        };
        let plan = EncodePlan {
            width: 320,
            height: 240,
            has_audio: false,
        };
        let args = encode_args(&config, &plan, "source", "out");
        assert_eq!(
            value_of(&args, "-force_key_frames"),
            Some("expr:gte(t,n_forced*3)")
        );
        assert_eq!(value_of(&args, "-seg_duration"), Some("6"));
    }
}
