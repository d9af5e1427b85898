//! Isolated worlds for tests on the real services (enabled by the `testsuite` feature).
//!
//! A [`TestWorld`] is a freshly created and migrated PostgreSQL database, a queue prefix and a
//! Redis key prefix of its own, so tests run in parallel without seeing each other. Dropping it
//! removes the database and the queues. The servers are found through `VOD_TEST_POSTGRES_URL`
//! (an administrative connection), `VOD_TEST_AMQP_URL` and `VOD_TEST_REDIS_URL`, with the
//! local defaults `./dev` also uses.

mod fault_proxy;
mod s3_server;

pub use fault_proxy::FaultProxy;
pub use s3_server::{S3Server, S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY};

use secrecy::SecretString;
use tokio_postgres::NoTls;
use vod_contracts::queues::QueueNames;

use crate::config::{AmqpSettings, PostgresSettings, RedisSettings};

pub fn admin_postgres_url() -> String {
    std::env::var("VOD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn amqp_url() -> String {
    std::env::var("VOD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("VOD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// One test's database, queues and Redis keys.
pub struct TestWorld {
    /// Unique per world; usable in names.
    pub id: String,
    pub database_name: String,
    pub postgres_url: String,
    pub queue_prefix: String,
    pub redis_prefix: String,
}

impl TestWorld {
    /// Creates and migrates a database of its own. Panics when the services are unreachable:
    /// a test cannot run without them.
    pub async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database_name = format!("vod_test_{id}");
        let admin_url = admin_postgres_url();
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database_name}\""))
            .await
            .expect("the test database is created");
        let postgres_url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database_name}"),
            None => panic!("VOD_TEST_POSTGRES_URL names no database"),
        };
        let world = Self {
            queue_prefix: format!("test-{id}"),
            redis_prefix: format!("test-{id}"),
            id,
            database_name,
            postgres_url,
        };
        crate::postgres::migrate(&world.postgres())
            .await
            .expect("the test database is migrated");
        world
    }

    pub fn postgres(&self) -> PostgresSettings {
        PostgresSettings {
            url: SecretString::from(self.postgres_url.clone()),
            max_connections: 8,
            timeout_ms: 5_000,
        }
    }

    pub fn amqp(&self) -> AmqpSettings {
        AmqpSettings {
            url: SecretString::from(amqp_url()),
            queue_prefix: self.queue_prefix.clone(),
            ..AmqpSettings::default()
        }
    }

    pub fn redis(&self) -> RedisSettings {
        RedisSettings {
            url: SecretString::from(redis_url()),
            key_prefix: self.redis_prefix.clone(),
            ..RedisSettings::default()
        }
    }

    pub fn queues(&self) -> QueueNames {
        QueueNames::with_prefix(&self.queue_prefix)
    }

    /// A client of this world's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.postgres_url).await
    }
}

impl Drop for TestWorld {
    /// Drops the database and the queues, also when the test failed.
    fn drop(&mut self) {
        let database_name = self.database_name.clone();
        let queues = self.queues();
        // Drop may run inside a runtime that must not block: clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((admin, connection)) =
                    tokio_postgres::connect(&admin_postgres_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS \"{database_name}\" WITH (FORCE)"
                        ))
                        .await;
                }
                let properties = lapin::ConnectionProperties::default();
                if let Ok(connection) = lapin::Connection::connect(&amqp_url(), properties).await {
                    if let Ok(channel) = connection.create_channel().await {
                        for queue in queues.all() {
                            let _ = channel.queue_delete(queue.into(), Default::default()).await;
                        }
                    }
                    let _ = connection.close(200, "test over".into()).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("postgres is reachable for tests");
    tokio::spawn(connection);
    client
}
