//! The PostgreSQL pool and the schema migrations.

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use crate::config::PostgresSettings;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Arbitrary but fixed key of the advisory lock held while migrating.
const MIGRATION_LOCK_KEY: i64 = 0x766f_645f_6d69_6772; // "vod_migr"

/// A pool with wait, create and recycle timeouts; connections are verified before reuse, so a
/// database restart does not hand out dead connections. Creating it does not connect.
pub fn pool(settings: &PostgresSettings) -> anyhow::Result<Pool> {
    let pg_config: tokio_postgres::Config = settings
        .url
        .expose_secret()
        .parse()
        .context("postgres url is not valid")?;
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    let timeout = Some(Duration::from_millis(settings.timeout_ms));
    Pool::builder(manager)
        .max_size(settings.max_connections)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: timeout,
            create: timeout,
            recycle: timeout,
        })
        .build()
        .context("failed to build the postgres pool")
}

/// Applies the migrations in `migrations/`. Replicas starting together serialize on an
/// advisory lock held on a dedicated connection, never a pooled one.
pub async fn migrate(settings: &PostgresSettings) -> anyhow::Result<()> {
    let (mut client, connection) = tokio_postgres::connect(settings.url.expose_secret(), NoTls)
        .await
        .context("failed to connect to postgres to migrate")?;
    let connection = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("failed to take the migration lock")?;
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .context("failed to apply migrations");
    // Closing the connection releases the lock even if unlocking fails.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    drop(client);
    let _ = connection.await;
    let report = report?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "migration applied"
        );
    }
    Ok(())
}

/// True when the database answers a trivial query within the pool's timeouts.
pub async fn is_reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
