//! The gateway's database role, as `deploy/postgres/initdb/10-gateway-reader.sh` makes it in
//! compose: the gateway answers reads with it, and it can neither write nor change the schema,
//! also in tables the owner adds later.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vod_tests::{poll_until, TestEnv};

const PASSWORD: &str = "gateway-reader-test-password";

/// The parts of a `postgres://user[:password]@host:port/database` URL.
struct Server {
    user: String,
    password: Option<String>,
    host: String,
    port: String,
}

fn server_of(url: &str) -> Server {
    let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (credentials, rest) = rest.split_once('@').expect("a user in the URL");
    let (user, password) = match credentials.split_once(':') {
        Some((user, password)) => (user.to_owned(), Some(password.to_owned())),
        None => (credentials.to_owned(), None),
    };
    let address = rest.split('/').next().expect("an address");
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "5432"));
    Server {
        user,
        password,
        host: host.to_owned(),
        port: port.to_owned(),
    }
}

/// Runs the script as PostgreSQL's image does, with the owner of the test database's tables
/// (the user that migrated it) as `POSTGRES_USER`.
fn run_role_script(env: &TestEnv, server: &Server) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/postgres/initdb/10-gateway-reader.sh");
    let mut command = std::process::Command::new("bash");
    command
        .arg(script)
        .env("POSTGRES_USER", &server.user)
        .env("POSTGRES_DB", &env.database_name)
        .env("PGHOST", &server.host)
        .env("PGPORT", &server.port)
        .env("VOD_GATEWAY_POSTGRES_PASSWORD", PASSWORD);
    if let Some(password) = &server.password {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().expect("bash and psql run");
    assert!(
        output.status.success(),
        "the role script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reads_as_vod_gateway_which_cannot_write() {
    vod_infra::telemetry::init("warn");
    let env = TestEnv::new().await;
    let server = server_of(&env.postgres_url);
    run_role_script(&env, &server);
    // A second run (a password rotation) changes nothing else.
    run_role_script(&env, &server);
    let reader_url = format!(
        "postgres://vod_gateway:{PASSWORD}@{}:{}/{}",
        server.host, server.port, env.database_name
    );

    let owner = env.db().await;
    let video_id = uuid::Uuid::now_v7();
    owner
        .execute(
            "INSERT INTO video (project_id, id, title) VALUES ('00000000-0000-7000-8000-000000000001', $1, 'read by the gateway')",
            &[&video_id],
        )
        .await
        .expect("the owner writes");
    // A key of the project, as the uploader stores it: the gateway reads it as vod_gateway.
    let key_id = uuid::Uuid::now_v7();
    let secret = "databaserolesdatabaserolesdatabaserolesAAAA";
    owner
        .execute(
            "INSERT INTO api_key (id, project_id, scopes, secret_sha256)
             VALUES ($1, '00000000-0000-7000-8000-000000000001', '{read}', sha256($2))",
            &[&key_id, &secret.as_bytes()],
        )
        .await
        .expect("the owner stores a key");
    let key = format!("vod_{}_{secret}", key_id.simple());

    let mut config = gateway::Config::for_tests(&reader_url, &env.queue_prefix);
    config.amqp = env.amqp();
    let app = gateway::App::build(config).await.expect("gateway starts");
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = vod_tests::client_with_key(&key);
    let video: serde_json::Value = poll_until(
        "the gateway to read the video",
        Duration::from_secs(30),
        || async {
            let response = http
                .get(format!("{base}/v1/videos/{video_id}"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(response.json().await.ok()?)
        },
    )
    .await;
    assert_eq!(video["title"], "read by the gateway", "{video}");
    stop.cancel();
    running.await.expect("gateway task").expect("gateway stops");

    let (reader, connection) = tokio_postgres::connect(&reader_url, tokio_postgres::NoTls)
        .await
        .expect("vod_gateway logs in");
    tokio::spawn(connection);
    let superuser: bool = reader
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("reads the catalog")
        .get(0);
    assert!(!superuser);
    for statement in [
        "INSERT INTO video (project_id, id, title) VALUES ('00000000-0000-7000-8000-000000000001', gen_random_uuid(), 'written by the gateway')",
        "UPDATE video SET title = 'changed by the gateway'",
        "DELETE FROM upload_session",
        "UPDATE direct_upload SET status = 'waiting'",
        "CREATE TABLE gateway_table (id int)",
        "SET default_transaction_read_only = off; UPDATE video SET title = 'changed'",
    ] {
        assert!(
            reader.batch_execute(statement).await.is_err(),
            "vod_gateway could run {statement}"
        );
    }
    // A direct upload's URL is checked with this role.
    reader
        .query("SELECT token_sha256 FROM direct_upload", &[])
        .await
        .expect("vod_gateway reads direct uploads");
    // Webhook signing secrets are the uploaders' alone.
    let denied = reader
        .query("SELECT secret FROM webhook_secret", &[])
        .await
        .expect_err("vod_gateway must not read webhook secrets");
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{denied:?}"
    );
    let title: String = owner
        .query_one("SELECT title FROM video WHERE id = $1", &[&video_id])
        .await
        .expect("reads")
        .get(0);
    assert_eq!(title, "read by the gateway");

    // A table a later migration adds is readable without running the script again.
    owner
        .batch_execute("CREATE TABLE added_later (id int); INSERT INTO added_later VALUES (1)")
        .await
        .expect("the owner adds a table");
    let rows = reader
        .query("SELECT id FROM added_later", &[])
        .await
        .expect("vod_gateway reads a table added later");
    assert_eq!(rows.len(), 1);
}
