use holder::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // libunftp logs every FTP command at info level.
    vod_infra::telemetry::init("info,libunftp=warn");
    let config = Config::from_env()?;
    let app = App::build(config).await?;
    app.run_until_stopped(vod_infra::shutdown::on_signal())
        .await
}
