//! One session's way from a complete source to a published outcome: probe, encode, fix the
//! playlists, store on holder, publish, clean the spool.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::Instrument;
use vod_contracts::fflow::EncodeTarget;
use vod_contracts::layout::{self, DASH_MANIFEST, HLS_MASTER};
use vod_contracts::outcome::{EncodeOutcome, EncodeResult, MediaFacts};

use crate::ffmpeg::{self, EncodePlan, FfmpegError};
use crate::ftp;
use crate::join;
use crate::playlists::{self, VariantFacts};
use crate::probe::{self, ProbeError};
use crate::sessions::{Phase, Session, OUTPUT_DIR, SOURCE_FILE};
use crate::startup::AppState;

/// Runs the encode of a finished session to its end (joining its parts first when it is a
/// concatenated upload), unless the session is deleted or the replica stops first; then ffmpeg
/// is killed, and after a stop the spool is kept so that the restarted replica goes on.
pub async fn run(state: Arc<AppState>, session: Arc<Session>) {
    let Some(target) = session.target else {
        tracing::error!(session_id = %session.session_id, "a partial upload cannot be encoded");
        return;
    };
    let span = tracing::info_span!(
        "encode",
        video_id = %target.video_id,
        flow_id = %target.flow_id,
        session_id = %session.session_id,
    );
    async move {
        let completed = tokio::select! {
            biased;
            () = session.cancel.cancelled() => false,
            () = join_encode_store_publish(&state, &session, target) => true,
        };
        if completed {
            session.mark_done().await;
        } else if !session.is_deleted() {
            tracing::info!("encode interrupted by shutdown, it starts again with the replica");
            return;
        }
        if let Err(err) = session.remove_spool().await {
            tracing::warn!(error = %err, "failed to remove the spool");
        }
    }
    .instrument(span)
    .await;
}

async fn join_encode_store_publish(state: &AppState, session: &Session, target: EncodeTarget) {
    if session.phase().await == Phase::Joining {
        if let Err(reason) = join::join_parts(state, session).await {
            tracing::warn!(reason = %reason, "parts not joined");
            let outcome = EncodeOutcome {
                video_id: target.video_id,
                flow_id: target.flow_id,
                session_id: session.session_id,
                result: EncodeResult::Failed { reason },
                source_sha256: None,
            };
            publish_until_confirmed(state, &outcome).await;
            return;
        }
    }
    let source_sha256 = match session.source_sha256().await {
        Ok(digest) => Some(digest),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "source not hashed");
            None
        }
    };
    let result = match produce(state, session, target).await {
        Ok(facts) => {
            tracing::info!(
                duration_seconds = facts.duration_seconds,
                width = facts.width,
                height = facts.height,
                "presentation stored"
            );
            EncodeResult::Ready(facts)
        }
        Err(reason) => {
            tracing::warn!(reason = %reason, "encode failed");
            EncodeResult::Failed { reason }
        }
    };
    let outcome = EncodeOutcome {
        video_id: target.video_id,
        flow_id: target.flow_id,
        session_id: session.session_id,
        result,
        source_sha256,
    };
    publish_until_confirmed(state, &outcome).await;
}

/// Publishing is retried until the broker confirms; a stop interrupts it, and the restarted
/// replica publishes again (an outcome applied twice changes nothing).
async fn publish_until_confirmed(state: &AppState, outcome: &EncodeOutcome) {
    let config = &state.config;
    let mut backoff = Duration::from_millis(config.publish_backoff_ms);
    let max_backoff = Duration::from_millis(config.publish_max_backoff_ms);
    let mut attempt = 1u32;
    loop {
        match state.publisher.publish(outcome).await {
            Ok(()) => {
                tracing::info!("outcome published");
                return;
            }
            Err(err) => {
                tracing::warn!(attempt, error = %format!("{err:#}"), "failed to publish the outcome");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(max_backoff);
                attempt += 1;
            }
        }
    }
}

/// The stored presentation's facts, or the reason a user reads.
async fn produce(
    state: &AppState,
    session: &Session,
    target: EncodeTarget,
) -> Result<MediaFacts, String> {
    let config = &state.config;
    let permit = state
        .encodes
        .acquire()
        .await
        .map_err(|_| "the encoder is shutting down".to_owned())?;

    tracing::info!("probing the source");
    let source = probe::probe(
        &config.ffprobe_path,
        &session.dir,
        SOURCE_FILE,
        config.probe_timeout(),
    )
    .await
    .map_err(|err| match err {
        ProbeError::Unexpected(err) => internal("probing", &err),
        readable => readable.to_string(),
    })?;

    let (width, height) = probe::rendition_size(source.video, config.max_height);
    let plan = EncodePlan {
        width,
        height,
        has_audio: source.has_audio,
    };
    let output_dir = session.output_dir();
    fresh_dir(&output_dir)
        .await
        .map_err(|err| internal("preparing the output", &err))?;

    tracing::info!(width, height, has_audio = plan.has_audio, "encoding");
    let args = ffmpeg::encode_args(config, &plan, SOURCE_FILE, OUTPUT_DIR);
    let encoded = tokio::time::timeout(
        config.max_encode_duration(),
        ffmpeg::run(&config.ffmpeg_path, &session.dir, args),
    )
    .await;
    match encoded {
        Err(_) => {
            return Err(format!(
                "the encode took longer than {} seconds",
                config.max_encode_seconds
            ))
        }
        Ok(Err(FfmpegError::Failed(line))) => {
            return Err(format!("ffmpeg could not encode the file: {line}"))
        }
        Ok(Err(FfmpegError::Unexpected(err))) => return Err(internal("encoding", &err)),
        Ok(Ok(())) => {}
    }
    drop(permit);

    finalize_playlists(&output_dir, &plan, source.duration_seconds)
        .await
        .map_err(|err| internal("finishing the playlists", &err))?;

    let remote_dir = layout::presentation_dir(target.video_id, target.flow_id);
    tracing::info!(remote_dir = %remote_dir, "storing on holder");
    ftp::store_presentation(&config.holder, &output_dir, &remote_dir)
        .await
        .map_err(|err| format!("could not store the presentation on holder: {err:#}"))?;

    Ok(MediaFacts {
        duration_seconds: source.duration_seconds,
        width,
        height,
        video_codec: "h264".to_owned(),
        audio_codec: source.has_audio.then(|| "aac".to_owned()),
        hls_path: format!("{remote_dir}/{HLS_MASTER}"),
        dash_path: format!("{remote_dir}/{DASH_MANIFEST}"),
    })
}

/// Logs the cause and returns what a user is told.
fn internal(doing: &str, err: &anyhow::Error) -> String {
    tracing::error!(error = %format!("{err:#}"), "failed while {doing}");
    format!("the encoder failed while {doing}")
}

async fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).context("failed to clear the output directory");
        }
        _ => {}
    }
    tokio::fs::create_dir_all(dir)
        .await
        .context("failed to create the output directory")
}

/// Makes ffmpeg's HLS playlists proper VoD playlists, see [`playlists`].
async fn finalize_playlists(
    dir: &Path,
    plan: &EncodePlan,
    duration_seconds: f64,
) -> anyhow::Result<()> {
    let mpd = tokio::fs::read_to_string(dir.join(DASH_MANIFEST))
        .await
        .context("ffmpeg wrote no DASH manifest")?;
    let master_path = dir.join(HLS_MASTER);
    let master = tokio::fs::read_to_string(&master_path)
        .await
        .context("ffmpeg wrote no HLS master playlist")?;

    let mut media_bytes = 0u64;
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".m4s") {
            media_bytes += entry.metadata().await?.len();
        } else if name.ends_with(".m3u8") && name != HLS_MASTER {
            let text = tokio::fs::read_to_string(&path).await?;
            tokio::fs::write(&path, playlists::finalize_media_playlist(&text))
                .await
                .with_context(|| format!("failed to rewrite {name}"))?;
        }
    }

    let bandwidth = match playlists::mpd_bandwidth(&mpd) {
        0 if duration_seconds > 0.0 => (media_bytes as f64 * 8.0 / duration_seconds) as u64,
        from_mpd => from_mpd,
    };
    let facts = VariantFacts {
        bandwidth,
        width: plan.width,
        height: plan.height,
        codecs: playlists::mpd_codecs(&mpd),
    };
    tokio::fs::write(
        &master_path,
        playlists::finalize_master_playlist(&master, &facts),
    )
    .await
    .context("failed to rewrite the master playlist")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;
    use crate::config::Config;

    fn make_clip(path: &Path, seconds: u32, with_audio: bool) {
        let mut command = Command::new("ffmpeg");
        command.args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
        ]);
        if with_audio {
            command.args(["-f", "lavfi", "-i", "sine=frequency=440"]);
        }
        command.args([
            "-t",
            &seconds.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "mp4",
        ]);
        let status = command.arg(path).status().unwrap();
        assert!(status.success());
    }

    fn ffprobe_json(dir: &Path, file: &str) -> serde_json::Value {
        let output = Command::new("ffprobe")
            .current_dir(dir)
            .args([
                "-v",
                "error",
                "-of",
                "json",
                "-show_format",
                "-show_streams",
                file,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    async fn encode(dir: &Path, config: &Config) -> EncodePlan {
        let source = probe::probe("ffprobe", dir, SOURCE_FILE, config.probe_timeout())
            .await
            .unwrap();
        let (width, height) = probe::rendition_size(source.video, config.max_height);
        let plan = EncodePlan {
            width,
            height,
            has_audio: source.has_audio,
        };
        fresh_dir(&dir.join(OUTPUT_DIR)).await.unwrap();
        let args = ffmpeg::encode_args(config, &plan, SOURCE_FILE, OUTPUT_DIR);
        ffmpeg::run("ffmpeg", dir, args).await.unwrap();
        finalize_playlists(&dir.join(OUTPUT_DIR), &plan, source.duration_seconds)
            .await
            .unwrap();
        plan
    }

    fn test_config() -> Config {
        Config::for_tests(PathBuf::from("/unused"), "r1", "127.0.0.1:1", "pw", "test")
    }

    #[tokio::test]
    async fn encode_writes_cmaf_with_vod_playlists_that_play() {
        let dir = tempfile::tempdir().unwrap();
        make_clip(&dir.path().join(SOURCE_FILE), 9, true);
        let plan = encode(dir.path(), &test_config()).await;
        assert_eq!((plan.width, plan.height, plan.has_audio), (320, 240, true));

        let out = dir.path().join(OUTPUT_DIR);
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "chunk-stream0-00001.m4s",
                "chunk-stream0-00002.m4s",
                "chunk-stream0-00003.m4s",
                "chunk-stream1-00001.m4s",
                "chunk-stream1-00002.m4s",
                "chunk-stream1-00003.m4s",
                "init-stream0.m4s",
                "init-stream1.m4s",
                "manifest.mpd",
                "master.m3u8",
                "media_0.m3u8",
                "media_1.m3u8",
            ]
        );
        for media in ["media_0.m3u8", "media_1.m3u8"] {
            let text = std::fs::read_to_string(out.join(media)).unwrap();
            assert!(!text.contains("PROGRAM-DATE-TIME"), "{text}");
            assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
            assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
            assert!(text.contains("#EXT-X-TARGETDURATION:4\n"), "{text}");
        }
        let master = std::fs::read_to_string(out.join(HLS_MASTER)).unwrap();
        let stream_inf = master
            .lines()
            .find(|line| line.starts_with("#EXT-X-STREAM-INF:"))
            .unwrap();
        for attribute in [
            "BANDWIDTH=",
            "RESOLUTION=320x240",
            "CODECS=\"avc1.",
            "mp4a.40.2",
        ] {
            assert!(stream_inf.contains(attribute), "{stream_inf}");
        }

        let played = ffprobe_json(&out, HLS_MASTER);
        let duration: f64 = played["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((duration - 9.0).abs() < 0.3, "duration {duration}");
        let kinds: Vec<&str> = played["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|stream| stream["codec_type"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"video") && kinds.contains(&"audio"),
            "{kinds:?}"
        );
    }

    #[tokio::test]
    async fn encode_without_audio_has_video_only() {
        let dir = tempfile::tempdir().unwrap();
        make_clip(&dir.path().join(SOURCE_FILE), 2, false);
        let plan = encode(dir.path(), &test_config()).await;
        assert!(!plan.has_audio);
        let out = dir.path().join(OUTPUT_DIR);
        assert!(!out.join("media_1.m3u8").exists());
        let master = std::fs::read_to_string(out.join(HLS_MASTER)).unwrap();
        assert!(!master.contains("TYPE=AUDIO"), "{master}");
        let played = ffprobe_json(&out, HLS_MASTER);
        assert_eq!(played["streams"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn ffmpeg_failure_gives_its_error_line_without_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SOURCE_FILE), b"not a video at all").unwrap();
        let plan = EncodePlan {
            width: 320,
            height: 240,
            has_audio: false,
        };
        fresh_dir(&dir.path().join(OUTPUT_DIR)).await.unwrap();
        let args = ffmpeg::encode_args(&test_config(), &plan, SOURCE_FILE, OUTPUT_DIR);
        let Err(FfmpegError::Failed(line)) = ffmpeg::run("ffmpeg", dir.path(), args).await else {
            panic!("ffmpeg accepted garbage");
        };
        assert_eq!(line, "Invalid data found when processing input");
    }

    #[tokio::test]
    async fn probe_of_garbage_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SOURCE_FILE), b"not a video at all").unwrap();
        let err = probe::probe("ffprobe", dir.path(), SOURCE_FILE, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the file is not a video ffmpeg can read: Invalid data found when processing input"
        );
    }

    #[tokio::test]
    async fn dropping_a_run_kills_ffmpeg() {
        let dir = tempfile::tempdir().unwrap();
        let marker = format!("killme-{}.mkv", uuid::Uuid::new_v4());
        let args: Vec<String> = [
            "-y",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "600",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            &marker,
        ]
        .map(str::to_owned)
        .into();
        let is_running = |marker: &str| {
            std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
                std::fs::read(entry.path().join("cmdline"))
                    .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
                    .unwrap_or(false)
            })
        };
        let mut run = Box::pin(ffmpeg::run("ffmpeg", dir.path(), args));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            tokio::select! {
                result = &mut run => panic!("ffmpeg ended by itself: {result:?}"),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if is_running(&marker) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ffmpeg never started"
            );
        }
        drop(run);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while is_running(&marker) {
            assert!(tokio::time::Instant::now() < deadline, "ffmpeg still runs");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
