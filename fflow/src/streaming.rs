//! Encoding while the upload arrives.
//!
//! After each chunk, a session whose first bytes say it can be read front to back (see
//! [`sniff`]) is probed as far as it has arrived; then ffmpeg starts with the spool fed into its
//! standard input, chunk after chunk as they land, and `READY` follows the last byte by the
//! encode of the last segments. A source that cannot be read so (an MP4 with its index at the
//! end), a replica without a free encode slot, a probed length the upload's size cannot hold, a
//! rewrite of bytes ffmpeg already read, or an ffmpeg that fails on the partial stream all leave
//! the session to the encode at the last byte. So does a streaming encode that has waited
//! `streaming_max_wait_seconds` in all for the upload, or whose output got ahead of what the
//! bytes it was fed can hold: ffmpeg is killed and its encode slot given back.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vod_contracts::fflow::EncodeTarget;
use vod_contracts::outcome::{EncodeStart, MediaFacts};
use vod_contracts::EncodePath;

use crate::bounds::SourceBounds;
use crate::context::EncodeContext;
use crate::encode::{self, encode_with_deadline, fresh_dir, probe_source};
use crate::ffmpeg::{InputActivity, InputLimits, Supervision};
use crate::plan::{self, EncodePlan};
use crate::probe::{self, SourceFacts};
use crate::progress;
use crate::sandbox::{Input, Source};
use crate::session::{FeedRead, Session, OUTPUT_DIR, SOURCE_FILE};
use crate::sniff::{self, Container, Sniff};

/// Bytes handed to ffmpeg per write.
const FEED_PIECE: usize = 1024 * 1024;

/// Called after every chunk: starts a streaming encode when the session can have one now, and
/// then runs it to its end.
pub async fn consider(state: Arc<EncodeContext>, session: Arc<Session>) {
    let state = &state;
    let Some(target) = session.target else {
        return;
    };
    let Some(received) = session.claim_streaming_decision().await else {
        return;
    };
    let span = tracing::info_span!(
        "streaming_encode",
        video_id = %target.video_id,
        flow_id = %target.flow_id,
        session_id = %session.session_id,
    );
    async move {
        match decide(state, &session, received).await {
            Decision::Wait => session.streaming_undecided().await,
            Decision::AtLastByte(why) => {
                tracing::info!(why, "encoding once the upload is complete");
                session.streaming_refused().await;
            }
            Decision::Start {
                source,
                max_seconds,
                permit,
            } => {
                let cancel = session.cancel.child_token();
                if let Some(received) = session.start_streaming(cancel.clone()).await {
                    let start = Start {
                        source,
                        max_seconds,
                        received,
                    };
                    run(state, &session, target, start, permit, cancel).await;
                }
            }
        }
    }
    .instrument(span)
    .await;
}

enum Decision<'a> {
    /// Ask again with more bytes.
    Wait,
    AtLastByte(&'static str),
    Start {
        source: SourceFacts,
        /// Seconds of media ffmpeg reads at most.
        max_seconds: f64,
        permit: SemaphorePermit<'a>,
    },
}

/// What a streaming encode starts from.
struct Start {
    source: SourceFacts,
    max_seconds: f64,
    /// Bytes received as it starts.
    received: u64,
}

async fn decide<'a>(state: &'a EncodeContext, session: &Session, received: u64) -> Decision<'a> {
    let config = &state.config;
    let Some(total) = session.total_bytes().await else {
        return Decision::AtLastByte("the upload's length is not known yet");
    };
    let path = session.source_path();
    let sniffed = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(path)?;
        sniff::sniff(received, total, |offset, len| {
            let mut bytes = vec![0u8; len];
            let read = file.read_at(&mut bytes, offset)?;
            bytes.truncate(read);
            Ok(bytes)
        })
    })
    .await;
    let (container, probe_from) = match sniffed {
        Ok(Ok(Sniff::Streamable {
            container,
            probe_from,
        })) => (container, probe_from),
        Ok(Ok(Sniff::NeedMore)) => return Decision::Wait,
        Ok(Ok(Sniff::AtLastByte(why))) => {
            return Decision::AtLastByte(match why {
                sniff::NotStreamable::MoovAfterMdat => "the MP4 index comes after its media",
                sniff::NotStreamable::OtherFormat => "the format is not read as it arrives",
            })
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "could not read the first bytes");
            return Decision::AtLastByte("the first bytes could not be read");
        }
        Err(_) => return Decision::AtLastByte("the first bytes could not be read"),
    };
    if received >= total {
        return Decision::AtLastByte("the upload is already complete");
    }
    let wanted = probe_from.max(config.streaming_probe_bytes).min(total);
    if received < wanted {
        return Decision::Wait;
    }
    let Ok(permit) = state.encodes.try_acquire() else {
        tracing::debug!("no free encode slot, trying again with the next chunk");
        return Decision::Wait;
    };
    match probe_source(state, &session.dir).await {
        Ok(mut source) => {
            // The size of a partial MPEG-TS says nothing of its length: scale it.
            let estimated = container == Container::MpegTs;
            if estimated && received > 0 {
                source.duration_seconds *= total as f64 / received as f64;
            }
            let bounds = SourceBounds::new(config);
            if let Err(implausible) = bounds.check(source.duration_seconds, total) {
                tracing::info!(reason = %implausible, "the source's length is not believable");
                return Decision::AtLastByte("its length is not believable for its size");
            }
            let probed = (!estimated).then_some(source.duration_seconds);
            Decision::Start {
                max_seconds: bounds.encode_seconds(probed, total),
                source,
                permit,
            }
        }
        Err(reason) if received >= config.streaming_probe_max_bytes => {
            tracing::info!(reason = %reason, "the partial upload cannot be probed");
            Decision::AtLastByte("the partial upload cannot be probed")
        }
        Err(reason) => {
            tracing::debug!(reason = %reason, "probing needs more of the upload");
            Decision::Wait
        }
    }
}

/// How a streaming encode ended.
enum Ended {
    Ready(Box<MediaFacts>),
    /// ffmpeg could not encode the stream; the complete source may still be encoded.
    Unusable(String),
    /// The flow fails with this reason, once the upload is complete.
    Failed(String),
}

async fn run(
    state: &Arc<EncodeContext>,
    session: &Arc<Session>,
    target: EncodeTarget,
    start: Start,
    permit: SemaphorePermit<'_>,
    cancel: CancellationToken,
) {
    let started = EncodeStart {
        path: EncodePath::Streaming,
        received_bytes: start.received,
    };
    tracing::info!(
        received_bytes = start.received,
        "encoding while the upload arrives"
    );
    state.metrics.encode_started(started.path);
    let ended = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        ended = encode_stream(state, session, target, start, permit, started) => Some(ended),
    };
    // The uploader applies outcomes to flows whose upload is complete: a failure waits for it.
    let ended = match ended {
        Some(Ended::Failed(reason)) => tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            () = session.finished() => Some(Ended::Failed(reason)),
        },
        other => other,
    };
    let result = match ended {
        None => {
            if session.is_deleted() {
                let _ = session.remove_spool().await;
            } else if state.stopping.is_cancelled() {
                tracing::info!("streaming encode interrupted by shutdown");
            }
            // Otherwise it was abandoned, and `finish` encodes the complete source.
            return;
        }
        Some(Ended::Unusable(reason)) => {
            tracing::info!(reason = %reason, "streaming encode failed, encoding once complete");
            if session.streaming_failed().await {
                encode::run(Arc::clone(state), Arc::clone(session)).await;
            }
            return;
        }
        Some(Ended::Ready(facts)) => Ok(*facts),
        Some(Ended::Failed(reason)) => Err(reason),
    };
    let published = tokio::select! {
        biased;
        () = session.cancel.cancelled() => false,
        () = encode::publish_result(state, session, target, result, Some(started)) => true,
    };
    if published {
        session.mark_done().await;
    } else if !session.is_deleted() {
        return;
    }
    if let Err(err) = session.remove_spool().await {
        tracing::warn!(error = %err, "failed to remove the spool");
    }
}

async fn encode_stream(
    state: &EncodeContext,
    session: &Arc<Session>,
    target: EncodeTarget,
    start: Start,
    permit: SemaphorePermit<'_>,
    started: EncodeStart,
) -> Ended {
    let config = &state.config;
    let Start {
        mut source,
        max_seconds,
        ..
    } = start;
    let plan = EncodePlan::for_source(config, &source);
    if let Err(err) = fresh_dir(&session.output_dir()).await {
        return Ended::Unusable(encode::internal("preparing the output", &err));
    }
    let args = plan::encode_args(config, &plan, OUTPUT_DIR);
    let format = source.format.clone();
    let input = Source {
        input: Input::Stdin,
        format: &format,
        max_seconds,
    };
    let fed_everything = Arc::new(AtomicBool::new(false));
    let feeder_session = Arc::clone(session);
    let feeder_done = Arc::clone(&fed_everything);
    let (encoded, encoded_watch) = watch::channel(Duration::ZERO);
    let encoded_time = encoded_watch.clone();
    let supervision = Supervision {
        progress: Some(encoded),
        feeder: Some(Box::new(move |stdin, activity| {
            Box::pin(feed(feeder_session, stdin, activity, feeder_done))
        })),
        input_limits: Some(InputLimits {
            max_wait: config.streaming_max_wait(),
            bounds: SourceBounds::new(config),
        }),
        ..Supervision::new(config.stall_timeout())
    };
    let running = state.metrics.ffmpeg_running();
    let (encoded, ()) = tokio::join!(
        encode_with_deadline(state, &session.dir, &input, args, supervision),
        progress::report(
            state.sink.as_ref(),
            Duration::from_millis(config.progress_interval_ms),
            session,
            target,
            started,
            source.duration_seconds,
            encoded_watch
        ),
    );
    drop(running);
    drop(permit);
    match encoded {
        Ok(()) if fed_everything.load(Ordering::SeqCst) => {}
        Ok(()) => return Ended::Unusable("ffmpeg stopped before the end of the upload".to_owned()),
        Err(failure) if failure.stalled => return Ended::Failed(failure.reason),
        Err(failure) => return Ended::Unusable(failure.reason),
    }

    // The whole source is in now: its exact length replaces the estimate (how its pictures are
    // scanned was settled before the encode).
    session.finished().await;
    let timeout = state.config.probe_timeout();
    if let Ok(complete) = probe::probe(&state.sandbox, &session.dir, SOURCE_FILE, timeout).await {
        if complete.duration_seconds > 0.0 {
            source.duration_seconds = complete.duration_seconds;
        }
    }
    source.duration_seconds =
        encode::encoded_duration(source.duration_seconds, *encoded_time.borrow());
    match encode::finalize_and_store(state, session, target, &plan, &source).await {
        Ok(facts) => Ended::Ready(Box::new(facts)),
        Err(reason) => Ended::Failed(reason),
    }
}

/// Writes the spool into ffmpeg's standard input as the upload arrives, and closes it after
/// the last byte.
async fn feed(
    session: Arc<Session>,
    mut stdin: tokio::process::ChildStdin,
    activity: Arc<InputActivity>,
    fed_everything: Arc<AtomicBool>,
) {
    let mut received = session.received_changes();
    let mut fed = 0u64;
    loop {
        received.borrow_and_update();
        match session.read_for_feed(fed, FEED_PIECE).await {
            Ok(FeedRead::Bytes(bytes)) => {
                activity.set_starved(false);
                // Counted as they are handed over: ffmpeg encodes from the first of them while
                // the rest of the piece is still being written.
                activity.add_fed(bytes.len() as u64);
                if stdin.write_all(&bytes).await.is_err() {
                    // ffmpeg closed its input: it ended.
                    return;
                }
                fed += bytes.len() as u64;
            }
            Ok(FeedRead::End) => {
                activity.set_starved(false);
                fed_everything.store(true, Ordering::SeqCst);
                let _ = stdin.shutdown().await;
                return;
            }
            Ok(FeedRead::Wait) => {
                activity.set_starved(true);
                if received.changed().await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not read the spool for ffmpeg");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// What the first 64 KiB of a real file say, as if more were still to come.
    fn sniff_head(path: &Path) -> Sniff {
        let file = std::fs::File::open(path).unwrap();
        let received = file.metadata().unwrap().len().min(64 * 1024);
        sniff::sniff(received, u64::MAX, |offset, want| {
            let want = want.min(received.saturating_sub(offset) as usize);
            let mut bytes = vec![0u8; want];
            let read = file.read_at(&mut bytes, offset)?;
            bytes.truncate(read);
            Ok(bytes)
        })
        .unwrap()
    }

    fn ffmpeg(dir: &Path, output_args: &[&str], name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let status = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "4"])
            .args(["-pix_fmt", "yuv420p"])
            .args(output_args)
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    }

    #[test]
    fn real_files_are_sniffed_by_their_layout() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let camera = ffmpeg(dir, &["-c:v", "libx264"], "camera.mp4");
        assert_eq!(
            sniff_head(&camera),
            Sniff::AtLastByte(sniff::NotStreamable::MoovAfterMdat)
        );
        let faststart = ffmpeg(
            dir,
            &["-c:v", "libx264", "-movflags", "+faststart"],
            "fast.mp4",
        );
        assert!(matches!(
            sniff_head(&faststart),
            Sniff::Streamable {
                container: Container::Mp4,
                probe_from
            } if probe_from > 0
        ));
        let fragmented = ffmpeg(
            dir,
            &["-c:v", "libx264", "-movflags", "+frag_keyframe+empty_moov"],
            "frag.mp4",
        );
        assert!(matches!(
            sniff_head(&fragmented),
            Sniff::Streamable {
                container: Container::Mp4,
                ..
            }
        ));
        for (name, container) in [
            ("clip.ts", Container::MpegTs),
            ("clip.mkv", Container::Matroska),
            ("clip.webm", Container::Matroska),
        ] {
            let codec: &[&str] = if name.ends_with("webm") {
                &[
                    "-c:v",
                    "libvpx-vp9",
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-c:a",
                    "libopus",
                ]
            } else {
                &["-c:v", "libx264"]
            };
            let path = ffmpeg(dir, codec, name);
            assert_eq!(
                sniff_head(&path),
                Sniff::Streamable {
                    container,
                    probe_from: 0
                },
                "{name}"
            );
        }
        let avi = ffmpeg(dir, &["-c:v", "mpeg4"], "clip.avi");
        assert_eq!(
            sniff_head(&avi),
            Sniff::AtLastByte(sniff::NotStreamable::OtherFormat)
        );
    }
}
