//! MP4 downloads of a presentation, made from its stored renditions without decoding anything:
//! `highest.mp4`, the tallest rendition with the default sound, and `audio.m4a`, the default
//! sound alone (the only download of an audio-only presentation). Each rendition's CMAF
//! segments, its initialization segment then its media segments in playlist order, are one
//! fragmented MP4; ffmpeg copies its packets into a plain MP4 with the index before the media
//! (`-movflags +faststart`), so a player can start it while it downloads.

use std::path::Path;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use vod_contracts::outcome::DownloadFacts;

use crate::context::EncodeContext;
use crate::ffmpeg::{self, Supervision};
use crate::playlists;
use crate::sandbox::{Demuxer, Input, Sandbox, Source};

/// File name of the MP4 of the tallest rendition with sound.
pub const HIGHEST_MP4: &str = "highest.mp4";
/// File name of the sound alone.
pub const AUDIO_M4A: &str = "audio.m4a";

/// A rendition to remux: the media playlist naming its segments, and its picture size.
pub struct Track<'a> {
    pub playlist: &'a str,
    pub size: Option<(u32, u32)>,
}

/// Makes the downloads in `output_dir` (inside `session_dir`, relative name `output_name`) from
/// the tallest `video` rendition and the default `audio` one, and returns their facts with paths
/// under `remote_dir`.
pub async fn make(
    state: &EncodeContext,
    session_dir: &Path,
    output_name: &str,
    video: Option<Track<'_>>,
    audio: Option<Track<'_>>,
    duration_seconds: f64,
    remote_dir: &str,
) -> anyhow::Result<Vec<DownloadFacts>> {
    let output_dir = session_dir.join(output_name);
    let max_seconds = duration_seconds.max(0.0) + 10.0;
    let audio_input = match &audio {
        Some(track) => {
            let name = "download-audio.mp4";
            join_segments(&output_dir, track.playlist, &session_dir.join(name)).await?;
            Some(name)
        }
        None => None,
    };
    let mut downloads = Vec::new();
    if let Some(track) = &video {
        let name = "download-video.mp4";
        join_segments(&output_dir, track.playlist, &session_dir.join(name)).await?;
        let mut args = Vec::new();
        if let Some(audio_input) = audio_input {
            args.extend(Sandbox::own_segments_input(audio_input, max_seconds));
            args.extend(["-map", "0:v:0", "-map", "1:a:0"].map(str::to_owned));
        } else {
            args.extend(["-map", "0:v:0"].map(str::to_owned));
        }
        let output = format!("{output_name}/{HIGHEST_MP4}");
        remux(state, session_dir, name, max_seconds, args, &output).await?;
        downloads.push(facts(&output_dir, HIGHEST_MP4, remote_dir, track.size).await?);
    }
    if let Some(audio_input) = audio_input {
        let output = format!("{output_name}/{AUDIO_M4A}");
        let args = ["-map", "0:a:0"].map(str::to_owned).into();
        remux(state, session_dir, audio_input, max_seconds, args, &output).await?;
        downloads.push(facts(&output_dir, AUDIO_M4A, remote_dir, None).await?);
    }
    for name in ["download-video.mp4", "download-audio.mp4"] {
        let _ = tokio::fs::remove_file(session_dir.join(name)).await;
    }
    Ok(downloads)
}

/// Writes the initialization segment and then every media segment of `playlist` (in
/// `dir`) into `joined`, one file at a time.
pub async fn join_segments(dir: &Path, playlist: &str, joined: &Path) -> anyhow::Result<()> {
    let text = tokio::fs::read_to_string(dir.join(playlist))
        .await
        .with_context(|| format!("ffmpeg wrote no {playlist}"))?;
    let init = playlists::init_segment(&text).context("the playlist names no init segment")?;
    let mut names = vec![init];
    names.extend(
        playlists::media_segments(&text)
            .into_iter()
            .map(|(_, uri)| uri),
    );
    let mut out = tokio::fs::File::create(joined)
        .await
        .context("failed to create the joined rendition")?;
    for name in names {
        anyhow::ensure!(
            !name.contains('/'),
            "{playlist} names {name} outside its directory"
        );
        let mut segment = tokio::fs::File::open(dir.join(&name))
            .await
            .with_context(|| format!("failed to open {name}"))?;
        tokio::io::copy(&mut segment, &mut out)
            .await
            .with_context(|| format!("failed to join {name}"))?;
    }
    out.flush().await?;
    Ok(())
}

async fn remux(
    state: &EncodeContext,
    dir: &Path,
    input: &str,
    max_seconds: f64,
    mut args: Vec<String>,
    output: &str,
) -> anyhow::Result<()> {
    args.extend(
        [
            "-nostdin",
            "-y",
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            output,
        ]
        .map(str::to_owned),
    );
    let segments = Demuxer::own_segments();
    let source = Source {
        input: Input::File(input),
        format: &segments,
        max_seconds,
    };
    ffmpeg::run(
        &state.sandbox,
        dir,
        &source,
        args,
        Supervision::new(state.config.stall_timeout()),
    )
    .await
    .map_err(|err| anyhow::anyhow!("failed to make {output}: {err}"))
}

async fn facts(
    dir: &Path,
    name: &str,
    remote_dir: &str,
    size: Option<(u32, u32)>,
) -> anyhow::Result<DownloadFacts> {
    let bytes = tokio::fs::metadata(dir.join(name))
        .await
        .with_context(|| format!("ffmpeg wrote no {name}"))?
        .len();
    Ok(DownloadFacts {
        name: name.to_owned(),
        path: format!("{remote_dir}/{name}"),
        bytes,
        width: size.map(|(width, _)| width),
        height: size.map(|(_, height)| height),
    })
}
