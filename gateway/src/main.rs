use gateway::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vod_infra::telemetry::init("info");
    let config = Config::from_env()?;
    let app = App::build(config).await?;
    app.run_until_stopped(vod_infra::shutdown::on_signal())
        .await
}
