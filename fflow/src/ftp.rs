//! Stores a presentation on holder over FTP.
//!
//! holder writes in place, so every file goes up under a temporary dot-name and is renamed once
//! complete: a player never sees half a file (on a bucket, holder writes the final key at once,
//! shown only when complete). Playlists and the MPD go last, the master playlist the very last,
//! so a presentation is never announced before its segments are there.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use vod_contracts::layout::{DASH_MANIFEST, HLS_MASTER};
use vod_infra::backoff::Backoff;

use crate::config::HolderSettings;
use crate::holder_ftp::{FtpCallError, HolderFtp};
use crate::metrics::FflowMetrics;

/// Uploads every file of `local_dir` into `remote_dir`, retrying the whole upload with backoff.
/// Returns the bytes of the presentation as sent to holder by the attempt that succeeded.
pub async fn store_presentation(
    settings: &HolderSettings,
    local_dir: &Path,
    remote_dir: &str,
    metrics: &FflowMetrics,
) -> anyhow::Result<u64> {
    let files = upload_order(list_files(local_dir).await?);
    let mut backoff = Backoff::doubling_unbounded(Duration::from_millis(settings.backoff_ms));
    let mut attempt = 1;
    loop {
        let uploaded = upload(settings, local_dir, remote_dir, &files, metrics).await;
        metrics.ftp_upload(uploaded.is_ok());
        match uploaded {
            Ok(stored_bytes) => return Ok(stored_bytes),
            Err(err) if attempt < settings.attempts => {
                tracing::warn!(
                    attempt,
                    error = %format!("{err:#}"),
                    "upload to holder failed, retrying"
                );
                tokio::time::sleep(backoff.next_delay()).await;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn list_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .context("failed to list the encoded files")?;
    while let Some(entry) = entries.next_entry().await? {
        if !entry.file_type().await?.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            if !name.starts_with('.') && !name.ends_with(".tmp") {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// Segments, init segments, the poster and the storyboard first, then media playlists, then the MPD, the master playlist
/// last: on a bucket, which has no rename, each file appears when it is uploaded, and a player
/// must never find a playlist naming a file not there yet.
pub fn upload_order(mut names: Vec<String>) -> Vec<String> {
    names.sort_by_key(|name| {
        let rank = if name == HLS_MASTER {
            3
        } else if name == DASH_MANIFEST {
            2
        } else if name.ends_with(".m3u8") || name.ends_with(".mpd") {
            1
        } else {
            0
        };
        (rank, name.clone())
    });
    names
}

/// `a/b/c` → `a`, `a/b`, `a/b/c`.
fn directory_levels(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

async fn upload(
    settings: &HolderSettings,
    local_dir: &Path,
    remote_dir: &str,
    files: &[String],
    metrics: &FflowMetrics,
) -> anyhow::Result<u64> {
    let mut holder = HolderFtp::connect(settings)
        .await
        .with_context(|| format!("failed to reach {}", settings.addr))?;
    let result = async {
        let mut stored_bytes = 0u64;
        for level in directory_levels(remote_dir) {
            match holder.mkdir(&level).await {
                // Already there (from another flow of the video, or an earlier attempt).
                Ok(()) | Err(FtpCallError::Answered { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        for name in files {
            let local = local_dir.join(name);
            let temporary = format!("{remote_dir}/.{name}.part");
            let published = format!("{remote_dir}/{name}");
            let mut file = tokio::fs::File::open(&local)
                .await
                .with_context(|| format!("failed to open encoded file {name}"))?;
            let bytes = holder
                .put_file(&temporary, &mut file)
                .await
                .with_context(|| format!("failed to upload {name}"))?;
            metrics.ftp_file(bytes);
            stored_bytes = stored_bytes.saturating_add(bytes);
            holder
                .rename(&temporary, &published)
                .await
                .with_context(|| format!("failed to publish {name}"))?;
        }
        anyhow::Ok(stored_bytes)
    }
    .await;
    holder.quit().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_and_manifest_go_last_and_the_master_after_everything() {
        let names = [
            "zz.m3u8",
            "master.m3u8",
            "manifest.mpd",
            "media_1.m3u8",
            "chunk-stream0-00002.m4s",
            "init-stream1.m4s",
            "media_0.m3u8",
            "chunk-stream0-00001.m4s",
            "init-stream0.m4s",
            "storyboard.vtt",
            "poster.jpg",
            "storyboard.jpg",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            upload_order(names),
            [
                "chunk-stream0-00001.m4s",
                "chunk-stream0-00002.m4s",
                "init-stream0.m4s",
                "init-stream1.m4s",
                "poster.jpg",
                "storyboard.jpg",
                "storyboard.vtt",
                "media_0.m3u8",
                "media_1.m3u8",
                "zz.m3u8",
                "manifest.mpd",
                "master.m3u8",
            ]
        );
    }

    #[test]
    fn directories_are_created_level_by_level() {
        assert_eq!(
            directory_levels("videos/v1/f1"),
            ["videos", "videos/v1", "videos/v1/f1"]
        );
        assert_eq!(directory_levels("/a//b/"), ["a", "a/b"]);
    }
}
