//! What the gateway reads of events (the uploader writes them, see `uploader/src/events.rs`).
//!
//! A page is read in commit order, never skipping an event that commits late: events are
//! ordered by (`xact`, `seq`), the writing transaction's id and then the insertion, and a read
//! shows only those written by transactions below its snapshot's `xmin`, which have all
//! ended. A transaction still running (it may hold a lower `seq` than events already
//! committed) holds the page back at its own events until it ends, so what was shown is
//! always a prefix of what will ever be shown.

use deadpool_postgres::Pool;
use vod_contracts::event::{EventType, EventView};
use vod_contracts::ProjectId;
use vod_read_model::{event_view, EVENT_COLUMNS};

use crate::read_model::ReadError;

/// A page of a project's events after `after` (from the oldest without it), in order, of
/// `types` only (of every type when empty). `None` when `after` is not one of the project's
/// events (unknown, another project's, or past the retention).
pub async fn list(
    pool: &Pool,
    project_id: ProjectId,
    after: Option<&str>,
    types: &[EventType],
    limit: i64,
) -> Result<Option<Vec<EventView>>, ReadError> {
    let client = pool.get().await?;
    if let Some(after) = after {
        let known = client
            .query_opt(
                "SELECT 1 FROM event WHERE id = $1 AND project_id = $2",
                &[&after, &project_id.0],
            )
            .await?;
        if known.is_none() {
            return Ok(None);
        }
    }
    let types: Vec<&str> = types.iter().map(|event_type| event_type.as_str()).collect();
    let rows = client
        .query(
            &format!(
                "WITH cursor AS ( \
                     SELECT xact, seq FROM event WHERE id = $2 AND project_id = $1) \
                 SELECT {EVENT_COLUMNS} FROM event \
                 WHERE project_id = $1 \
                   AND xact < pg_snapshot_xmin(pg_current_snapshot()) \
                   AND ($2::text IS NULL OR (xact, seq) > (SELECT xact, seq FROM cursor)) \
                   AND (cardinality($3::text[]) = 0 OR type = ANY($3)) \
                 ORDER BY xact, seq LIMIT $4"
            ),
            &[&project_id.0, &after, &types, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| event_view(row).map_err(ReadError::from))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// One of the project's events.
pub async fn find(
    pool: &Pool,
    project_id: ProjectId,
    event_id: &str,
) -> Result<Option<EventView>, ReadError> {
    let client = pool.get().await?;
    Ok(vod_read_model::find_event(&client, project_id, event_id).await?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vod_infra::testsuite::TestWorld;

    use super::*;

    const INSERT: &str = "INSERT INTO event (id, project_id, type, object_type, object_id, data) \
                          VALUES ($1, $2, 'video.updated', 'video', gen_random_uuid(), '{}')";

    fn event_id(n: u8) -> String {
        format!("evt_{:032x}", n)
    }

    async fn ids(pool: &Pool, after: Option<&str>) -> Vec<String> {
        list(pool, ProjectId::DEFAULT, after, &[], 100)
            .await
            .expect("a page")
            .expect("a known cursor")
            .into_iter()
            .map(|event| event.id)
            .collect()
    }

    #[tokio::test]
    async fn an_event_committed_late_is_never_skipped() {
        let world = TestWorld::new().await;
        let pool = vod_infra::postgres::pool(&world.postgres()).expect("a pool");
        let early = world.db().await;
        let late = world.db().await;
        // The first transaction takes the lower seq and commits last.
        early.batch_execute("BEGIN").await.expect("begin");
        early
            .execute(INSERT, &[&event_id(1), &ProjectId::DEFAULT.0])
            .await
            .expect("first event");
        late.execute(INSERT, &[&event_id(2), &ProjectId::DEFAULT.0])
            .await
            .expect("second event, committed at once");

        assert!(
            ids(&pool, None).await.is_empty(),
            "nothing is shown past a transaction that is still running"
        );

        early.batch_execute("COMMIT").await.expect("commit");
        // Other tests' transactions on the same server may hold the horizon back a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let shown = loop {
            let shown = ids(&pool, None).await;
            if shown.len() == 2 || tokio::time::Instant::now() > deadline {
                break shown;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(shown, vec![event_id(1), event_id(2)], "commit order");
        assert_eq!(ids(&pool, Some(&event_id(1))).await, vec![event_id(2)]);
        assert!(ids(&pool, Some(&event_id(2))).await.is_empty());
        let unknown = list(&pool, ProjectId::DEFAULT, Some(&event_id(3)), &[], 10)
            .await
            .expect("a page");
        assert!(unknown.is_none(), "an unknown cursor is told apart");
    }
}
