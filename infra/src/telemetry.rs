//! Logging: `RUST_LOG` filters, `LOG_FORMAT=json` switches to one JSON object a line.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests starting many services) do nothing.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
