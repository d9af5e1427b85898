use anyhow::Context;
use fflow::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vod_infra::telemetry::init("info,fflow=debug");
    let config = Config::from_env().context("invalid fflow configuration")?;
    let app = App::build(config).await?;
    app.run_until_stopped(vod_infra::shutdown::on_signal())
        .await
}
