//! What the gateway reads from PostgreSQL. It never writes: the uploader owns these rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, PoolError};
use tokio_postgres::Row;
use uuid::Uuid;
use vod_contracts::api::{
    AudioRenditionView, AudioTrackView, FlowView, Playback, RenditionView, SourceView, VideoView,
};
use vod_contracts::outcome::{AudioRenditionFacts, AudioTrackFacts, RenditionFacts};
use vod_contracts::{
    EncodePath, FlowId, FlowStatus, ProjectId, SessionId, SessionStatus, UploadKind, VideoId,
    VideoStatus,
};

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no database connection: {0}")]
    Unavailable(#[from] PoolError),
    #[error("query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("unexpected renditions: {0}")]
    CorruptRenditions(#[from] serde_json::Error),
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Unavailable(_) => Self::Unavailable(error.to_string()),
            ReadError::Query(ref query) if query.is_closed() => {
                Self::Unavailable(error.to_string())
            }
            other => {
                Self::Internal(anyhow::Error::new(other).context("failed to read the database"))
            }
        }
    }
}

/// An upload session with its flow, as `HEAD` and `PATCH` need it.
#[derive(Debug, Clone)]
pub struct UploadState {
    pub status: SessionStatus,
    pub kind: UploadKind,
    /// `None` for a partial upload.
    pub video_id: Option<VideoId>,
    pub flow_id: Option<FlowId>,
    pub uploaded_bytes: u64,
    /// `None` while the length is deferred.
    pub total_bytes: Option<u64>,
    pub metadata: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Open, and past `expires_at`: it answers 410 even before the uploader expires it.
    pub expired: bool,
    /// The partial uploads of a final upload, in order.
    pub parts: Vec<SessionId>,
}

/// The upload if it is the project's: another project's upload, and one of a deleted video, is
/// as absent as one that does not exist, in the same single query.
pub async fn find_upload(
    pool: &Pool,
    project_id: ProjectId,
    session_id: SessionId,
) -> Result<Option<UploadState>, ReadError> {
    let client = pool.get().await?;
    // Every PATCH and HEAD runs it: prepared once per connection.
    let statement = client
        .prepare_cached(
            "SELECT s.status, s.kind, f.video_id, s.flow_id, \
                    COALESCE(f.uploaded_bytes, s.uploaded_bytes, 0) AS uploaded_bytes, \
                    CASE WHEN s.kind = 'PARTIAL' THEN s.total_bytes ELSE f.total_bytes END \
                        AS total_bytes, \
                    s.metadata, s.expires_at, \
                    (s.status = 'OPEN' AND COALESCE(s.expires_at < now(), false)) AS expired, \
                    COALESCE(s.parts, '{}'::uuid[]) AS parts \
             FROM upload_session s LEFT JOIN flow f ON f.id = s.flow_id \
                  LEFT JOIN video v ON v.id = f.video_id \
             WHERE s.id = $1 AND s.project_id = $2 AND v.deleted_at IS NULL",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&session_id.0, &project_id.0])
        .await?;
    row.map(|row| {
        let parts: Vec<Uuid> = row.get("parts");
        Ok(UploadState {
            status: row.try_get("status")?,
            kind: row.try_get("kind")?,
            video_id: row.get::<_, Option<Uuid>>("video_id").map(VideoId),
            flow_id: row.get::<_, Option<Uuid>>("flow_id").map(FlowId),
            uploaded_bytes: non_negative(row.get("uploaded_bytes")),
            total_bytes: row.get::<_, Option<i64>>("total_bytes").map(non_negative),
            metadata: row.get("metadata"),
            expires_at: row.get("expires_at"),
            expired: row.get("expired"),
            parts: parts.into_iter().map(SessionId).collect(),
        })
    })
    .transpose()
}

const VIDEO_COLUMNS: &str = "id, title, description, passthrough, status, created_at, updated_at";
const FLOW_COLUMNS: &str = "id, video_id, status, filename, uploaded_bytes, total_bytes, error, \
     duration_seconds, width, height, video_codec, audio_codec, hls_path, dash_path, source_sha256, created_at, \
     updated_at, progress_percent, encode_path, encode_started_at_byte, source_width, \
     source_height, source_video_codec, source_audio_codec, source_frame_rate, renditions, \
     poster_path, source_interlaced, source_hdr, source_audio_tracks, audio_renditions";

/// The video if it is the project's and not deleted.
pub async fn find_video(
    pool: &Pool,
    project_id: ProjectId,
    video_id: VideoId,
    holder_public_url: &str,
) -> Result<Option<VideoView>, ReadError> {
    let client = pool.get().await?;
    let Some(row) = client
        .query_opt(
            &format!(
                "SELECT {VIDEO_COLUMNS} FROM video \
                 WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL"
            ),
            &[&video_id.0, &project_id.0],
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

/// Whether the project has the video (not deleted), without reading it.
pub async fn video_exists(
    pool: &Pool,
    project_id: ProjectId,
    video_id: VideoId,
) -> Result<bool, ReadError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM video WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL",
            &[&video_id.0, &project_id.0],
        )
        .await?;
    Ok(row.is_some())
}

/// A page of videos, newest first, with their flows loaded in one query.
pub async fn list_videos(
    pool: &Pool,
    project_id: ProjectId,
    limit: i64,
    offset: i64,
    holder_public_url: &str,
) -> Result<Vec<VideoView>, ReadError> {
    let client = pool.get().await?;
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
    fn from_row(row: &Row, holder_public_url: &str) -> Result<Self, ReadError> {
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
            },
        })
    }
}

/// `flows` are newest first; the newest ready one is what plays.
fn video_view(
    row: &Row,
    flows: Vec<FlowRow>,
    holder_public_url: &str,
) -> Result<VideoView, ReadError> {
    let status: VideoStatus = row.try_get("status")?;
    let playback = flows
        .iter()
        .find_map(|flow| match (&flow.hls_path, &flow.dash_path) {
            (Some(hls), Some(dash)) if flow.view.status == FlowStatus::Ready => Some(Playback {
                hls: public_url(holder_public_url, hls),
                dash: public_url(holder_public_url, dash),
            }),
            _ => None,
        });
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
