//! The progress queue: fflow says how far an encode is; the flow shows it. Reports are
//! advisory: one that cannot be applied is dropped, a late one changes nothing.

use deadpool_postgres::Pool;
use lapin::Channel;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vod_contracts::outcome::EncodeProgress;
use vod_infra::consume::{consume_json, Settle, Subscription};

use crate::transitions;

pub async fn run(
    channel: Channel,
    queue: String,
    consumer_tag: String,
    pg: Pool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let subscription = Subscription {
        queue,
        consumer_tag,
        what: "progress",
    };
    consume_json(
        &channel,
        &subscription,
        &shutdown,
        |progress: EncodeProgress| {
            let span = tracing::debug_span!(
                "progress",
                video_id = %progress.video_id,
                flow_id = %progress.flow_id,
                session_id = %progress.session_id,
            );
            let pg = &pg;
            async move {
                if let Err(error) = apply(&progress, pg).await {
                    tracing::warn!(
                        flow_id = %progress.flow_id,
                        error = %format!("{error:#}"),
                        "progress report dropped"
                    );
                }
                Settle::Ack
            }
            .instrument(span)
        },
    )
    .await
}

async fn apply(progress: &EncodeProgress, pg: &Pool) -> anyhow::Result<()> {
    let client = pg.get().await?;
    let applied = transitions::record_progress(
        &client,
        progress.flow_id,
        progress.started,
        progress.percent,
    )
    .await?;
    tracing::debug!(
        flow_id = %progress.flow_id,
        percent = progress.percent,
        applied,
        "progress report"
    );
    Ok(())
}
