//! Logging: `RUST_LOG` filters, `LOG_FORMAT=json` switches to one JSON object a line.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests starting many services) do nothing.
pub fn init(default_filter: &str) {
    init_with_overrides(default_filter, &[]);
}

/// As [`init`], with `overrides` (directives such as `libunftp=warn`) applied over what
/// `RUST_LOG` or `default_filter` says for their targets: a service's own configuration, not
/// a global log level, decides how much a chatty library logs.
pub fn init_with_overrides(default_filter: &str, overrides: &[String]) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let mut invalid = Vec::new();
    for directive in overrides {
        match directive.parse() {
            Ok(directive) => filter = filter.add_directive(directive),
            Err(_) => invalid.push(directive),
        }
    }
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    for directive in invalid {
        tracing::warn!(%directive, "log filter directive is not valid, ignored");
    }
}
