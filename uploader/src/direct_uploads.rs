//! Direct uploads: the only writes of their rows. A direct upload is claimed by the upload
//! created through its URL, in that upload's transaction, so that it makes one upload at most.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use vod_contracts::commands::{Reject, RejectCode};
use vod_contracts::event::EventType;
use vod_contracts::{DirectUploadId, PlaybackPolicy, ProjectId, SessionId, VideoId};

use crate::events::Recorder;

/// What a new direct upload is.
pub struct NewDirectUpload<'a> {
    pub project_id: ProjectId,
    pub direct_upload_id: DirectUploadId,
    pub token_sha256: &'a [u8],
    pub title: Option<&'a str>,
    pub description: &'a str,
    pub playback_policy: PlaybackPolicy,
    pub cors_origin: Option<&'a str>,
    pub timeout_secs: u32,
}

/// Stores a direct upload, with its event. Storing the same one twice (a redelivered command)
/// answers the first one's times and records nothing more.
pub async fn create(
    client: &impl GenericClient,
    direct: NewDirectUpload<'_>,
    recorder: &Recorder,
) -> anyhow::Result<Result<(DateTime<Utc>, DateTime<Utc>), Reject>> {
    let timeout_secs = f64::from(direct.timeout_secs);
    let inserted = client
        .query_opt(
            "INSERT INTO direct_upload (id, project_id, token_sha256, title, description, \
                                        cors_origin, expires_at, playback_policy) \
             SELECT $1, p.id, $3, $4, $5, $6, now() + make_interval(secs => $7), $8 \
             FROM project p WHERE p.id = $2 \
             ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id \
                 WHERE direct_upload.project_id = EXCLUDED.project_id \
                   AND direct_upload.token_sha256 = EXCLUDED.token_sha256 \
             RETURNING created_at, expires_at, (xmax = 0) AS inserted",
            &[
                &direct.direct_upload_id.0,
                &direct.project_id.0,
                &direct.token_sha256,
                &direct.title,
                &direct.description,
                &direct.cors_origin,
                &timeout_secs,
                &direct.playback_policy.as_str(),
            ],
        )
        .await
        .context("failed to insert direct upload")?;
    match inserted {
        Some(row) => {
            if row.try_get::<_, bool>(2)? {
                recorder
                    .direct_upload_event(
                        client,
                        direct.project_id,
                        direct.direct_upload_id,
                        EventType::DirectUploadCreated,
                    )
                    .await?;
            }
            Ok(Ok((row.try_get(0)?, row.try_get(1)?)))
        }
        None => Ok(Err(Reject::new(
            RejectCode::ProjectNotFound,
            format!("project {} does not exist", direct.project_id),
        ))),
    }
}

/// What the new video of a direct upload gets.
pub struct Claimed {
    pub title: Option<String>,
    pub description: String,
    pub playback_policy: PlaybackPolicy,
}

/// Locks a waiting, unexpired direct upload of the project for the upload being created in
/// this transaction; [`record_claim`] must follow in it. Anything else is
/// `upload_url_expired`: used, timed out or cancelled (an unknown one never gets this far,
/// the gateway found its token).
pub async fn lock_waiting(
    client: &impl GenericClient,
    project_id: ProjectId,
    direct_upload_id: DirectUploadId,
) -> anyhow::Result<Result<Claimed, Reject>> {
    let row = client
        .query_opt(
            "SELECT title, description, playback_policy FROM direct_upload \
             WHERE id = $1 AND project_id = $2 AND status = 'waiting' AND expires_at > now() \
             FOR UPDATE",
            &[&direct_upload_id.0, &project_id.0],
        )
        .await
        .context("failed to lock direct upload")?;
    match row {
        Some(row) => Ok(Ok(Claimed {
            title: row.try_get(0)?,
            description: row.try_get(1)?,
            playback_policy: row
                .try_get::<_, &str>(2)?
                .parse()
                .context("unexpected stored playback policy")?,
        })),
        None => Ok(Err(expired(direct_upload_id))),
    }
}

/// The upload a locked direct upload created.
pub struct Claim {
    pub direct_upload_id: DirectUploadId,
    pub video_id: VideoId,
    pub session_id: SessionId,
}

/// Marks the locked direct upload as having created its video and upload (made with the
/// direct upload's title and description), with its event.
pub async fn record_claim(
    client: &impl GenericClient,
    project_id: ProjectId,
    claim: Claim,
    recorder: &Recorder,
) -> anyhow::Result<Result<(), Reject>> {
    let Claim {
        direct_upload_id,
        video_id,
        session_id,
    } = claim;
    let updated = client
        .execute(
            "UPDATE direct_upload SET status = 'asset_created', video_id = $2, upload_id = $3, \
                                      claimed_at = now() \
             WHERE id = $1 AND status = 'waiting' AND expires_at > now()",
            &[&direct_upload_id.0, &video_id.0, &session_id.0],
        )
        .await
        .context("failed to claim direct upload")?;
    if updated == 0 {
        return Ok(Err(expired(direct_upload_id)));
    }
    recorder
        .direct_upload_event(
            client,
            project_id,
            direct_upload_id,
            EventType::DirectUploadAssetCreated,
        )
        .await?;
    Ok(Ok(()))
}

/// Cancels a waiting direct upload of the project (one cancelled already stays so, one timed
/// out is cancelled too); one that created its upload cannot be.
pub async fn cancel(
    client: &impl GenericClient,
    project_id: ProjectId,
    direct_upload_id: DirectUploadId,
    recorder: &Recorder,
) -> anyhow::Result<Result<(), Reject>> {
    let row = client
        .query_opt(
            "WITH found AS ( \
                 SELECT id, status FROM direct_upload WHERE id = $1 AND project_id = $2 \
                 FOR UPDATE \
             ), cancelled AS ( \
                 UPDATE direct_upload d SET status = 'cancelled', cancelled_at = now() \
                 FROM found WHERE d.id = found.id AND found.status = 'waiting' \
             ) \
             SELECT status FROM found",
            &[&direct_upload_id.0, &project_id.0],
        )
        .await
        .context("failed to cancel direct upload")?;
    let Some(row) = row else {
        return Ok(Err(Reject::new(
            RejectCode::DirectUploadNotFound,
            format!("direct upload {direct_upload_id} does not exist"),
        )));
    };
    let status: String = row.try_get(0)?;
    if status == "asset_created" {
        return Ok(Err(Reject::new(
            RejectCode::DirectUploadFinished,
            format!("direct upload {direct_upload_id} created its upload already"),
        )));
    }
    if status == "waiting" {
        recorder
            .direct_upload_event(
                client,
                project_id,
                direct_upload_id,
                EventType::DirectUploadCancelled,
            )
            .await?;
    }
    Ok(Ok(()))
}

fn expired(direct_upload_id: DirectUploadId) -> Reject {
    Reject::new(
        RejectCode::UploadUrlExpired,
        format!(
            "the URL of direct upload {direct_upload_id} was used already, timed out or was \
             cancelled"
        ),
    )
}
