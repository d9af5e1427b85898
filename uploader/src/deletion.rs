//! The end of a deleted video (`DELETE /v1/videos/{id}`, `transitions::mark_video_deleted`):
//! once nothing of it is in flight, fflow removes its directory on holder, then its rows go.
//! The delete command tries at once, the outcome of an encode that was running at the deletion
//! tries again when it has been applied (what that encode published is on holder by then), and
//! the scheduler's unused-video job takes whatever is left (holder away, an uploader stopped
//! in between).

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::Pool;
use vod_contracts::VideoId;

use crate::fflow_client::FflowClient;
use crate::{store, transitions};

/// How a purge went.
#[derive(Debug, PartialEq, Eq)]
pub enum Purged {
    /// The files and rows are gone.
    Done,
    /// Not now: the video is not deleted, an encode of it still runs, it is already gone, or
    /// another replica is purging it.
    NotNow,
    /// fflow could not remove the files; the rows stay for the scheduler.
    Kept,
}

/// What purging needs; the removal waits at most `remove_timeout`.
pub struct Purger<'a> {
    pub pg: &'a Pool,
    pub fflow: &'a FflowClient,
    pub remove_timeout: Duration,
}

impl Purger<'_> {
    /// Removes a deleted video's output from holder, then its rows, under the video's row
    /// lock, if nothing of it is in flight.
    pub async fn purge(&self, video_id: VideoId) -> anyhow::Result<Purged> {
        let mut client = self.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        if !store::lock_purgeable_video(&tx, video_id).await? {
            return Ok(Purged::NotNow);
        }
        // Files first: a video whose files could not be removed keeps its rows, so that the
        // scheduler finds it again.
        if let Err(error) = self.fflow.remove_video(video_id, self.remove_timeout).await {
            tracing::warn!(video_id = %video_id, error = %error, "deleted video's output not removed from holder now, the scheduler will");
            return Ok(Purged::Kept);
        }
        transitions::delete_video(&tx, video_id).await?;
        tx.commit()
            .await
            .context("failed to commit the deleted video")?;
        tracing::info!(video_id = %video_id, "deleted video removed from holder and the database");
        Ok(Purged::Done)
    }
}
