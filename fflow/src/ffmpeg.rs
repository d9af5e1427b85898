//! Runs one ffmpeg process to its end: drains its logs (keeping the last error line), reads its
//! `-progress` reports, optionally feeds its standard input, and kills it when it stops making
//! progress or, fed while the upload arrives, when it waits too long for bytes or its output
//! gets ahead of them.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::pin::Pin;
use std::process::{ChildStderr, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use ffmpeg_sidecar::log_parser::FfmpegLogParser;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::bounds::SourceBounds;
use crate::probe::readable_line;
use crate::sandbox::{Sandbox, Source};

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    /// ffmpeg ran and failed; carries its last error line, readable.
    #[error("{0}")]
    Failed(String),
    /// The watchdog killed ffmpeg.
    #[error("the encode made no progress for {} seconds and was stopped", .0.as_secs())]
    Stalled(Duration),
    /// A limit of [`InputLimits`] stopped ffmpeg; says which.
    #[error("{0}")]
    Abandoned(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What a feeder and the watchdog share: the watchdog does not count time ffmpeg spends waiting
/// for bytes that have not been uploaded yet, and counts bytes it takes as activity; the
/// [`InputLimits`] count both.
#[derive(Debug, Default)]
pub struct InputActivity {
    waiting: Mutex<Waiting>,
    fed_bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct Waiting {
    /// Since when the feeder waits for the upload, while it does.
    since: Option<Instant>,
    /// Time spent waiting before that.
    before: Duration,
}

impl InputActivity {
    /// The feeder waits for the upload (true) or has bytes to give (false).
    pub fn set_starved(&self, starved: bool) {
        let mut waiting = lock(&self.waiting);
        match (starved, waiting.since) {
            (true, None) => waiting.since = Some(Instant::now()),
            (false, Some(since)) => {
                waiting.before += since.elapsed();
                waiting.since = None;
            }
            _ => {}
        }
    }

    /// Bytes handed to ffmpeg, counted as their write starts.
    pub fn add_fed(&self, bytes: u64) {
        self.fed_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    fn is_starved(&self) -> bool {
        lock(&self.waiting).since.is_some()
    }

    /// Time spent waiting for the upload in all.
    fn waited(&self) -> Duration {
        let waiting = lock(&self.waiting);
        waiting.before
            + waiting
                .since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn fed(&self) -> u64 {
        self.fed_bytes.load(Ordering::SeqCst)
    }
}

/// Bounds of an ffmpeg fed while the upload arrives, so that it cannot keep its encode slot
/// for as long as an upload lingers, nor turn a few bytes into hours of output.
#[derive(Clone, Copy, Debug)]
pub struct InputLimits {
    /// ffmpeg is stopped once it has waited this long in all for bytes not uploaded yet.
    pub max_wait: Duration,
    /// ffmpeg is stopped once its output is longer than the bytes fed to it can hold.
    pub bounds: SourceBounds,
}

/// How often the time spent waiting for the upload is looked at.
const WAIT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

pub type FeedFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Writes the source into ffmpeg's standard input and closes it at the end.
pub type Feeder =
    Box<dyn FnOnce(tokio::process::ChildStdin, Arc<InputActivity>) -> FeedFuture + Send>;

/// How a run is supervised.
pub struct Supervision {
    /// ffmpeg is killed after this long without progress, reading input or waiting for it.
    pub stall_timeout: Duration,
    /// Receives how far into the source ffmpeg has encoded, from its `-progress` reports.
    pub progress: Option<watch::Sender<Duration>>,
    /// Feeds standard input; without it, standard input is closed.
    pub feeder: Option<Feeder>,
    /// Bounds the feeding, when there is one.
    pub input_limits: Option<InputLimits>,
}

impl Supervision {
    pub fn new(stall_timeout: Duration) -> Self {
        Self {
            stall_timeout,
            progress: None,
            feeder: None,
            input_limits: None,
        }
    }
}

/// Runs ffmpeg in `dir`, in the sandbox, reading `source` and given `args` (its global and
/// output options), until it exits. Dropping the returned future kills ffmpeg: that is how a
/// deleted session or a shutdown stops an encode.
pub async fn run(
    sandbox: &Sandbox,
    dir: &Path,
    source: &Source<'_>,
    args: Vec<String>,
    supervision: Supervision,
) -> Result<(), FfmpegError> {
    let Supervision {
        stall_timeout,
        progress,
        feeder,
        input_limits,
    } = supervision;
    // The log parser reads the level of each line.
    let mut all_args = vec!["-loglevel".to_owned(), "level+info".to_owned()];
    all_args.extend(args);
    let mut command = FfmpegCommand::from(sandbox.ffmpeg(dir, source, &all_args));
    command
        .as_inner_mut()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("failed to start ffmpeg")?;
    let stderr = child.take_stderr().context("ffmpeg has no stderr")?;
    let stdout = child.take_stdout().context("ffmpeg has no stdout")?;
    // Without a feeder, dropping it closes ffmpeg's standard input at once.
    let stdin = child.take_stdin();
    let child = Arc::new(Mutex::new(child));
    let _kill_on_drop = KillOnDrop(child.clone());

    let activity = Arc::new(InputActivity::default());
    let feeding: FeedFuture = match (feeder, stdin) {
        (Some(feeder), Some(stdin)) => {
            let stdin = tokio::process::ChildStdin::from_std(stdin)
                .context("failed to attach ffmpeg's stdin")?;
            feeder(stdin, activity.clone())
        }
        _ => Box::pin(std::future::pending()),
    };
    let mut feeding = feeding;
    let mut errors = tokio::task::spawn_blocking(move || last_error_line(stderr));
    let (out_times, mut out_time_reports) = mpsc::unbounded_channel();
    let progress_reader = tokio::task::spawn_blocking(move || read_progress(stdout, &out_times));

    let mut deadline = Instant::now() + stall_timeout;
    let mut wait_checks = tokio::time::interval(WAIT_CHECK_INTERVAL);
    wait_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut encoded = Duration::ZERO;
    let mut fed = 0;
    let mut stopped: Option<FfmpegError> = None;
    let last_error = loop {
        tokio::select! {
            last_error = &mut errors => break last_error.context("ffmpeg log reader panicked")?,
            Some(out_time) = out_time_reports.recv() => {
                if out_time > encoded {
                    encoded = out_time;
                    deadline = Instant::now() + stall_timeout;
                    if let Some(progress) = &progress {
                        progress.send_replace(out_time);
                    }
                }
                let outran = input_limits
                    .is_some_and(|limits| limits.bounds.outruns(encoded, activity.fed()));
                if outran && stopped.is_none() {
                    tracing::warn!(
                        encoded_seconds = encoded.as_secs(),
                        fed_bytes = activity.fed(),
                        "ffmpeg's output outran the bytes it was fed, killing it"
                    );
                    stopped = Some(FfmpegError::Abandoned(
                        "its output outran the bytes received".to_owned(),
                    ));
                    let _ = lock(&child).kill();
                }
            }
            () = &mut feeding => feeding = Box::pin(std::future::pending()),
            _ = wait_checks.tick(), if input_limits.is_some() && stopped.is_none() => {
                let Some(limits) = input_limits else { continue };
                if activity.waited() > limits.max_wait {
                    tracing::info!(
                        seconds = limits.max_wait.as_secs(),
                        "ffmpeg waited too long for the upload, killing it"
                    );
                    stopped = Some(FfmpegError::Abandoned(format!(
                        "it waited more than {} seconds in all for the upload",
                        limits.max_wait.as_secs()
                    )));
                    let _ = lock(&child).kill();
                }
            }
            () = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                let now_fed = activity.fed();
                if activity.is_starved() || now_fed != fed {
                    fed = now_fed;
                    deadline = Instant::now() + stall_timeout;
                    continue;
                }
                tracing::warn!(seconds = stall_timeout.as_secs(), "ffmpeg made no progress, killing it");
                stopped = Some(FfmpegError::Stalled(stall_timeout));
                let _ = lock(&child).kill();
            }
        }
    };
    drop(feeding);
    let waited = child.clone();
    let status = tokio::task::spawn_blocking(move || lock(&waited).wait())
        .await
        .context("ffmpeg supervision panicked")?
        .context("failed to wait for ffmpeg")?;
    let _ = progress_reader.await;
    if let Some(stopped) = stopped {
        return Err(stopped);
    }
    if status.success() {
        return Ok(());
    }
    let reason = last_error
        .map(|line| readable_line(&line, dir, "source"))
        .filter(|line| !line.is_empty())
        .unwrap_or_else(|| format!("ffmpeg exited with {status}"));
    Err(FfmpegError::Failed(reason))
}

/// Reads every log line (ffmpeg blocks when its stderr is not read) until ffmpeg closes it, and
/// returns the last error line.
fn last_error_line(stderr: ChildStderr) -> Option<String> {
    let mut parser = FfmpegLogParser::new(stderr);
    let mut last_error = None;
    loop {
        match parser.parse_next_event() {
            Ok(FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line)) => {
                tracing::debug!(line = %line, "ffmpeg error line");
                last_error = Some(line);
            }
            Ok(FfmpegEvent::Log(LogLevel::Warning, line)) => {
                tracing::debug!(line = %line, "ffmpeg warning");
            }
            Ok(FfmpegEvent::LogEOF) => return last_error,
            Ok(_) => {}
            // A line the parser does not understand; the next one may be fine.
            Err(err) if !is_closed(&err) => {}
            Err(_) => return last_error,
        }
    }
}

fn is_closed(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>().is_some()
}

/// Reads ffmpeg's `-progress pipe:1` reports (`key=value` lines) and sends each `out_time_us`.
fn read_progress(stdout: ChildStdout, out_times: &mpsc::UnboundedSender<Duration>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        if let Some(out_time) = parse_out_time(&line) {
            if out_times.send(out_time).is_err() {
                return;
            }
        }
    }
}

/// `out_time_us=1234567` → 1.234567 s; `N/A` and negative values (before the first frame)
/// give nothing.
pub fn parse_out_time(line: &str) -> Option<Duration> {
    let micros = line
        .trim()
        .strip_prefix("out_time_us=")?
        .parse::<i64>()
        .ok()?;
    u64::try_from(micros).ok().map(Duration::from_micros)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct KillOnDrop(Arc<Mutex<FfmpegChild>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Held only while reaping, after ffmpeg closed its output: it is exiting. Killing an
        // already reaped child does nothing.
        if let Ok(mut child) = self.0.try_lock() {
            let _ = child.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_time_is_read_from_progress_lines() {
        assert_eq!(
            parse_out_time("out_time_us=6016000"),
            Some(Duration::from_micros(6_016_000))
        );
        assert_eq!(parse_out_time("out_time_us=N/A"), None);
        assert_eq!(parse_out_time("out_time_us=-9223372036854775807"), None);
        assert_eq!(parse_out_time("out_time_ms=6016000"), None);
        assert_eq!(parse_out_time("progress=end"), None);
    }
}
