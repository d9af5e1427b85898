//! Videos, direct uploads and webhook endpoints as the public JSON API shows them
//! (`GET /v1/videos/{id}`, `GET /v1/direct-uploads/{id}`, `GET /v1/webhooks/{id}`), read from
//! PostgreSQL.
//!
//! One rendering, used by the gateway to answer and by the uploader to record an event's
//! `data` inside the transaction of the change the event reports, so that an event shows the
//! video exactly as a read at that moment would. It only reads, through any client or
//! transaction (`deadpool_postgres::GenericClient`).

mod direct_uploads;
mod events;
mod webhooks;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;
use vod_contracts::api::{
    AudioRenditionView, AudioTrackView, FlowView, Playback, RenditionView, SourceView,
    StoryboardView, VideoView,
};
use vod_contracts::outcome::{
    AudioRenditionFacts, AudioTrackFacts, RenditionFacts, StoryboardFacts,
};
use vod_contracts::{EncodePath, FlowStatus, ProjectId, VideoId, VideoStatus};

pub use direct_uploads::{find_direct_upload, list_direct_uploads};
pub use events::{event_view, find_event, EVENT_COLUMNS};
pub use webhooks::{find_webhook, list_deliveries, list_webhooks};

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("unexpected stored JSON: {0}")]
    CorruptJson(#[from] serde_json::Error),
}

/// Whether a video marked deleted is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// As the API answers: a deleted video is absent.
    Hidden,
    /// The video as it was when it was marked, for the event that says it was deleted.
    Shown,
}

const VIDEO_COLUMNS: &str = "id, title, description, passthrough, status, created_at, updated_at";
const FLOW_COLUMNS: &str = "id, video_id, status, filename, uploaded_bytes, total_bytes, error, \
     duration_seconds, width, height, video_codec, audio_codec, hls_path, dash_path, source_sha256, created_at, \
     updated_at, progress_percent, encode_path, encode_started_at_byte, source_width, \
     source_height, source_video_codec, source_audio_codec, source_frame_rate, renditions, \
     poster_path, source_interlaced, source_hdr, source_audio_tracks, audio_renditions, storyboard";

/// The video if it is the project's (and not deleted, unless `deleted` shows it), in one
/// statement that names the project, so that another project's video reads as a missing one.
pub async fn find_video(
    client: &impl GenericClient,
    project_id: ProjectId,
    video_id: VideoId,
    holder_public_url: &str,
    deleted: Deleted,
) -> Result<Option<VideoView>, ViewError> {
    let shown = deleted == Deleted::Shown;
    let Some(row) = client
        .query_opt(
            &format!(
                "SELECT {VIDEO_COLUMNS} FROM video \
                 WHERE id = $1 AND project_id = $2 AND ($3 OR deleted_at IS NULL)"
            ),
            &[&video_id.0, &project_id.0, &shown],
        )
        .await?
    else {
        return Ok(None);
    };
    let flows = client
        .query(
            &format!(
                "SELECT {FLOW_COLUMNS} FROM flow WHERE video_id = $1 \
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&video_id.0],
        )
        .await?
        .iter()
        .map(|row| FlowRow::from_row(row, holder_public_url))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(video_view(&row, flows, holder_public_url)?))
}

/// A page of videos, newest first, with their flows loaded in one query.
pub async fn list_videos(
    client: &impl GenericClient,
    project_id: ProjectId,
    limit: i64,
    offset: i64,
    holder_public_url: &str,
) -> Result<Vec<VideoView>, ViewError> {
    let videos = client
        .query(
            &format!(
                "SELECT {VIDEO_COLUMNS} FROM video WHERE project_id = $3 AND deleted_at IS NULL \
                 ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
            ),
            &[&limit, &offset, &project_id.0],
        )
        .await?;
    let ids: Vec<Uuid> = videos.iter().map(|row| row.get("id")).collect();
    let mut flows_by_video: HashMap<Uuid, Vec<FlowRow>> = HashMap::new();
    if !ids.is_empty() {
        let flows = client
            .query(
                &format!(
                    "SELECT {FLOW_COLUMNS} FROM flow WHERE video_id = ANY($1) \
                     ORDER BY created_at DESC, id DESC"
                ),
                &[&ids],
            )
            .await?;
        for row in &flows {
            let flow = FlowRow::from_row(row, holder_public_url)?;
            flows_by_video.entry(flow.video_id).or_default().push(flow);
        }
    }
    videos
        .iter()
        .map(|row| {
            let flows = flows_by_video
                .remove(&row.get::<_, Uuid>("id"))
                .unwrap_or_default();
            video_view(row, flows, holder_public_url)
        })
        .collect()
}

struct FlowRow {
    video_id: Uuid,
    view: FlowView,
    hls_path: Option<String>,
    dash_path: Option<String>,
}

impl FlowRow {
    fn from_row(row: &Row, holder_public_url: &str) -> Result<Self, ViewError> {
        let status: FlowStatus = row.try_get("status")?;
        let encode_path: Option<EncodePath> = row.try_get("encode_path")?;
        let renditions = match row.get::<_, Option<serde_json::Value>>("renditions") {
            Some(json) => serde_json::from_value::<Vec<RenditionFacts>>(json)?,
            None => Vec::new(),
        };
        let audio_tracks = match row.get::<_, Option<serde_json::Value>>("source_audio_tracks") {
            Some(json) => serde_json::from_value::<Vec<AudioTrackFacts>>(json)?,
            None => Vec::new(),
        };
        let audio_renditions = match row.get::<_, Option<serde_json::Value>>("audio_renditions") {
            Some(json) => serde_json::from_value::<Vec<AudioRenditionFacts>>(json)?,
            None => Vec::new(),
        };
        let storyboard = match row.get::<_, Option<serde_json::Value>>("storyboard") {
            Some(json) => Some(serde_json::from_value::<StoryboardFacts>(json)?),
            None => None,
        }
        .map(|facts| StoryboardView {
            image: public_url(holder_public_url, &facts.image_path),
            vtt: public_url(holder_public_url, &facts.vtt_path),
        });
        let source_video_codec: Option<String> = row.get("source_video_codec");
        let source_audio_codec: Option<String> = row.get("source_audio_codec");
        let source =
            (source_video_codec.is_some() || source_audio_codec.is_some()).then(|| SourceView {
                width: row
                    .get::<_, Option<i32>>("source_width")
                    .map(non_negative_u32),
                height: row
                    .get::<_, Option<i32>>("source_height")
                    .map(non_negative_u32),
                video_codec: source_video_codec,
                audio_codec: source_audio_codec,
                frame_rate: row.get("source_frame_rate"),
                interlaced: row.get("source_interlaced"),
                hdr: row.get("source_hdr"),
                audio_tracks: audio_tracks
                    .into_iter()
                    .map(|track| AudioTrackView {
                        language: track.language,
                        channels: track.channels,
                        codec: track.codec,
                    })
                    .collect(),
            });
        Ok(Self {
            video_id: row.get("video_id"),
            hls_path: row.get("hls_path"),
            dash_path: row.get("dash_path"),
            view: FlowView {
                id: row.get::<_, Uuid>("id").into(),
                status,
                filename: row.get("filename"),
                uploaded_bytes: non_negative(row.get("uploaded_bytes")),
                total_bytes: row
                    .get::<_, Option<i64>>("total_bytes")
                    .map_or(0, non_negative),
                error: row.get("error"),
                duration_seconds: row.get("duration_seconds"),
                width: row.get::<_, Option<i32>>("width").map(non_negative_u32),
                height: row.get::<_, Option<i32>>("height").map(non_negative_u32),
                video_codec: row.get("video_codec"),
                audio_codec: row.get("audio_codec"),
                source_sha256: row.get("source_sha256"),
                created_at: row.get::<_, DateTime<Utc>>("created_at"),
                updated_at: row.get::<_, DateTime<Utc>>("updated_at"),
                progress_percent: row
                    .get::<_, Option<i16>>("progress_percent")
                    .and_then(|percent| u8::try_from(percent).ok()),
                encode_path,
                encode_started_at_byte: row
                    .get::<_, Option<i64>>("encode_started_at_byte")
                    .map(non_negative),
                source,
                renditions: renditions
                    .into_iter()
                    .map(|rendition| RenditionView {
                        width: rendition.width,
                        height: rendition.height,
                        bandwidth: rendition.bandwidth,
                        average_bandwidth: rendition.average_bandwidth,
                        codecs: rendition.codecs,
                        hls: public_url(holder_public_url, &rendition.playlist_path),
                    })
                    .collect(),
                audio_renditions: audio_renditions
                    .into_iter()
                    .map(|audio| AudioRenditionView {
                        language: audio.language,
                        name: audio.name,
                        default: audio.default,
                        bandwidth: audio.bandwidth,
                        average_bandwidth: audio.average_bandwidth,
                        codecs: audio.codecs,
                        hls: public_url(holder_public_url, &audio.playlist_path),
                    })
                    .collect(),
                poster: row
                    .get::<_, Option<&str>>("poster_path")
                    .map(|path| public_url(holder_public_url, path)),
                storyboard,
            },
        })
    }
}

/// `flows` are newest first; the newest ready one is what plays.
fn video_view(
    row: &Row,
    flows: Vec<FlowRow>,
    holder_public_url: &str,
) -> Result<VideoView, ViewError> {
    let status: VideoStatus = row.try_get("status")?;
    let (playback, storyboard) = flows
        .iter()
        .find_map(|flow| match (&flow.hls_path, &flow.dash_path) {
            (Some(hls), Some(dash)) if flow.view.status == FlowStatus::Ready => Some((
                Some(Playback {
                    hls: public_url(holder_public_url, hls),
                    dash: public_url(holder_public_url, dash),
                }),
                flow.view.storyboard.clone(),
            )),
            _ => None,
        })
        .unwrap_or_default();
    Ok(VideoView {
        id: row.get::<_, Uuid>("id").into(),
        title: row.get("title"),
        description: row.get("description"),
        passthrough: row.get("passthrough"),
        status,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        flows: flows.into_iter().map(|flow| flow.view).collect(),
        playback,
        storyboard,
    })
}

pub fn public_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn non_negative_u32(value: i32) -> u32 {
    u32::try_from(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_urls_join_base_and_path_with_one_slash() {
        assert_eq!(
            public_url("http://127.0.0.1:8090/", "/videos/a/b/master.m3u8"),
            "http://127.0.0.1:8090/videos/a/b/master.m3u8"
        );
        assert_eq!(
            public_url("http://cdn.example/vod", "videos/a/b/manifest.mpd"),
            "http://cdn.example/vod/videos/a/b/manifest.mpd"
        );
    }
}
