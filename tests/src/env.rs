use secrecy::SecretString;
use tokio_postgres::NoTls;
use vod_infra::config::{AmqpSettings, PostgresSettings, RedisSettings};

/// Where the tests find the real services; each can be moved with an environment variable.
fn admin_postgres_url() -> String {
    std::env::var("VOD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn amqp_url() -> String {
    std::env::var("VOD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn redis_url() -> String {
    std::env::var("VOD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// One test's isolated world. Dropping it removes the database, the queues and the
/// directories.
pub struct TestEnv {
    pub id: String,
    pub database_name: String,
    pub postgres_url: String,
    pub queue_prefix: String,
    pub redis_prefix: String,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database_name = format!("vod_test_{id}");
        let admin = admin_postgres_url();
        let (client, connection) = tokio_postgres::connect(&admin, NoTls)
            .await
            .expect("postgres is reachable for tests");
        tokio::spawn(connection);
        client
            .execute(&format!("CREATE DATABASE \"{database_name}\""), &[])
            .await
            .expect("test database is created");
        let postgres_url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{database_name}"),
            None => panic!("VOD_TEST_POSTGRES_URL has no database part"),
        };
        Self {
            queue_prefix: format!("test-{id}"),
            redis_prefix: format!("test-{id}"),
            postgres_url,
            database_name,
            dir: tempfile::tempdir().expect("temp dir"),
            id,
        }
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
            prefetch: 2,
        }
    }

    pub fn redis(&self) -> RedisSettings {
        RedisSettings {
            url: SecretString::from(redis_url()),
            key_prefix: self.redis_prefix.clone(),
            ..RedisSettings::default()
        }
    }

    /// A client of this test's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.postgres_url, NoTls)
            .await
            .expect("test database is reachable");
        tokio::spawn(connection);
        client
    }

    /// A connection to this test's Redis, for tests that inspect or disturb routing.
    pub async fn redis_connection(&self) -> deadpool_redis::Connection {
        let pool = vod_infra::redis::pool(&self.redis()).expect("redis pool");
        pool.get().await.expect("redis is reachable")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let database_name = self.database_name.clone();
        let queues = vod_contracts::queues::QueueNames::with_prefix(&self.queue_prefix);
        // Drop runs outside any runtime we may block on: clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin_postgres_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .execute(
                            &format!("DROP DATABASE IF EXISTS \"{database_name}\" WITH (FORCE)"),
                            &[],
                        )
                        .await;
                }
                if let Ok(connection) =
                    lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                        .await
                {
                    if let Ok(channel) = connection.create_channel().await {
                        for queue in [queues.commands, queues.outcomes] {
                            let _ = channel
                                .queue_delete(queue.as_str().into(), Default::default())
                                .await;
                        }
                    }
                    let _ = connection.close(200, "test over".into()).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
