//! One session's way from a complete source to a published outcome: probe, encode, fix the
//! playlists, store on holder, publish, clean the spool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::Instrument;
use vod_contracts::fflow::{EncodeTarget, Mp4Support};
use vod_contracts::layout::{
    self, DASH_MANIFEST, HLS_MASTER, POSTER, STORYBOARD_IMAGE, STORYBOARD_VTT,
};
use vod_contracts::outcome::{
    AudioRenditionFacts, AudioTrackFacts, DownloadFacts, EncodeOutcome, EncodeResult, EncodeStart,
    MediaFacts, RenditionFacts, StoryboardFacts,
};
use vod_contracts::EncodePath;
use vod_infra::backoff::Backoff;

use crate::bounds::SourceBounds;
use crate::context::EncodeContext;
use crate::downloads;
use crate::ffmpeg::{self, FfmpegError, Supervision};
use crate::ftp;
use crate::interlace;
use crate::join;
use crate::ladder::DisplaySize;
use crate::manifest::{self, AudioSetLabel};
use crate::plan::{self, AudioRendition, EncodePlan};
use crate::playlists::{self, AudioMedia, Variant};
use crate::probe::{self, ProbeError, Scan, SourceFacts};
use crate::progress;
use crate::sandbox::{Demuxer, Input, Source};
use crate::session::{Phase, Session, OUTPUT_DIR, SOURCE_FILE};

/// Runs the encode of a finished session to its end (joining its parts first when it is a
/// concatenated upload), unless the session is deleted or the replica stops first; then ffmpeg
/// is killed, and after a stop the spool is kept so that the restarted replica goes on.
pub async fn run(state: Arc<EncodeContext>, session: Arc<Session>) {
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

async fn join_encode_store_publish(state: &EncodeContext, session: &Session, target: EncodeTarget) {
    if session.phase().await == Phase::Joining {
        if let Err(reason) = join::join_parts(&state.parts, session).await {
            tracing::warn!(reason = %reason, "parts not joined");
            publish_result(state, session, target, Err(reason), None).await;
            return;
        }
    }
    let mut started = None;
    let result = produce(state, session, target, &mut started).await;
    publish_result(state, session, target, result, started).await;
}

/// Publishes how the encode of `session` ended, with the digest of the source it read.
pub(crate) async fn publish_result(
    state: &EncodeContext,
    session: &Session,
    target: EncodeTarget,
    result: Result<MediaFacts, String>,
    started: Option<EncodeStart>,
) {
    state.metrics.encode_ended(&result);
    let source_sha256 = match session.source_sha256().await {
        Ok(digest) => Some(digest),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "source not hashed");
            None
        }
    };
    let result = match result {
        Ok(facts) => {
            tracing::info!(
                duration_seconds = facts.duration_seconds,
                renditions = facts.renditions.len(),
                "presentation stored"
            );
            EncodeResult::Ready(Box::new(facts))
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
        started,
        source_sha256,
        replica_address: Some(state.address.clone()),
    };
    publish_until_confirmed(state, &outcome).await;
}

/// Publishing is retried until the broker confirms; a stop interrupts it, and the restarted
/// replica publishes again (an outcome applied twice changes nothing).
async fn publish_until_confirmed(state: &EncodeContext, outcome: &EncodeOutcome) {
    let config = &state.config;
    let mut backoff = Backoff::doubling(
        Duration::from_millis(config.publish_backoff_ms),
        Duration::from_millis(config.publish_max_backoff_ms),
    );
    let mut attempt = 1u32;
    loop {
        match state.sink.publish_outcome(outcome).await {
            Ok(()) => {
                tracing::info!("outcome published");
                return;
            }
            Err(err) => {
                tracing::warn!(attempt, error = %format!("{err:#}"), "failed to publish the outcome");
                tokio::time::sleep(backoff.next_delay()).await;
                attempt += 1;
            }
        }
    }
}

/// The stored presentation's facts, or the reason a user reads.
async fn produce(
    state: &EncodeContext,
    session: &Session,
    target: EncodeTarget,
    started: &mut Option<EncodeStart>,
) -> Result<MediaFacts, String> {
    let config = &state.config;
    let permit = state
        .encodes
        .acquire()
        .await
        .map_err(|_| "the encoder is shutting down".to_owned())?;

    tracing::info!("probing the source");
    let mut source = probe_source(state, &session.dir).await?;
    let source_bytes = tokio::fs::metadata(session.source_path())
        .await
        .map_err(|err| internal("reading the source's size", &anyhow::Error::new(err)))?
        .len();
    let bounds = SourceBounds::new(config);
    bounds
        .check(source.duration_seconds, source_bytes)
        .map_err(|implausible| implausible.to_string())?;
    let input = Source {
        input: Input::File(SOURCE_FILE),
        format: &source.format,
        max_seconds: bounds.encode_seconds(Some(source.duration_seconds), source_bytes),
    };
    let plan = EncodePlan::for_source(config, &source);
    let output_dir = session.output_dir();
    fresh_dir(&output_dir)
        .await
        .map_err(|err| internal("preparing the output", &err))?;

    tracing::info!(
        renditions = plan.renditions().len(),
        audio_renditions = plan.audio.len(),
        "encoding"
    );
    let args = plan::encode_args(config, &plan, OUTPUT_DIR);
    let start = EncodeStart {
        path: EncodePath::AfterUpload,
        received_bytes: session.total_bytes().await.unwrap_or_default(),
    };
    *started = Some(start);
    state.metrics.encode_started(start.path);
    let running = state.metrics.ffmpeg_running();
    let encode_began = std::time::Instant::now();
    let (encoded, encoded_watch) = watch::channel(Duration::ZERO);
    let encoded_time = encoded_watch.clone();
    let supervision = Supervision {
        progress: Some(encoded),
        ..Supervision::new(config.stall_timeout())
    };
    let (encode_result, ()) = tokio::join!(
        encode_with_deadline(state, &session.dir, &input, args, supervision),
        progress::report(
            state.sink.as_ref(),
            Duration::from_millis(config.progress_interval_ms),
            session,
            target,
            start,
            source.duration_seconds,
            encoded_watch
        ),
    );
    drop(running);
    encode_result.map_err(|failure| failure.reason)?;
    drop(permit);

    source.duration_seconds = encoded_duration(source.duration_seconds, *encoded_time.borrow());
    state.metrics.encode_speed(
        source.duration_seconds,
        encode_began.elapsed().as_secs_f64(),
    );
    finalize_and_store(state, session, target, &plan, &source).await
}

/// The length of the presentation: the source's, unless ffmpeg reached noticeably less far, as
/// in a stream cut short whose header announced its whole length.
pub(crate) fn encoded_duration(probed_seconds: f64, encoded: Duration) -> f64 {
    let encoded = encoded.as_secs_f64();
    if encoded > 0.0 && (probed_seconds <= 0.0 || encoded < probed_seconds - 1.0) {
        encoded
    } else {
        probed_seconds
    }
}

/// Finishes the encoded presentation and stores it on holder; returns its facts.
pub(crate) async fn finalize_and_store(
    state: &EncodeContext,
    session: &Session,
    target: EncodeTarget,
    plan: &EncodePlan,
    source: &SourceFacts,
) -> Result<MediaFacts, String> {
    let output_dir = session.output_dir();
    let remote_dir = layout::presentation_dir(target.video_id, target.flow_id);
    let mut facts = finalize_presentation(state, &output_dir, plan, source, &remote_dir)
        .await
        .map_err(|err| internal("finishing the presentation", &err))?;
    if target.mp4_support == Mp4Support::Standard {
        tracing::info!("making the MP4 downloads");
        facts.downloads = make_downloads(state, &session.dir, &facts, &remote_dir)
            .await
            .map_err(|err| internal("making the MP4 downloads", &err))?;
    }

    tracing::info!(remote_dir = %remote_dir, "storing on holder");
    facts.stored_bytes = ftp::store_presentation(
        &state.config.holder,
        &output_dir,
        &remote_dir,
        &state.metrics,
    )
    .await
    .map_err(|err| format!("could not store the presentation on holder: {err:#}"))?;
    Ok(facts)
}

/// `highest.mp4` and `audio.m4a` from the presentation in the session's output (see
/// [`downloads`]), from the tallest rendition and the default sound.
pub(crate) async fn make_downloads(
    state: &EncodeContext,
    session_dir: &Path,
    facts: &MediaFacts,
    remote_dir: &str,
) -> anyhow::Result<Vec<DownloadFacts>> {
    let local = |path: &str| {
        path.strip_prefix(remote_dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_owned)
            .with_context(|| format!("{path} is not in {remote_dir}"))
    };
    let video_playlist = facts
        .renditions
        .first()
        .map(|top| local(&top.playlist_path))
        .transpose()?;
    let audio_playlist = facts
        .audio_renditions
        .iter()
        .find(|audio| audio.default)
        .or(facts.audio_renditions.first())
        .map(|audio| local(&audio.playlist_path))
        .transpose()?;
    let video = video_playlist.as_deref().map(|playlist| downloads::Track {
        playlist,
        size: facts.width.zip(facts.height),
    });
    let audio = audio_playlist.as_deref().map(|playlist| downloads::Track {
        playlist,
        size: None,
    });
    downloads::make(
        state,
        session_dir,
        OUTPUT_DIR,
        video,
        audio,
        facts.duration_seconds,
        remote_dir,
    )
    .await
}

/// ffprobe's view of the source, or the reason a user reads; a picture whose container does not
/// say it is interlaced (says nothing, or progressive) is looked at (see [`interlace`]), and
/// taken as progressive when that fails.
pub(crate) async fn probe_source(state: &EncodeContext, dir: &Path) -> Result<SourceFacts, String> {
    let config = &state.config;
    let mut facts = probe::probe(&state.sandbox, dir, SOURCE_FILE, config.probe_timeout())
        .await
        .map_err(|err| match err {
            ProbeError::Unexpected(err) => internal("probing", &err),
            readable => readable.to_string(),
        })?;
    let format = facts.format.clone();
    if let Some(video) = facts
        .video
        .as_mut()
        .filter(|video| !video.scan.is_interlaced())
    {
        let container = video.scan;
        video.scan = Scan::Progressive;
        if config.idet_frames > 0 {
            let source = Source {
                input: Input::File(SOURCE_FILE),
                format: &format,
                // Reads no further than the frames looked at, at one frame a second or more.
                max_seconds: f64::from(config.idet_frames),
            };
            let timeout = config.probe_timeout();
            let frames = config.idet_frames;
            match interlace::detect(&state.sandbox, dir, &source, frames, timeout, container).await
            {
                Ok(scan) => video.scan = scan,
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "interlacing not detected");
                }
            }
        }
    }
    Ok(facts)
}

/// Why an encode failed, as a user reads it.
pub(crate) struct EncodeFailure {
    pub reason: String,
    /// The watchdog stopped it.
    pub stalled: bool,
}

/// Runs ffmpeg on `source` under the watchdog and the overall encode deadline.
pub(crate) async fn encode_with_deadline(
    state: &EncodeContext,
    dir: &Path,
    source: &Source<'_>,
    args: Vec<String>,
    supervision: Supervision,
) -> Result<(), EncodeFailure> {
    let config = &state.config;
    let encoded = tokio::time::timeout(
        config.max_encode_duration(),
        ffmpeg::run(&state.sandbox, dir, source, args, supervision),
    )
    .await;
    let failure = |reason: String| EncodeFailure {
        reason,
        stalled: false,
    };
    match encoded {
        Err(_) => Err(failure(format!(
            "the encode took longer than {} seconds",
            config.max_encode_seconds
        ))),
        Ok(Err(FfmpegError::Failed(line))) => {
            Err(failure(format!("ffmpeg could not encode the file: {line}")))
        }
        Ok(Err(stalled @ FfmpegError::Stalled(_))) => Err(EncodeFailure {
            reason: stalled.to_string(),
            stalled: true,
        }),
        Ok(Err(FfmpegError::Abandoned(why))) => {
            Err(failure(format!("ffmpeg was stopped because {why}")))
        }
        Ok(Err(FfmpegError::Unexpected(err))) => Err(failure(internal("encoding", &err))),
        Ok(Ok(())) => Ok(()),
    }
}

/// Logs the cause and returns what a user is told.
pub(crate) fn internal(doing: &str, err: &anyhow::Error) -> String {
    tracing::error!(error = %format!("{err:#}"), "failed while {doing}");
    format!("the encoder failed while {doing}")
}

pub(crate) async fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
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

/// Bits per second of a media playlist's segments: `(peak, average)`.
async fn measured_bandwidth(dir: &Path, playlist: &str) -> anyhow::Result<(u64, u64)> {
    let text = tokio::fs::read_to_string(dir.join(playlist))
        .await
        .with_context(|| format!("ffmpeg wrote no {playlist}"))?;
    let mut peak = 0.0f64;
    let mut total_bytes = 0u64;
    let mut total_seconds = 0.0f64;
    for (seconds, uri) in playlists::media_segments(&text) {
        let bytes = tokio::fs::metadata(dir.join(&uri))
            .await
            .with_context(|| format!("{playlist} names {uri}, which ffmpeg did not write"))?
            .len();
        total_bytes += bytes;
        total_seconds += seconds;
        if seconds > 0.0 {
            peak = peak.max(bytes as f64 * 8.0 / seconds);
        }
    }
    let average = if total_seconds > 0.0 {
        total_bytes as f64 * 8.0 / total_seconds
    } else {
        0.0
    };
    Ok((peak.ceil() as u64, average.ceil() as u64))
}

/// Makes ffmpeg's manifests exact, its audio adaptation sets labelled (see [`manifest`]) and its
/// HLS playlists proper VoD playlists, writes the master playlist from what was encoded (see
/// [`playlists`]), makes sure there is a poster, and returns the presentation's facts with paths
/// under `remote_dir`.
async fn finalize_presentation(
    state: &EncodeContext,
    dir: &Path,
    plan: &EncodePlan,
    source: &SourceFacts,
    remote_dir: &str,
) -> anyhow::Result<MediaFacts> {
    let mpd = tokio::fs::read_to_string(dir.join(DASH_MANIFEST))
        .await
        .context("ffmpeg wrote no DASH manifest")?;
    let tracks = manifest::track_timelines(&mpd);
    let milliseconds = manifest::presentation_milliseconds(&tracks)
        .filter(|milliseconds| *milliseconds > 0)
        .context("the DASH manifest has no segment")?;
    let default_audio = default_audio(&plan.audio, &state.config.preferred_audio_language);
    let labels: Vec<AudioSetLabel> = plan
        .audio
        .iter()
        .zip(plan.audio_stream_indices())
        .enumerate()
        .map(|(index, (audio, stream))| AudioSetLabel {
            representation_id: stream.to_string(),
            label: audio.name.clone(),
            main: index == default_audio,
        })
        .collect();
    let mpd = manifest::with_presentation_duration(&mpd, milliseconds);
    let mpd = manifest::with_audio_labels(&mpd, &labels);
    tokio::fs::write(dir.join(DASH_MANIFEST), &mpd)
        .await
        .context("failed to rewrite the DASH manifest")?;
    let codecs_by_stream: HashMap<String, String> =
        playlists::mpd_codecs(&mpd).into_iter().collect();
    let codecs_of = |stream: usize| {
        codecs_by_stream
            .get(&stream.to_string())
            .cloned()
            .with_context(|| format!("the DASH manifest has no representation {stream}"))
    };

    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".m3u8") && name != HLS_MASTER {
            let path = entry.path();
            let mut text = tokio::fs::read_to_string(&path).await?;
            let track = name
                .strip_prefix("media_")
                .and_then(|rest| rest.strip_suffix(".m3u8"))
                .and_then(|id| tracks.iter().find(|track| track.id == id));
            if let Some(track) = track {
                text = playlists::with_segment_durations(&text, &track.segment_seconds);
            }
            tokio::fs::write(&path, playlists::finalize_media_playlist(&text))
                .await
                .with_context(|| format!("failed to rewrite {name}"))?;
        }
    }

    let mut audio = Vec::new();
    for (rendition, stream) in plan.audio.iter().zip(plan.audio_stream_indices()) {
        let playlist = media_playlist_name(stream);
        let (peak, average) = measured_bandwidth(dir, &playlist).await?;
        audio.push(MeasuredAudio {
            rendition,
            playlist,
            peak,
            average,
            codecs: codecs_of(stream)?,
        });
    }
    // A variant is played with any of the audio renditions: it announces the largest.
    let largest_audio = audio.iter().max_by_key(|audio| audio.peak);
    let frame_rate = plan
        .video
        .as_ref()
        .map(|video| f64::from(video.frame_rate.0) / f64::from(video.frame_rate.1));
    let mut variants = Vec::new();
    let mut renditions = Vec::new();
    for (stream, rendition) in plan.renditions().iter().enumerate() {
        let playlist = media_playlist_name(stream);
        let (mut peak, mut average) = measured_bandwidth(dir, &playlist).await?;
        let mut codecs = codecs_of(stream)?;
        if let Some(audio) = largest_audio {
            peak += audio.peak;
            average += audio.average;
            codecs = format!("{codecs},{}", audio.codecs);
        }
        variants.push(Variant {
            playlist: playlist.clone(),
            bandwidth: peak,
            average_bandwidth: average,
            resolution: Some((rendition.width, rendition.height)),
            frame_rate,
            codecs: codecs.clone(),
        });
        renditions.push(RenditionFacts {
            width: rendition.width,
            height: rendition.height,
            bandwidth: peak,
            average_bandwidth: average,
            codecs,
            playlist_path: format!("{remote_dir}/{playlist}"),
        });
    }
    let group: Vec<AudioMedia> = audio
        .iter()
        .enumerate()
        .map(|(index, audio)| AudioMedia {
            playlist: audio.playlist.clone(),
            language: audio.rendition.language.clone(),
            name: audio.rendition.name.clone(),
            default: index == default_audio,
        })
        .collect();
    let master = match audio.get(default_audio) {
        Some(first) if variants.is_empty() => {
            // An audio-only presentation plays its default track; the others are its group.
            let only_audio = Variant {
                playlist: first.playlist.clone(),
                bandwidth: largest_audio.map_or(first.peak, |audio| audio.peak),
                average_bandwidth: largest_audio.map_or(first.average, |audio| audio.average),
                resolution: None,
                frame_rate: None,
                codecs: first.codecs.clone(),
            };
            let group = if audio.len() > 1 {
                group.as_slice()
            } else {
                &[]
            };
            playlists::master_playlist(&[only_audio], group)
        }
        _ => playlists::master_playlist(&variants, &group),
    };
    let audio_renditions = audio
        .iter()
        .enumerate()
        .map(|(index, audio)| AudioRenditionFacts {
            language: audio.rendition.language.clone(),
            name: audio.rendition.name.clone(),
            default: index == default_audio,
            bandwidth: audio.peak,
            average_bandwidth: audio.average,
            codecs: audio.codecs.clone(),
            playlist_path: format!("{remote_dir}/{}", audio.playlist),
        })
        .collect();
    tokio::fs::write(dir.join(HLS_MASTER), master)
        .await
        .context("failed to write the master playlist")?;

    let poster_path = if plan.video.is_some() {
        ensure_poster(state, dir).await?;
        Some(format!("{remote_dir}/{POSTER}"))
    } else {
        None
    };
    let storyboard =
        write_storyboard(state, dir, plan, source.duration_seconds, remote_dir).await?;
    let top = plan.renditions().first();
    Ok(MediaFacts {
        duration_seconds: source.duration_seconds,
        width: top.map(|rendition| rendition.width),
        height: top.map(|rendition| rendition.height),
        video_codec: plan.video.as_ref().map(|_| "h264".to_owned()),
        audio_codec: plan.has_audio().then(|| "aac".to_owned()),
        hls_path: format!("{remote_dir}/{HLS_MASTER}"),
        dash_path: format!("{remote_dir}/{DASH_MANIFEST}"),
        source: source_facts(source),
        renditions,
        audio_renditions,
        poster_path,
        storyboard,
        // Made after, when the flow asks for them.
        downloads: Vec::new(),
        // Known once the presentation is on holder.
        stored_bytes: 0,
    })
}

/// Makes the storyboard (see [`crate::storyboard`]) from the smallest rendition and writes its
/// WebVTT track, cues covering the presentation's duration as it turned out; nothing when the
/// plan has no storyboard.
async fn write_storyboard(
    state: &EncodeContext,
    dir: &Path,
    plan: &EncodePlan,
    duration_seconds: f64,
    remote_dir: &str,
) -> anyhow::Result<Option<StoryboardFacts>> {
    let Some(storyboard) = plan.video.as_ref().and_then(|video| video.storyboard) else {
        return Ok(None);
    };
    // The smallest rendition, decoded once more: far less than the source, and apart from the
    // encode, whose progress reports stop while an output of it has written nothing (the grid
    // is written at the end).
    let smallest = plan.renditions().len().saturating_sub(1);
    let joined = "storyboard-rendition.mp4";
    let session_dir = dir
        .parent()
        .context("the output has no session directory")?;
    downloads::join_segments(
        dir,
        &media_playlist_name(smallest),
        &session_dir.join(joined),
    )
    .await?;
    let output = format!("{OUTPUT_DIR}/{STORYBOARD_IMAGE}");
    let max_seconds = duration_seconds.max(0.0) + 10.0;
    for filters in [storyboard.filters(), storyboard.filters_of_first_frame()] {
        // A single frame passes nothing through `fps`: its grid is made of that frame.
        let args = [
            "-vf",
            &filters,
            "-frames:v",
            "1",
            "-q:v",
            "4",
            "-update",
            "1",
            &output,
        ];
        let segments = Demuxer::own_segments();
        let source = Source {
            input: Input::File(joined),
            format: &segments,
            max_seconds,
        };
        let args = args.iter().map(|arg| (*arg).to_owned()).collect();
        ffmpeg::run(
            &state.sandbox,
            session_dir,
            &source,
            args,
            Supervision::new(state.config.stall_timeout()),
        )
        .await
        .map_err(|err| anyhow::anyhow!("failed to make the storyboard: {err}"))?;
        if tokio::fs::try_exists(dir.join(STORYBOARD_IMAGE)).await? {
            break;
        }
    }
    let _ = tokio::fs::remove_file(session_dir.join(joined)).await;
    anyhow::ensure!(
        tokio::fs::try_exists(dir.join(STORYBOARD_IMAGE)).await?,
        "ffmpeg made no storyboard"
    );
    tokio::fs::write(
        dir.join(STORYBOARD_VTT),
        storyboard.vtt(duration_seconds, STORYBOARD_IMAGE),
    )
    .await
    .context("failed to write the storyboard track")?;
    let (width, height) = storyboard.image_size();
    Ok(Some(StoryboardFacts {
        image_path: format!("{remote_dir}/{STORYBOARD_IMAGE}"),
        vtt_path: format!("{remote_dir}/{STORYBOARD_VTT}"),
        width,
        height,
        interval_ms: storyboard.interval_ms,
    }))
}

/// An audio rendition as encoded.
struct MeasuredAudio<'a> {
    rendition: &'a AudioRendition,
    playlist: String,
    peak: u64,
    average: u64,
    codecs: String,
}

/// Index of the audio rendition players choose first: the first in the preferred language
/// (`en` also matches `en-GB`), else the first.
fn default_audio(audio: &[AudioRendition], preferred: &str) -> usize {
    let preferred = preferred.trim().to_ascii_lowercase();
    if preferred.is_empty() {
        return 0;
    }
    audio
        .iter()
        .position(|audio| {
            let language = audio.language.to_ascii_lowercase();
            language == preferred || language.starts_with(&format!("{preferred}-"))
        })
        .unwrap_or(0)
}

fn media_playlist_name(stream: usize) -> String {
    format!("media_{stream}.m3u8")
}

/// The encode takes the poster at its planned time; a picture shorter than that (its length
/// unknown when the encode started) gets its first frame instead, read from the first segment
/// of the tallest rendition (its initialization segment and first media segment, fed to ffmpeg
/// as one fragmented MP4).
async fn ensure_poster(state: &EncodeContext, dir: &Path) -> anyhow::Result<()> {
    if tokio::fs::try_exists(dir.join(POSTER)).await? {
        return Ok(());
    }
    let args = ["-frames:v", "1", "-q:v", "3", "-update", "1", POSTER];
    from_first_segment(state, dir, &args)
        .await
        .map_err(|err| anyhow::anyhow!("failed to take the poster: {err}"))
}

/// Runs ffmpeg with output options `args` on the first segment of the tallest rendition (its
/// initialization segment and first media segment, fed as one fragmented MP4).
async fn from_first_segment(
    state: &EncodeContext,
    dir: &Path,
    args: &[&str],
) -> anyhow::Result<()> {
    let playlist = media_playlist_name(0);
    let text = tokio::fs::read_to_string(dir.join(&playlist))
        .await
        .with_context(|| format!("ffmpeg wrote no {playlist}"))?;
    let init = playlists::init_segment(&text).context("the playlist names no init segment")?;
    let (_, first) = playlists::media_segments(&text)
        .into_iter()
        .next()
        .context("the playlist names no segment")?;
    let mut bytes = Vec::new();
    for segment in [&init, &first] {
        anyhow::ensure!(
            !segment.contains('/'),
            "the playlist names {segment} outside its directory"
        );
        bytes.extend(
            tokio::fs::read(dir.join(segment))
                .await
                .with_context(|| format!("failed to read {segment}"))?,
        );
    }
    let mut all_args = vec!["-nostdin".to_owned(), "-y".to_owned()];
    all_args.extend(args.iter().map(|arg| (*arg).to_owned()));
    let segments = Demuxer::own_segments();
    let source = Source {
        input: Input::Stdin,
        format: &segments,
        max_seconds: f64::from(state.config.segment_seconds) + 1.0,
    };
    let supervision = Supervision {
        feeder: Some(Box::new(move |mut stdin, _| {
            Box::pin(async move {
                // ffmpeg closes its input once it has what it needs.
                let _ = stdin.write_all(&bytes).await;
                let _ = stdin.shutdown().await;
            })
        })),
        ..Supervision::new(state.config.stall_timeout())
    };
    ffmpeg::run(&state.sandbox, dir, &source, all_args, supervision)
        .await
        .map_err(anyhow::Error::new)
}

fn source_facts(source: &SourceFacts) -> vod_contracts::outcome::SourceFacts {
    let video = source.video.as_ref();
    let display = video.map(|video| {
        DisplaySize::new(
            video.width,
            video.height,
            video.sample_aspect,
            video.rotation,
        )
    });
    vod_contracts::outcome::SourceFacts {
        width: display.map(|display| display.width),
        height: display.map(|display| display.height),
        video_codec: video.map(|video| video.codec.clone()),
        audio_codec: source.audio.first().map(|audio| audio.codec.clone()),
        frame_rate: video.and_then(|video| video.frame_rate),
        interlaced: video.is_some_and(|video| video.scan.is_interlaced()),
        hdr: video.is_some_and(|video| video.hdr.is_some()),
        audio_tracks: source
            .audio
            .iter()
            .map(|audio| AudioTrackFacts {
                language: audio.language.clone(),
                channels: audio.channels,
                codec: audio.codec.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
