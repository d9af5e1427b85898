//! Reads of upload state, and the one write that is not a status change: recording which fflow
//! replica owns a session.

use anyhow::Context;
use deadpool_postgres::GenericClient;
use vod_contracts::{FlowId, FlowStatus, SessionId, SessionStatus, VideoId};

/// An upload session with the flow it feeds.
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub session_id: SessionId,
    pub status: SessionStatus,
    pub flow_id: FlowId,
    pub video_id: VideoId,
    pub flow_status: FlowStatus,
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
    pub fflow_address: Option<String>,
}

const SESSION_COLUMNS: &str = "s.id, s.status, f.id, f.video_id, f.status, f.uploaded_bytes, \
                               f.total_bytes, s.fflow_address";

fn session_from_row(row: &tokio_postgres::Row) -> anyhow::Result<SessionRow> {
    Ok(SessionRow {
        session_id: SessionId(row.try_get(0)?),
        status: row.try_get::<_, &str>(1)?.parse()?,
        flow_id: FlowId(row.try_get(2)?),
        video_id: VideoId(row.try_get(3)?),
        flow_status: row.try_get::<_, &str>(4)?.parse()?,
        uploaded_bytes: u64::try_from(row.try_get::<_, i64>(5)?)?,
        total_bytes: u64::try_from(row.try_get::<_, i64>(6)?)?,
        fflow_address: row.try_get(7)?,
    })
}

pub async fn load_session(
    client: &impl GenericClient,
    session_id: SessionId,
) -> anyhow::Result<Option<SessionRow>> {
    let query = format!(
        "SELECT {SESSION_COLUMNS} FROM upload_session s JOIN flow f ON f.id = s.flow_id \
         WHERE s.id = $1"
    );
    let row = client
        .query_opt(&query, &[&session_id.0])
        .await
        .context("failed to load upload session")?;
    row.as_ref().map(session_from_row).transpose()
}

/// Same as [`load_session`], locking the session row until the transaction ends.
pub async fn lock_session(
    client: &impl GenericClient,
    session_id: SessionId,
) -> anyhow::Result<Option<SessionRow>> {
    let query = format!(
        "SELECT {SESSION_COLUMNS} FROM upload_session s JOIN flow f ON f.id = s.flow_id \
         WHERE s.id = $1 FOR UPDATE OF s, f"
    );
    let row = client
        .query_opt(&query, &[&session_id.0])
        .await
        .context("failed to lock upload session")?;
    row.as_ref().map(session_from_row).transpose()
}

/// Records `address` as the owner of the session unless one is recorded already; returns the
/// address that is recorded afterwards (ours, or the one that won).
pub async fn record_fflow_address(
    client: &impl GenericClient,
    session_id: SessionId,
    address: &str,
) -> anyhow::Result<String> {
    let claimed = client
        .query_opt(
            "UPDATE upload_session SET fflow_address = $2 \
             WHERE id = $1 AND fflow_address IS NULL RETURNING fflow_address",
            &[&session_id.0, &address],
        )
        .await
        .context("failed to record the session's fflow replica")?;
    if claimed.is_some() {
        return Ok(address.to_owned());
    }
    // Another replica recorded one first; a new statement sees its commit.
    let row = client
        .query_one(
            "SELECT fflow_address FROM upload_session WHERE id = $1",
            &[&session_id.0],
        )
        .await
        .context("failed to read the session's fflow replica")?;
    let recorded: Option<String> = row.try_get(0)?;
    recorded.context("session has no fflow replica after recording one")
}

/// Open sessions whose last chunk is older than `ttl_secs`, at most `limit`, skipping rows
/// another transaction holds.
pub async fn lock_stale_sessions(
    client: &impl GenericClient,
    ttl_secs: u64,
    limit: i64,
) -> anyhow::Result<Vec<SessionRow>> {
    let query = format!(
        "SELECT {SESSION_COLUMNS} FROM upload_session s JOIN flow f ON f.id = s.flow_id \
         WHERE s.status = 'OPEN' AND s.last_chunk_at < now() - make_interval(secs => $1) \
         ORDER BY s.last_chunk_at LIMIT $2 FOR UPDATE OF s, f SKIP LOCKED"
    );
    let ttl = ttl_secs as f64;
    let rows = client
        .query(&query, &[&ttl, &limit])
        .await
        .context("failed to find stale sessions")?;
    rows.iter().map(session_from_row).collect()
}
