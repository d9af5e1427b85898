//! An isolated world per test on the real PostgreSQL and RabbitMQ: a fresh migrated database,
//! a unique queue prefix, a gateway on port 0, and a test double of the uploader.
#![allow(dead_code, unused_imports)]

pub mod uploader_double;

use std::time::Duration;

use gateway::{App, Config};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use vod_contracts::{DirectUploadId, FlowId, SessionId, VideoId};
use vod_infra::config::AmqpSettings;
use vod_infra::testsuite::TestWorld;

pub use uploader_double::UploaderDouble;

/// The isolated world of one gateway test: a migrated database, queue names of its own, and
/// a connection to the database for arranging and checking rows.
pub struct TestEnv {
    pub world: TestWorld,
    pub db: tokio_postgres::Client,
}

/// The key [`http`] sends: a read and write key of the project `default`, which
/// [`TestEnv::new`] stores in every test's database.
pub const TEST_KEY: &str =
    "vod_0192a0b0c0d07e0fa1b2c3d4e5f60718_testkeytestkeytestkeytestkeytestkeytestkeyA";

impl TestEnv {
    pub async fn new() -> Self {
        vod_infra::telemetry::init("warn");
        let world = TestWorld::new().await;
        let db = world.db().await;
        let (id, secret) = TEST_KEY
            .strip_prefix("vod_")
            .and_then(|rest| rest.split_once('_'))
            .expect("a key of the right form");
        let id = uuid::Uuid::parse_str(id).expect("a key id");
        db.execute(
            "INSERT INTO api_key (id, project_id, scopes, secret_sha256)
             VALUES ($1, '00000000-0000-7000-8000-000000000001', '{read,write}', sha256($2))",
            &[&id, &secret.as_bytes()],
        )
        .await
        .expect("insert the test key");
        Self { world, db }
    }

    pub fn config(&self) -> Config {
        let mut config = Config::for_tests(&self.world.postgres_url, &self.world.queue_prefix);
        config.postgres = self.world.postgres();
        config.amqp = self.world.amqp();
        config
    }

    pub fn amqp_settings(&self) -> AmqpSettings {
        self.world.amqp()
    }

    /// A video with one flow and its session, written directly as the uploader would have.
    /// A direct upload of the default project whose URL's token is `token` and which made
    /// the upload `upload_id` of the video `video_id`.
    #[allow(dead_code)]
    pub async fn insert_direct_upload(
        &self,
        token: &str,
        video_id: VideoId,
        upload_id: SessionId,
    ) -> DirectUploadId {
        let direct_upload_id = DirectUploadId::new();
        self.db
            .execute(
                "INSERT INTO direct_upload (id, project_id, token_sha256, status, expires_at, \
                                            video_id, upload_id, claimed_at) \
                 VALUES ($4, '00000000-0000-7000-8000-000000000001', \
                         sha256(convert_to($1, 'UTF8')), 'asset_created', now() + interval '1 hour', \
                         $2, $3, now())",
                &[&token, &video_id.0, &upload_id.0, &direct_upload_id.0],
            )
            .await
            .expect("insert direct upload");
        direct_upload_id
    }

    pub async fn insert_upload(
        &self,
        session_status: &str,
        uploaded_bytes: i64,
        total_bytes: i64,
        metadata: Option<&str>,
    ) -> (VideoId, SessionId) {
        let video_id = VideoId::new();
        let flow_id = FlowId::new();
        let session_id = SessionId::new();
        let flow_status = if session_status == "OPEN" {
            "UPLOADING"
        } else {
            "CANCELLED"
        };
        let closed_at = if session_status == "OPEN" {
            None
        } else {
            Some(chrono::Utc::now())
        };
        self.db
            .execute(
                "INSERT INTO video (project_id, id, title, status) VALUES ('00000000-0000-7000-8000-000000000001', $1, 'inserted', 'UPLOADING')",
                &[&video_id.0],
            )
            .await
            .expect("insert video");
        self.db.batch_execute("BEGIN").await.expect("begin");
        self.db
            .execute(
                "INSERT INTO flow (id, video_id, status, uploaded_bytes, total_bytes)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &flow_id.0,
                    &video_id.0,
                    &flow_status,
                    &uploaded_bytes,
                    &total_bytes,
                ],
            )
            .await
            .expect("insert flow");
        self.db
            .execute(
                "INSERT INTO upload_session (project_id, id, flow_id, status, metadata, closed_at)
                 VALUES ('00000000-0000-7000-8000-000000000001', $1, $2, $3, $4, $5)",
                &[
                    &session_id.0,
                    &flow_id.0,
                    &session_status,
                    &metadata,
                    &closed_at,
                ],
            )
            .await
            .expect("insert session");
        self.db.batch_execute("COMMIT").await.expect("commit");
        (video_id, session_id)
    }

    pub async fn uploaded_bytes(&self, session_id: SessionId) -> i64 {
        self.db
            .query_one(
                "SELECT f.uploaded_bytes FROM flow f JOIN upload_session s ON s.flow_id = f.id
                 WHERE s.id = $1",
                &[&session_id.0],
            )
            .await
            .expect("read offset")
            .get(0)
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(connection);
    client
}

/// A gateway serving in the background until dropped.
pub struct Gateway {
    pub base_url: String,
    shutdown: CancellationToken,
}

impl Gateway {
    pub async fn spawn(config: Config) -> Self {
        let app = App::build(config).await.expect("build gateway");
        let base_url = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self { base_url, shutdown }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A client sending [`TEST_KEY`].
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {TEST_KEY}")).expect("a header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The JSON error body of a response, checked to be one.
pub async fn error_body(response: reqwest::Response) -> vod_contracts::api::ErrorBody {
    response.json().await.expect("json error body")
}
