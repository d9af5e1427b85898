//! holder's settings, read from `HOLDER_*` environment variables.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use vod_infra::config::HttpLimits;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `HOLDER_HTTP_ADDR`: where players fetch presentations.
    pub http_addr: String,
    /// `HOLDER_HTTP__HEADER_READ_TIMEOUT_MS`, `HOLDER_HTTP__MAX_CONNECTIONS`: what the HTTP
    /// listener lets players hold.
    pub http: HttpLimits,
    /// `HOLDER_FTP_ADDR`: where fflow uploads presentations.
    pub ftp_addr: String,
    /// `HOLDER_STORE`: where presentations are kept, `fs` (the directory `HOLDER_ROOT`) or `s3`
    /// (the bucket of `HOLDER_S3__*`).
    pub store: StoreKind,
    /// `HOLDER_ROOT`: with the `fs` store, the directory served over both protocols; created if
    /// missing.
    pub root: PathBuf,
    /// `HOLDER_S3__*`: the bucket of the `s3` store.
    pub s3: S3Settings,
    /// `HOLDER_FTP_USER`: the only account of the FTP server.
    pub ftp_user: String,
    /// `HOLDER_FTP_PASSWORD`: required, no default.
    pub ftp_password: SecretString,
    /// `HOLDER_PASSIVE_HOST`: IPv4 address or DNS name announced in PASV replies; empty means
    /// the address the client connected to.
    pub passive_host: String,
    /// `HOLDER_PASSIVE_PORT_MIN`, `HOLDER_PASSIVE_PORT_MAX`: passive data ports, both included.
    pub passive_port_min: u16,
    pub passive_port_max: u16,
    /// `HOLDER_SEGMENT_MAX_AGE_SECS`: cache lifetime of segments, init segments and images.
    pub segment_max_age_secs: u64,
    /// `HOLDER_PLAYLIST_MAX_AGE_SECS`: cache lifetime of playlists and manifests.
    pub playlist_max_age_secs: u64,
    /// `HOLDER_CORS_ALLOW_ORIGIN`: `*` or a comma-separated list of origins.
    pub cors_allow_origin: String,
    /// `HOLDER_FTP_IDLE_TIMEOUT_SECS`: an FTP session without commands is closed after it.
    pub ftp_idle_timeout_secs: u64,
    /// `HOLDER_FTP_SHUTDOWN_GRACE_SECS`: on shutdown, how long open FTP sessions may take to
    /// finish before they are closed.
    pub ftp_shutdown_grace_secs: u64,
    /// `HOLDER_SHUTDOWN_TIMEOUT_MS`: on shutdown, how long HTTP requests in flight (a player
    /// reading a segment slowly) may take before they are cut off.
    pub shutdown_timeout_ms: u64,
    /// `HOLDER_MIN_FREE_BYTES`: an FTP upload that would leave less than this free on the
    /// root's disk is refused with 452 and removed; 0 turns the check off.
    pub min_free_bytes: u64,
    /// `HOLDER_FTP_MAX_FAILED_LOGINS`: refused FTP logins from one address, over all its
    /// connections and no more than `ftp_lockout_ms` apart, after which that address is
    /// locked out.
    pub ftp_max_failed_logins: u32,
    /// `HOLDER_FTP_LOCKOUT_MS`: how long a locked-out address is refused every login, the
    /// right password included.
    pub ftp_lockout_ms: u64,
    /// `HOLDER_FTP_FAILED_LOGIN_DELAY_MS`: how long a refused login waits before it is
    /// answered.
    pub ftp_failed_login_delay_ms: u64,
    /// `HOLDER_FTPS_CERT_FILE`, `HOLDER_FTPS_KEY_FILE`: PEM certificate chain and private key.
    /// With both set, the FTP server speaks explicit FTPS (`AUTH TLS`) and refuses logins and
    /// transfers that are not encrypted; with neither, plain FTP.
    pub ftps_cert_file: Option<PathBuf>,
    pub ftps_key_file: Option<PathBuf>,
    /// `HOLDER_FTP_LOG_LEVEL`: the most detail libunftp (the FTP server library) logs, whatever
    /// `RUST_LOG` says (`off`, `error`, `warn`, `info`, `debug`, `trace`). At `info` it logs
    /// every command of every session.
    pub ftp_log_level: FtpLogLevel,
}

/// Where holder keeps presentations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A directory on the local disk (`HOLDER_ROOT`).
    #[default]
    Fs,
    /// A bucket of an S3-compatible object store (`HOLDER_S3__*`).
    S3,
}

/// An S3-compatible bucket: AWS S3, Cloudflare R2, Ceph RGW, Garage, ...
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// `HOLDER_S3__ENDPOINT`: the service's URL (`https://s3.eu-west-1.amazonaws.com`,
    /// `http://127.0.0.1:3900`); `http://` is allowed.
    pub endpoint: String,
    /// `HOLDER_S3__REGION`: the region requests are signed for.
    pub region: String,
    /// `HOLDER_S3__BUCKET`: the bucket; it must exist.
    pub bucket: String,
    /// `HOLDER_S3__ACCESS_KEY_ID`, `HOLDER_S3__SECRET_ACCESS_KEY`: the key holder signs with.
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// `HOLDER_S3__PATH_STYLE`: `true` addresses the bucket in the path
    /// (`endpoint/bucket/key`, what Garage, Ceph and local servers need), `false` in the host
    /// name (`bucket.endpoint/key`, AWS's default).
    pub path_style: bool,
    /// `HOLDER_S3__PART_SIZE_BYTES`: an FTP upload up to this size is stored with one request;
    /// a larger one as a multipart upload of parts of this size, so an upload holds about
    /// `part_size_bytes` × (`upload_concurrency` + 1) in memory whatever its size.
    pub part_size_bytes: usize,
    /// `HOLDER_S3__UPLOAD_CONCURRENCY`: parts of one multipart upload sent at once.
    pub upload_concurrency: usize,
    /// `HOLDER_S3__CONNECT_TIMEOUT_MS`, `HOLDER_S3__REQUEST_TIMEOUT_MS`: bounds of one request
    /// to the bucket (the request timeout covers reading a whole answer).
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// `HOLDER_S3__MAX_RETRIES`, `HOLDER_S3__RETRY_TIMEOUT_MS`: a failed request is retried
    /// with backoff at most this many times, and not past this long after it started.
    pub max_retries: usize,
    pub retry_timeout_ms: u64,
    /// `HOLDER_S3__RETRY_AFTER_SECS`: the `Retry-After` of a 503 answered while the bucket
    /// cannot be reached.
    pub retry_after_secs: u64,
    /// `HOLDER_S3__PRESIGNED_REDIRECT_SECS`: when above 0, a segment, rendition, download or
    /// image (what is cached as immutable) is answered with a `307` redirect to a URL of the
    /// bucket signed for this long, so its bytes go from the bucket (or a CDN in front of it)
    /// to the player without passing through holder. Playlists and manifests are always served
    /// by holder, so that their relative URIs keep pointing at holder. The bucket must answer
    /// the players' CORS itself. 0 (the default): holder serves every byte.
    pub presigned_redirect_secs: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            bucket: String::new(),
            access_key_id: String::new(),
            secret_access_key: SecretString::from(""),
            path_style: false,
            part_size_bytes: 8 * 1024 * 1024,
            upload_concurrency: 2,
            connect_timeout_ms: 3_000,
            request_timeout_ms: 30_000,
            max_retries: 2,
            retry_timeout_ms: 5_000,
            retry_after_secs: 2,
            presigned_redirect_secs: 0,
        }
    }
}

/// S3 refuses multipart parts below 5 MiB (but the last).
pub const MIN_PART_SIZE_BYTES: usize = 5 * 1024 * 1024;

/// How much libunftp logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FtpLogLevel {
    Off,
    Error,
    #[default]
    Warn,
    Info,
    Debug,
    Trace,
}

impl FtpLogLevel {
    /// The level as a `RUST_LOG` directive names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8090".to_owned(),
            http: HttpLimits::default(),
            ftp_addr: "127.0.0.1:2121".to_owned(),
            store: StoreKind::Fs,
            root: PathBuf::from("./data/holder"),
            s3: S3Settings::default(),
            ftp_user: "vod".to_owned(),
            ftp_password: SecretString::from(""),
            passive_host: "127.0.0.1".to_owned(),
            passive_port_min: 50_000,
            passive_port_max: 50_099,
            segment_max_age_secs: 31_536_000,
            playlist_max_age_secs: 2,
            cors_allow_origin: "*".to_owned(),
            ftp_idle_timeout_secs: 600,
            ftp_shutdown_grace_secs: 10,
            shutdown_timeout_ms: 8_000,
            min_free_bytes: 512 * 1024 * 1024,
            ftp_max_failed_logins: 5,
            ftp_lockout_ms: 300_000,
            ftp_failed_login_delay_ms: 1_000,
            ftps_cert_file: None,
            ftps_key_file: None,
            ftp_log_level: FtpLogLevel::Warn,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("HOLDER_FTP_PASSWORD is required")]
    MissingFtpPassword,
    #[error("HOLDER_FTP_USER must not be empty")]
    MissingFtpUser,
    #[error("passive port range {min}..={max} is empty or starts at port 0")]
    InvalidPassivePorts { min: u16, max: u16 },
    #[error("{0}")]
    InvalidHttpLimits(String),
    #[error("HOLDER_FTP_MAX_FAILED_LOGINS must be positive")]
    InvalidMaxFailedLogins,
    #[error("HOLDER_FTPS_CERT_FILE and HOLDER_FTPS_KEY_FILE are set together or not at all")]
    HalfConfiguredFtps,
    #[error("HOLDER_STORE=s3 needs HOLDER_S3__{0}")]
    MissingS3Setting(&'static str),
    #[error(
        "HOLDER_S3__PART_SIZE_BYTES must be at least {MIN_PART_SIZE_BYTES} (S3's smallest part)"
    )]
    S3PartTooSmall,
    #[error("HOLDER_S3__UPLOAD_CONCURRENCY must be positive")]
    InvalidS3Concurrency,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let config: Config = vod_infra::config::from_env("HOLDER")
            .context("failed to read holder configuration from the environment")?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the configuration before logging starts (the FTP library's log level is part of
    /// it); returns with it the variables that named no setting, to log once logging runs.
    pub fn from_env_before_logging() -> anyhow::Result<(Config, Vec<String>)> {
        vod_infra::config::from_vars("HOLDER", None)
            .context("failed to read holder configuration from the environment")
    }

    /// The log filter directives that hold libunftp, whose target every one of its spans and
    /// log lines carries, to `HOLDER_FTP_LOG_LEVEL`.
    pub fn log_overrides(&self) -> Vec<String> {
        vec![format!("libunftp={}", self.ftp_log_level.as_str())]
    }

    /// Both listeners on free ports of 127.0.0.1, everything else as in production. Parallel
    /// instances share the passive port range: libunftp picks a random free port in it and tries
    /// again when one is taken.
    pub fn for_tests(root: PathBuf, ftp_password: &str) -> Config {
        Config {
            http_addr: "127.0.0.1:0".to_owned(),
            ftp_addr: "127.0.0.1:0".to_owned(),
            root,
            ftp_password: SecretString::from(ftp_password),
            ftp_shutdown_grace_secs: 1,
            ..Config::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ftp_password.expose_secret().is_empty() {
            return Err(ConfigError::MissingFtpPassword);
        }
        if self.ftp_user.is_empty() {
            return Err(ConfigError::MissingFtpUser);
        }
        if self.ftp_max_failed_logins == 0 {
            return Err(ConfigError::InvalidMaxFailedLogins);
        }
        if set_path(&self.ftps_cert_file).is_some() != set_path(&self.ftps_key_file).is_some() {
            return Err(ConfigError::HalfConfiguredFtps);
        }
        if let Err(error) = self.http.validate("HOLDER") {
            return Err(ConfigError::InvalidHttpLimits(error.to_string()));
        }
        if self.store == StoreKind::S3 {
            self.validate_s3()?;
        }
        if self.passive_port_min == 0 || self.passive_port_min > self.passive_port_max {
            return Err(ConfigError::InvalidPassivePorts {
                min: self.passive_port_min,
                max: self.passive_port_max,
            });
        }
        Ok(())
    }

    fn validate_s3(&self) -> Result<(), ConfigError> {
        let s3 = &self.s3;
        let required = [
            ("ENDPOINT", s3.endpoint.trim().is_empty()),
            ("REGION", s3.region.trim().is_empty()),
            ("BUCKET", s3.bucket.trim().is_empty()),
            ("ACCESS_KEY_ID", s3.access_key_id.is_empty()),
            (
                "SECRET_ACCESS_KEY",
                s3.secret_access_key.expose_secret().is_empty(),
            ),
        ];
        if let Some((name, _)) = required.iter().find(|(_, missing)| *missing) {
            return Err(ConfigError::MissingS3Setting(name));
        }
        if s3.part_size_bytes < MIN_PART_SIZE_BYTES {
            return Err(ConfigError::S3PartTooSmall);
        }
        if s3.upload_concurrency == 0 {
            return Err(ConfigError::InvalidS3Concurrency);
        }
        Ok(())
    }

    pub fn passive_ports(&self) -> RangeInclusive<u16> {
        self.passive_port_min..=self.passive_port_max
    }

    /// The certificate chain and key files when FTPS is on (an empty variable is unset).
    pub fn ftps_files(&self) -> Option<(&Path, &Path)> {
        set_path(&self.ftps_cert_file).zip(set_path(&self.ftps_key_file))
    }

    pub fn ftp_lockout(&self) -> Duration {
        Duration::from_millis(self.ftp_lockout_ms)
    }

    pub fn ftp_failed_login_delay(&self) -> Duration {
        Duration::from_millis(self.ftp_failed_login_delay_ms)
    }
}

/// A path setting, unless unset or empty.
fn set_path(file: &Option<PathBuf>) -> Option<&Path> {
    file.as_deref().filter(|path| !path.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_without_password_is_rejected() {
        assert_eq!(
            Config::default().validate(),
            Err(ConfigError::MissingFtpPassword)
        );
    }

    #[test]
    fn test_config_is_valid_and_uses_free_ports() {
        let config = Config::for_tests(PathBuf::from("/tmp/x"), "secret");
        assert_eq!(config.validate(), Ok(()));
        assert!(config.http_addr.ends_with(":0"));
        assert!(config.ftp_addr.ends_with(":0"));
    }

    #[test]
    fn ftps_needs_both_files() {
        let half = Config {
            ftps_cert_file: Some(PathBuf::from("/etc/holder/cert.pem")),
            ..Config::for_tests(PathBuf::from("/tmp/x"), "secret")
        };
        assert_eq!(half.validate(), Err(ConfigError::HalfConfiguredFtps));
        assert_eq!(half.ftps_files(), None);
        let both = Config {
            ftps_key_file: Some(PathBuf::from("/etc/holder/key.pem")),
            ..half
        };
        assert_eq!(both.validate(), Ok(()));
        assert!(both.ftps_files().is_some());
    }

    #[test]
    fn ftp_settings_are_read_from_the_environment() {
        let vars = [
            ("HOLDER_FTP_PASSWORD", "secret"),
            ("HOLDER_FTP_LOG_LEVEL", "info"),
            ("HOLDER_FTP_MAX_FAILED_LOGINS", "3"),
            ("HOLDER_FTPS_CERT_FILE", ""),
            ("HOLDER_HTTP__MAX_CONNECTIONS", "10"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let (config, unknown) =
            vod_infra::config::from_vars::<Config>("HOLDER", Some(vars.into_iter().collect()))
                .expect("a configuration");
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(config.ftp_log_level, FtpLogLevel::Info);
        assert_eq!(config.ftp_max_failed_logins, 3);
        assert_eq!(config.http.max_connections, 10);
        assert_eq!(config.ftps_files(), None, "an empty variable is unset");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn the_s3_store_is_read_from_the_environment_and_needs_its_bucket() {
        let vars = [
            ("HOLDER_FTP_PASSWORD", "secret"),
            ("HOLDER_STORE", "s3"),
            ("HOLDER_S3__ENDPOINT", "http://127.0.0.1:3900"),
            ("HOLDER_S3__REGION", "garage"),
            ("HOLDER_S3__ACCESS_KEY_ID", "GK1"),
            ("HOLDER_S3__SECRET_ACCESS_KEY", "s3cr3t"),
            ("HOLDER_S3__PATH_STYLE", "true"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let (config, unknown) =
            vod_infra::config::from_vars::<Config>("HOLDER", Some(vars.into_iter().collect()))
                .expect("a configuration");
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(config.store, StoreKind::S3);
        assert!(config.s3.path_style);
        assert_eq!(
            config.validate(),
            Err(ConfigError::MissingS3Setting("BUCKET"))
        );
        let with_bucket = Config {
            s3: S3Settings {
                bucket: "vod".to_owned(),
                ..config.s3.clone()
            },
            ..config
        };
        assert_eq!(with_bucket.validate(), Ok(()));
        let small_parts = Config {
            s3: S3Settings {
                part_size_bytes: 1024,
                ..with_bucket.s3.clone()
            },
            ..with_bucket
        };
        assert_eq!(small_parts.validate(), Err(ConfigError::S3PartTooSmall));
    }

    #[test]
    fn inverted_passive_range_is_rejected() {
        let config = Config {
            passive_port_min: 50_010,
            passive_port_max: 50_000,
            ..Config::for_tests(PathBuf::from("/tmp/x"), "secret")
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::InvalidPassivePorts { .. })
        ));
    }
}
