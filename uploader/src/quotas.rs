//! A project's quotas, checked where an upload is created, and its overrides.
//!
//! The check runs in the transaction that creates the upload, with the project row locked
//! (`FOR NO KEY UPDATE`): two replicas creating uploads of one project at once take turns, so
//! both cannot pass on the same last free place. The lock is not one a foreign key check
//! waits for, so rows naming the project (a video made meanwhile) are not held up. Nothing already accepted is ever refused here: a
//! chunk of an existing upload is not a creation.

use anyhow::Context;
use deadpool_postgres::GenericClient;
use vod_contracts::access::{QuotaOverrides, Quotas};
use vod_contracts::commands::{Reject, RejectCode};
use vod_contracts::ProjectId;

use crate::config::QuotaSettings;

/// Which quotas a creation is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creation {
    /// A new upload that takes bytes (a single or partial upload): every quota, and it counts
    /// towards the uploads of the hour.
    Open,
    /// A final upload, made of partial uploads that were accepted already: only the stored
    /// bytes; it opens nothing and is not counted in the hour.
    Final,
}

/// What the check reads of the project, with the row locked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Standing {
    pub quotas: Quotas,
    pub stored_bytes: u64,
    pub open_uploads: u64,
    pub created_this_hour: u64,
    /// Seconds until the current hour's window ends.
    pub secs_to_next_window: u64,
}

/// Why the creation may not happen, if it may not; pure, so that every case is tested apart.
pub fn refusal(
    standing: &Standing,
    creation: Creation,
    settings: &QuotaSettings,
) -> Option<Reject> {
    let quotas = standing.quotas;
    if standing.stored_bytes >= quotas.max_stored_bytes {
        return Some(Reject::new(
            RejectCode::QuotaExceeded,
            format!(
                "the project stores {} bytes, its quota is {} bytes; delete videos or ask for more",
                standing.stored_bytes, quotas.max_stored_bytes
            ),
        ));
    }
    if creation == Creation::Final {
        return None;
    }
    if standing.open_uploads >= quotas.max_open_uploads {
        return Some(
            Reject::new(
                RejectCode::TooManyOpenUploads,
                format!(
                    "the project has {} open uploads, its quota is {}; finish or terminate one",
                    standing.open_uploads, quotas.max_open_uploads
                ),
            )
            .retry_after(settings.open_uploads_retry_after_secs),
        );
    }
    if standing.created_this_hour >= quotas.max_uploads_per_hour {
        return Some(
            Reject::new(
                RejectCode::RateLimited,
                format!(
                    "the project created {} uploads this hour, its quota is {} per hour",
                    standing.created_this_hour, quotas.max_uploads_per_hour
                ),
            )
            .retry_after(standing.secs_to_next_window.max(1)),
        );
    }
    None
}

/// Locks the project's row until `client`'s transaction ends, checks its quotas, and counts
/// an `Open` creation in the hour. The caller creates the upload in the same transaction.
pub async fn check_creation(
    client: &impl GenericClient,
    project_id: ProjectId,
    creation: Creation,
    settings: &QuotaSettings,
) -> anyhow::Result<Result<(), Reject>> {
    let Some(standing) = lock_standing(client, project_id, settings).await? else {
        return Ok(Err(Reject::new(
            RejectCode::ProjectNotFound,
            format!("project {project_id} does not exist"),
        )));
    };
    if let Some(reject) = refusal(&standing, creation, settings) {
        tracing::info!(%project_id, code = ?reject.code, "upload refused by a quota");
        return Ok(Err(reject));
    }
    if creation == Creation::Open {
        count_creation(client, project_id).await?;
    }
    Ok(Ok(()))
}

async fn lock_standing(
    client: &impl GenericClient,
    project_id: ProjectId,
    settings: &QuotaSettings,
) -> anyhow::Result<Option<Standing>> {
    let Some(row) = client
        .query_opt(
            "SELECT max_stored_bytes, max_open_uploads, max_uploads_per_hour \
             FROM project WHERE id = $1 FOR NO KEY UPDATE",
            &[&project_id.0],
        )
        .await
        .context("failed to lock the project")?
    else {
        return Ok(None);
    };
    let overrides = QuotaOverrides {
        max_stored_bytes: Some(from_bigint(row.try_get(0)?)),
        max_open_uploads: Some(from_bigint(row.try_get(1)?)),
        max_uploads_per_hour: Some(from_bigint(row.try_get(2)?)),
    };
    let quotas = settings.defaults().overridden_by(&overrides);
    let row = client
        .query_one(
            "SELECT u.stored_bytes, \
                    (SELECT count(*) FROM upload_session s \
                     WHERE s.project_id = $1 AND s.status = 'OPEN'), \
                    COALESCE((SELECT c.count::bigint FROM upload_creation c \
                              WHERE c.project_id = $1 \
                                AND c.window_start = date_trunc('hour', now())), 0), \
                    ceil(extract(epoch FROM date_trunc('hour', now()) + interval '1 hour' \
                                           - now()))::bigint \
             FROM project_usage u WHERE u.project_id = $1",
            &[&project_id.0],
        )
        .await
        .context("failed to read the project's usage")?;
    let count = |index: usize| -> anyhow::Result<u64> {
        let value: i64 = row.try_get(index)?;
        Ok(u64::try_from(value).unwrap_or_default())
    };
    Ok(Some(Standing {
        quotas,
        stored_bytes: count(0)?,
        open_uploads: count(1)?,
        created_this_hour: count(2)?,
        secs_to_next_window: count(3)?,
    }))
}

/// Counts a creation in the current hour's window, and forgets the project's older windows.
async fn count_creation(client: &impl GenericClient, project_id: ProjectId) -> anyhow::Result<()> {
    client
        .execute(
            "DELETE FROM upload_creation \
             WHERE project_id = $1 AND window_start < date_trunc('hour', now())",
            &[&project_id.0],
        )
        .await
        .context("failed to forget past upload windows")?;
    client
        .execute(
            "INSERT INTO upload_creation (project_id, window_start, count) \
             VALUES ($1, date_trunc('hour', now()), 1) \
             ON CONFLICT (project_id, window_start) \
             DO UPDATE SET count = upload_creation.count + 1",
            &[&project_id.0],
        )
        .await
        .context("failed to count the upload")?;
    Ok(())
}

/// Changes a project's overrides (fields left `None` keep theirs) and returns them all.
pub async fn set_overrides(
    client: &impl GenericClient,
    project_id: ProjectId,
    change: &QuotaOverrides,
) -> anyhow::Result<Result<QuotaOverrides, Reject>> {
    let column = |value: Option<Option<u64>>| -> anyhow::Result<(bool, Option<i64>)> {
        match value {
            None => Ok((false, None)),
            Some(value) => Ok((true, value.map(i64::try_from).transpose()?)),
        }
    };
    let (set_stored, stored) = column(change.max_stored_bytes)?;
    let (set_open, open) = column(change.max_open_uploads)?;
    let (set_hourly, hourly) = column(change.max_uploads_per_hour)?;
    let row = client
        .query_opt(
            "UPDATE project SET \
                 max_stored_bytes = CASE WHEN $2 THEN $3 ELSE max_stored_bytes END, \
                 max_open_uploads = CASE WHEN $4 THEN $5 ELSE max_open_uploads END, \
                 max_uploads_per_hour = CASE WHEN $6 THEN $7 ELSE max_uploads_per_hour END \
             WHERE id = $1 \
             RETURNING max_stored_bytes, max_open_uploads, max_uploads_per_hour",
            &[
                &project_id.0,
                &set_stored,
                &stored,
                &set_open,
                &open,
                &set_hourly,
                &hourly,
            ],
        )
        .await
        .context("failed to change the project's quotas")?;
    let Some(row) = row else {
        return Ok(Err(Reject::new(
            RejectCode::ProjectNotFound,
            format!("project {project_id} does not exist"),
        )));
    };
    Ok(Ok(QuotaOverrides {
        max_stored_bytes: Some(from_bigint(row.try_get(0)?)),
        max_open_uploads: Some(from_bigint(row.try_get(1)?)),
        max_uploads_per_hour: Some(from_bigint(row.try_get(2)?)),
    }))
}

/// Records the configured defaults where readers of the quotas find them.
pub async fn record_defaults(
    client: &impl GenericClient,
    settings: &QuotaSettings,
) -> anyhow::Result<()> {
    let bigint = |value: u64| i64::try_from(value).context("a quota is over 2^63");
    client
        .execute(
            "INSERT INTO quota_default \
                 (singleton, max_stored_bytes, max_open_uploads, max_uploads_per_hour) \
             VALUES (true, $1, $2, $3) \
             ON CONFLICT (singleton) DO UPDATE SET max_stored_bytes = EXCLUDED.max_stored_bytes, \
                 max_open_uploads = EXCLUDED.max_open_uploads, \
                 max_uploads_per_hour = EXCLUDED.max_uploads_per_hour",
            &[
                &bigint(settings.max_stored_bytes)?,
                &bigint(settings.max_open_uploads)?,
                &bigint(settings.max_uploads_per_hour)?,
            ],
        )
        .await
        .context("failed to record the default quotas")?;
    Ok(())
}

/// A stored override; the schema keeps it non-negative.
fn from_bigint(value: Option<i64>) -> Option<u64> {
    value.map(|value| u64::try_from(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing() -> Standing {
        Standing {
            quotas: Quotas {
                max_stored_bytes: 100,
                max_open_uploads: 2,
                max_uploads_per_hour: 5,
            },
            stored_bytes: 0,
            open_uploads: 0,
            created_this_hour: 0,
            secs_to_next_window: 1_200,
        }
    }

    fn code(standing: Standing, creation: Creation) -> Option<(RejectCode, Option<u64>)> {
        refusal(&standing, creation, &QuotaSettings::default())
            .map(|reject| (reject.code, reject.retry_after_secs))
    }

    #[test]
    fn under_every_quota_an_upload_is_created() {
        assert_eq!(code(standing(), Creation::Open), None);
        let busy = Standing {
            stored_bytes: 99,
            open_uploads: 1,
            created_this_hour: 4,
            ..standing()
        };
        assert_eq!(code(busy, Creation::Open), None);
    }

    #[test]
    fn each_quota_reached_refuses_with_its_code_and_wait() {
        let full = Standing {
            stored_bytes: 100,
            ..standing()
        };
        assert_eq!(
            code(full, Creation::Open),
            Some((RejectCode::QuotaExceeded, None))
        );
        let open = Standing {
            open_uploads: 2,
            ..standing()
        };
        assert_eq!(
            code(open, Creation::Open),
            Some((RejectCode::TooManyOpenUploads, Some(60)))
        );
        let hourly = Standing {
            created_this_hour: 5,
            ..standing()
        };
        assert_eq!(
            code(hourly, Creation::Open),
            Some((RejectCode::RateLimited, Some(1_200)))
        );
    }

    #[test]
    fn a_final_upload_is_refused_only_for_stored_bytes() {
        let busy = Standing {
            open_uploads: 2,
            created_this_hour: 5,
            ..standing()
        };
        assert_eq!(code(busy, Creation::Final), None);
        let full = Standing {
            stored_bytes: 100,
            ..standing()
        };
        assert_eq!(
            code(full, Creation::Final),
            Some((RejectCode::QuotaExceeded, None))
        );
    }

    #[test]
    fn an_override_replaces_only_its_own_default() {
        let defaults = QuotaSettings::default().defaults();
        let overrides = QuotaOverrides {
            max_open_uploads: Some(Some(3)),
            max_stored_bytes: Some(None),
            max_uploads_per_hour: None,
        };
        let quotas = defaults.overridden_by(&overrides);
        assert_eq!(quotas.max_open_uploads, 3);
        assert_eq!(quotas.max_stored_bytes, defaults.max_stored_bytes);
        assert_eq!(quotas.max_uploads_per_hour, defaults.max_uploads_per_hour);
    }
}
