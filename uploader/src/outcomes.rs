//! The outcomes queue: fflow says how an encode ended; the flow and its video follow. The
//! outcome of an encode of a deleted video ends the video: what the encode published is on
//! holder by then, and goes with the rows (`crate::deletion`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use lapin::Channel;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vod_contracts::outcome::{EncodeOutcome, EncodeResult};
use vod_infra::consume::{consume_json, Settle, Subscription};

use crate::deletion::Purger;
use crate::events::Recorder;
use crate::fflow_client::FflowClient;
use crate::routing::Routing;
use crate::{store, transitions};

/// What applying an outcome needs.
pub struct Applying {
    pub pg: Pool,
    pub routing: Routing,
    pub recorder: Recorder,
    /// How long an outcome that could not be applied waits before it goes back to its queue.
    pub retry_after: Duration,
    pub fflow: Arc<FflowClient>,
    /// How long the removal of a deleted video's output may take before it is left to the
    /// scheduler.
    pub deleted_video_remove_timeout: Duration,
}

pub async fn run(
    channel: Channel,
    queue: String,
    consumer_tag: String,
    applying: Applying,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let subscription = Subscription {
        queue,
        consumer_tag,
        what: "outcomes",
    };
    consume_json(
        &channel,
        &subscription,
        &shutdown,
        |outcome: EncodeOutcome| {
            let span = tracing::info_span!(
                "outcome",
                video_id = %outcome.video_id,
                flow_id = %outcome.flow_id,
                session_id = %outcome.session_id,
            );
            handle_outcome(outcome, &applying).instrument(span)
        },
    )
    .await
}

async fn handle_outcome(outcome: EncodeOutcome, applying: &Applying) -> Settle {
    let retry_after = applying.retry_after;
    match apply(&outcome, &applying.pg, &applying.recorder).await {
        Ok(changed) => {
            if changed {
                match &outcome.result {
                    EncodeResult::Ready(facts) => tracing::info!(
                        video_id = %outcome.video_id, flow_id = %outcome.flow_id,
                        duration_seconds = facts.duration_seconds, "flow ready"
                    ),
                    EncodeResult::Failed { reason } => tracing::warn!(
                        video_id = %outcome.video_id, flow_id = %outcome.flow_id,
                        reason = %reason, "flow failed"
                    ),
                }
            }
            applying.routing.forget(outcome.session_id).await;
            purge_if_deleted(&outcome, applying).await;
            Settle::Ack
        }
        Err(error) => {
            tracing::error!(flow_id = %outcome.flow_id, error = ?error, retry_in_ms = retry_after.as_millis(), "outcome not applied, retrying later");
            Settle::RequeueAfter(retry_after)
        }
    }
}

/// Ends the video if it was deleted while this encode ran; best effort, the scheduler takes
/// what is left.
async fn purge_if_deleted(outcome: &EncodeOutcome, applying: &Applying) {
    let purger = Purger {
        pg: &applying.pg,
        fflow: &applying.fflow,
        remove_timeout: applying.deleted_video_remove_timeout,
    };
    if let Err(error) = purger.purge(outcome.video_id).await {
        tracing::warn!(video_id = %outcome.video_id, error = ?error, "deleted video not purged, the scheduler will");
    }
}

async fn apply(outcome: &EncodeOutcome, pg: &Pool, recorder: &Recorder) -> anyhow::Result<bool> {
    let mut client = pg.get().await?;
    let tx = client.transaction().await?;
    if let Some(replica) = &outcome.replica_address {
        let recorded = store::recorded_fflow_address(&tx, outcome.session_id).await?;
        if recorded.as_deref() != Some(replica.as_str()) {
            tracing::warn!(
                flow_id = %outcome.flow_id, session_id = %outcome.session_id,
                replica = %replica, recorded = ?recorded,
                "outcome from a replica the upload was moved away from, ignored"
            );
            return Ok(false);
        }
    }
    let changed = transitions::apply_outcome(
        &tx,
        outcome.flow_id,
        outcome.video_id,
        &outcome.result,
        outcome.started,
        outcome.source_sha256.as_deref(),
        recorder,
    )
    .await?;
    tx.commit().await?;
    Ok(changed)
}
