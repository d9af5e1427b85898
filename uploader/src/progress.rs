//! The progress queue: fflow says how far an encode is; the flow shows it. Reports are
//! advisory: one that cannot be applied is dropped, a late one changes nothing.

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vod_contracts::outcome::EncodeProgress;

use crate::transitions;

pub async fn run(
    channel: Channel,
    queue: String,
    consumer_tag: String,
    pg: Pool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = consumer.next() => next,
        };
        match delivery {
            Some(Ok(delivery)) => handle(delivery, &pg).await,
            Some(Err(error)) => tracing::warn!(error = %error, "progress consumer interrupted"),
            None => anyhow::bail!("the broker closed the progress consumer"),
        }
    }
    Ok(())
}

async fn handle(delivery: Delivery, pg: &Pool) {
    let progress: EncodeProgress = match serde_json::from_slice(&delivery.data) {
        Ok(progress) => progress,
        Err(error) => {
            tracing::error!(error = %error, "progress report is not valid, dropping it");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let span = tracing::debug_span!(
        "progress",
        video_id = %progress.video_id,
        flow_id = %progress.flow_id,
        session_id = %progress.session_id,
    );
    async {
        if let Err(error) = apply(&progress, pg).await {
            tracing::warn!(
                flow_id = %progress.flow_id,
                error = %format!("{error:#}"),
                "progress report dropped"
            );
        }
    }
    .instrument(span)
    .await;
    let _ = delivery.ack(BasicAckOptions::default()).await;
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
