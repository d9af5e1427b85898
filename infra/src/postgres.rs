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

pub use refinery::Migration;

/// refinery's history table.
const HISTORY_TABLE: &str = "refinery_schema_history";

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
    let migrations = embedded::migrations::runner().get_migrations().clone();
    let applied = apply_migrations(&mut client, &migrations, HISTORY_TABLE).await;
    // Closing the connection releases the lock even if unlocking fails.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    drop(client);
    let _ = connection.await;
    for (version, name) in applied? {
        tracing::info!(version, name = %name, "migration applied");
    }
    Ok(())
}

/// Applies `migrations` that `history_table` does not list yet, and returns their versions and
/// names. Migrations written on parallel branches may land in any order: one whose version is
/// below the newest applied one (a "late" migration, which refinery alone would refuse or
/// skip) is applied first, in its own transaction, and recorded the way refinery records its
/// own; then refinery applies the rest in order. Late migrations must not depend on the ones
/// they arrive after.
pub async fn apply_migrations(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
    history_table: &str,
) -> anyhow::Result<Vec<(i32, String)>> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {history_table} (version int4 PRIMARY KEY, \
             name varchar(255), applied_on varchar(255), checksum varchar(255))"
        ))
        .await
        .context("failed to create the migration history table")?;
    let applied: Vec<i32> = client
        .query(&format!("SELECT version FROM {history_table}"), &[])
        .await
        .context("failed to read the migration history")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let newest_applied = applied.iter().copied().max();
    let mut done = Vec::new();
    let mut late: Vec<&Migration> = migrations
        .iter()
        .filter(|migration| {
            !applied.contains(&migration.version())
                && newest_applied.is_some_and(|newest| migration.version() < newest)
        })
        .collect();
    late.sort_by_key(|migration| migration.version());
    for migration in late {
        let sql = migration.sql().unwrap_or_default();
        let transaction = client.transaction().await?;
        transaction
            .batch_execute(sql)
            .await
            .with_context(|| format!("failed to apply late migration {migration}"))?;
        transaction
            .execute(
                &format!(
                    "INSERT INTO {history_table} (version, name, applied_on, checksum) VALUES \
                     ($1, $2, to_char(now() AT TIME ZONE 'UTC', \
                     'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), $3)"
                ),
                &[
                    &migration.version(),
                    &migration.name(),
                    &migration.checksum().to_string(),
                ],
            )
            .await
            .with_context(|| format!("failed to record late migration {migration}"))?;
        transaction.commit().await?;
        done.push((migration.version(), migration.name().to_owned()));
    }
    let report = refinery::Runner::new(migrations)
        .set_migration_table_name(history_table)
        .run_async(client)
        .await
        .context("failed to apply migrations")?;
    done.extend(
        report
            .applied_migrations()
            .iter()
            .map(|migration| (migration.version(), migration.name().to_owned())),
    );
    Ok(done)
}

/// True when the database answers a trivial query within the pool's timeouts.
pub async fn is_reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
