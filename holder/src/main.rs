use holder::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, unknown) = Config::from_env_before_logging()?;
    // libunftp logs every FTP command at info: it logs at HOLDER_FTP_LOG_LEVEL instead,
    // whatever RUST_LOG says.
    vod_infra::telemetry::init_with_overrides("info", &config.log_overrides());
    vod_infra::config::warn_unknown(&unknown);
    config.validate()?;
    let app = App::build(config).await?;
    app.run_until_stopped(vod_infra::shutdown::on_signal())
        .await
}
