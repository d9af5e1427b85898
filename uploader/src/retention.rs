//! Deleting what is older than a retention, a batch at a time: old events, finished webhook
//! deliveries.

use deadpool_postgres::GenericClient;

/// Runs a retention `delete`, whose `$1` is the retention in seconds and `$2` the batch.
pub async fn delete_older(
    client: &impl GenericClient,
    delete: &str,
    retention_secs: u64,
    batch: i64,
) -> anyhow::Result<u64> {
    let retention = retention_secs as f64;
    Ok(client.execute(delete, &[&retention, &batch]).await?)
}
