use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use vod_infra::config::{millis, AmqpSettings, HttpLimits};

use crate::ladder::Ladder;
use crate::peers::{is_valid_replica_id, Peers};
use crate::sandbox::{Sandbox, SourceFormats};
use crate::storyboard::StoryboardSettings;

/// Configuration of an fflow replica, read from `FFLOW_*` variables.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    pub listen_addr: String,
    /// Names this replica in its URLs (`/{replica_id}/...`) and in its spool: `[a-z0-9-]+`.
    pub replica_id: String,
    /// Base URL through which others reach this replica (e.g. a reverse proxy,
    /// `http://fflow:4050`); `http://{bound address}` when unset.
    pub public_url: Option<String>,
    /// Each session spools in `{spool_dir}/{replica_id}/{session_id}/`.
    pub spool_dir: PathBuf,
    pub ffmpeg_path: String,
    pub ffprobe_path: String,
    /// The demuxers ffmpeg and ffprobe may read a source with (`FFLOW_SOURCE_FORMATS`, see
    /// [`SourceFormats`]); a source of another format fails.
    pub source_formats: SourceFormats,
    /// A source whose probed duration needs fewer bytes a second than this is refused, its
    /// timestamps not believed; 0 turns the check off.
    pub min_source_bytes_per_second: u64,
    /// A source probed longer than this is refused.
    pub max_source_seconds: u64,
    pub max_concurrent_encodes: usize,
    pub segment_seconds: u32,
    /// Must divide `segment_seconds`, so every segment starts on a keyframe.
    pub keyframe_interval_seconds: u32,
    pub x264_preset: String,
    /// The rungs renditions are chosen from (`FFLOW_LADDER`, see [`Ladder`]).
    pub ladder: Ladder,
    /// A faster source is encoded at an integer fraction of its rate, at most this.
    pub max_frame_rate: u32,
    /// A source whose container does not say it is interlaced (says nothing, or progressive) is
    /// looked at over this many frames (ffmpeg's `idet`); 0 believes the container, and takes a
    /// source whose container says nothing as progressive.
    pub idet_frames: u32,
    /// The poster is the first frame at this time (or a third into shorter sources).
    pub poster_at_seconds: f64,
    /// The storyboard (seek-bar preview) holds at most this many tiles, a longer picture
    /// getting a longer interval between them; 0 makes none.
    pub storyboard_max_tiles: u32,
    /// Tiles of the storyboard are at least this far apart.
    pub storyboard_min_interval_ms: u64,
    /// The longer side of a storyboard tile, in pixels.
    pub storyboard_tile_size: u32,
    pub audio_bitrate: String,
    /// Sound tracks beyond this many are left out; each one kept is a rendition.
    pub max_audio_tracks: usize,
    /// The audio rendition players choose first (`DEFAULT=YES`): the first in this BCP 47
    /// language (`en` also matches `en-GB`); empty, the source's first track.
    pub preferred_audio_language: String,
    pub max_chunk_bytes: u64,
    /// New sessions and chunks are refused (507 `insufficient_storage`) when writing them would
    /// leave less than this free on the spool's disk, which keeps room for the encodes of the
    /// uploads already taken (`FFLOW_SPOOL_MIN_FREE_BYTES`; 0 turns the check off).
    pub spool_min_free_bytes: u64,
    pub probe_timeout_ms: u64,
    /// An encode running longer than this is killed and reported failed.
    pub max_encode_seconds: u64,
    /// An ffmpeg that neither advances its output nor reads input for this long is killed and
    /// its flow reported failed. Time spent waiting for upload bytes does not count.
    pub stall_timeout_seconds: u64,
    /// At most one progress report per encode in this interval.
    pub progress_interval_ms: u64,
    /// Encode a source that can be read as it arrives (MP4 with its index first, fragmented
    /// MP4, MPEG-TS, Matroska, WebM) while it uploads.
    pub streaming_encode: bool,
    /// A streaming encode starts once at least this much has arrived (or all of it, or an MP4's
    /// whole index), enough for ffprobe to describe the streams.
    pub streaming_probe_bytes: u64,
    /// A partial upload ffprobe still cannot describe at this size is encoded once complete.
    pub streaming_probe_max_bytes: u64,
    /// A streaming encode that has waited this long in all for upload bytes is stopped and
    /// gives its encode slot back; the source is encoded once complete.
    pub streaming_max_wait_seconds: u64,
    /// First wait before publishing an outcome again; doubles up to `publish_max_backoff_ms`.
    /// Publishing is retried until it succeeds or the replica stops (a restarted replica
    /// encodes and publishes again). The same waits space the attempts to connect again after
    /// the publishing connection was lost.
    pub publish_backoff_ms: u64,
    pub publish_max_backoff_ms: u64,
    /// Timeout of one publish, confirmation included.
    pub publish_timeout_ms: u64,
    /// How often the replica checks that its publishing connection was not lost, to
    /// connect again before the next publish needs it (and `/readyz` says so meanwhile).
    pub broker_check_interval_ms: u64,
    /// Connect and read timeout of the calls to other replicas, which fetch the parts of a
    /// concatenated upload.
    pub peer_timeout_ms: u64,
    /// How long a connection to another replica is kept idle for the next call; below the
    /// peers' `FFLOW_HTTP__HEADER_READ_TIMEOUT_MS`, after which they close it.
    pub peer_pool_idle_timeout_ms: u64,
    /// The other replicas by id, where the parts of a concatenated upload held by them are
    /// fetched (`FFLOW_PEERS=r1=http://fflow-r1:4050,r2=http://fflow-r2:4050`; this replica
    /// may be listed too). A part on a replica not listed is refused.
    pub peers: Peers,
    /// Required: the secret every internal route asks for as `Authorization: Bearer`, shared
    /// with the uploaders (`UPLOADER_FFLOW_TOKEN`) and the other replicas
    /// (`FFLOW_INTERNAL_TOKEN`).
    pub internal_token: SecretString,
    /// How long `/readyz` waits for each dependency.
    pub readiness_timeout_ms: u64,
    /// After a stop signal, how long requests and encode tasks in flight may take to wind
    /// down (ffmpeg is killed at once, the spool kept for the restart); what is left then is
    /// abandoned (`FFLOW_SHUTDOWN_TIMEOUT_MS`).
    pub shutdown_timeout_ms: u64,
    /// A session nobody wrote to for this long that is still receiving (abandoned, or moved to
    /// another replica while this one was away) or already done is forgotten and its spool
    /// removed. Longer than the uploader's session TTL, after which no client comes back.
    pub idle_session_ttl_ms: u64,
    /// How often idle sessions are looked for.
    pub idle_sweep_interval_ms: u64,
    /// The listener's header-read timeout and connection limit (`FFLOW_HTTP__...`).
    pub http: HttpLimits,
    pub holder: HolderSettings,
    pub amqp: AmqpSettings,
}

/// How to reach holder's FTP server (`FFLOW_HOLDER__ADDR`, ...).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct HolderSettings {
    pub addr: String,
    pub user: String,
    /// Required: `FFLOW_HOLDER__PASSWORD`.
    pub password: SecretString,
    /// Timeout of every single FTP call, a whole file transfer included.
    pub timeout_ms: u64,
    /// Attempts of a whole upload before the flow is reported failed.
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each.
    pub backoff_ms: u64,
    /// PEM certificates of the authorities that sign holder's certificate
    /// (`FFLOW_HOLDER__TLS_CA_FILE`). Set, every session with holder switches to TLS
    /// (explicit FTPS, `AUTH TLS`) before it logs in, data connections included; unset,
    /// plain FTP.
    pub tls_ca_file: Option<PathBuf>,
    /// The name holder's certificate is checked against (`FFLOW_HOLDER__TLS_DOMAIN`); the
    /// host of `addr` when empty.
    pub tls_domain: String,
    /// `/readyz` checks holder's FTP greeting every time, and logs in only when the last
    /// login check is older than this (`FFLOW_HOLDER__LOGIN_CHECK_INTERVAL_MS`).
    pub login_check_interval_ms: u64,
}

impl HolderSettings {
    /// The CA file when FTPS is on (an empty variable is unset).
    pub fn tls_ca_file(&self) -> Option<&std::path::Path> {
        self.tls_ca_file
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty())
    }

    /// The name holder's certificate must carry: `tls_domain`, else the host of `addr`.
    pub fn tls_domain(&self) -> &str {
        if !self.tls_domain.is_empty() {
            return &self.tls_domain;
        }
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:4050".to_owned(),
            replica_id: "r1".to_owned(),
            public_url: None,
            spool_dir: PathBuf::from("./data/fflow"),
            ffmpeg_path: "ffmpeg".to_owned(),
            ffprobe_path: "ffprobe".to_owned(),
            source_formats: SourceFormats::default(),
            min_source_bytes_per_second: 256,
            max_source_seconds: 12 * 3600,
            max_concurrent_encodes: 2,
            segment_seconds: 4,
            keyframe_interval_seconds: 2,
            x264_preset: "veryfast".to_owned(),
            ladder: Ladder::default(),
            max_frame_rate: 60,
            idet_frames: 100,
            poster_at_seconds: 5.0,
            storyboard_max_tiles: 100,
            storyboard_min_interval_ms: 2_000,
            storyboard_tile_size: 160,
            audio_bitrate: "128k".to_owned(),
            max_audio_tracks: 8,
            preferred_audio_language: String::new(),
            max_chunk_bytes: 16 * 1024 * 1024,
            spool_min_free_bytes: 512 * 1024 * 1024,
            probe_timeout_ms: 60_000,
            max_encode_seconds: 6 * 3600,
            stall_timeout_seconds: 120,
            progress_interval_ms: 1_000,
            streaming_encode: true,
            streaming_probe_bytes: 1024 * 1024,
            streaming_probe_max_bytes: 64 * 1024 * 1024,
            streaming_max_wait_seconds: 120,
            publish_backoff_ms: 500,
            publish_max_backoff_ms: 30_000,
            publish_timeout_ms: 10_000,
            broker_check_interval_ms: 1_000,
            peer_timeout_ms: 30_000,
            peer_pool_idle_timeout_ms: vod_infra::config::DEFAULT_CLIENT_POOL_IDLE_TIMEOUT_MS,
            peers: Peers::default(),
            // Empty means unset: `validate` refuses it, there is no default token.
            internal_token: SecretString::from(""),
            readiness_timeout_ms: 3_000,
            shutdown_timeout_ms: 8_000,
            idle_session_ttl_ms: 2 * 24 * 3600 * 1000,
            idle_sweep_interval_ms: 10 * 60 * 1000,
            http: HttpLimits::default(),
            holder: HolderSettings::default(),
            amqp: AmqpSettings::default(),
        }
    }
}

impl Default for HolderSettings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:2121".to_owned(),
            user: "vod".to_owned(),
            // Empty means unset: `validate` refuses it, there is no default password.
            password: SecretString::from(""),
            timeout_ms: 30_000,
            attempts: 4,
            backoff_ms: 500,
            tls_ca_file: None,
            tls_domain: String::new(),
            login_check_interval_ms: 300_000,
        }
    }
}

/// A storyboard of more tiles would be a large image to hold and to download.
const MAX_STORYBOARD_TILES: u32 = 500;

const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let config: Self = vod_infra::config::from_env("FFLOW")?;
        config.validate()?;
        Ok(config)
    }

    /// A replica on a free local port, spooling in `spool_dir`, storing on the holder at
    /// `holder_addr` and publishing to queues prefixed with `queue_prefix`. Its internal token
    /// is a new random one; set another to share it.
    pub fn for_tests(
        spool_dir: PathBuf,
        replica_id: &str,
        holder_addr: &str,
        holder_password: &str,
        queue_prefix: &str,
    ) -> Self {
        let defaults = Self::default();
        Self {
            listen_addr: "127.0.0.1:0".to_owned(),
            replica_id: replica_id.to_owned(),
            spool_dir,
            internal_token: SecretString::from(format!("test-{}", uuid::Uuid::new_v4().simple())),
            holder: HolderSettings {
                addr: holder_addr.to_owned(),
                password: SecretString::from(holder_password),
                backoff_ms: 100,
                ..defaults.holder
            },
            amqp: AmqpSettings {
                queue_prefix: queue_prefix.to_owned(),
                ..defaults.amqp
            },
            ..Self::default()
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.amqp.validate("FFLOW")?;
        self.http.validate("FFLOW")?;
        anyhow::ensure!(
            is_valid_replica_id(&self.replica_id),
            "FFLOW_REPLICA_ID must match [a-z0-9-]+, got {:?}",
            self.replica_id
        );
        // `/videos/{video_id}` is served on the bare address, beside `/{replica_id}/...`.
        anyhow::ensure!(
            self.replica_id != "videos",
            "FFLOW_REPLICA_ID must not be \"videos\", a path of the bare address"
        );
        anyhow::ensure!(
            !self.holder.password.expose_secret().is_empty(),
            "FFLOW_HOLDER__PASSWORD is required"
        );
        anyhow::ensure!(
            !self.internal_token.expose_secret().is_empty(),
            "FFLOW_INTERNAL_TOKEN is required"
        );
        anyhow::ensure!(
            self.segment_seconds > 0 && self.keyframe_interval_seconds > 0,
            "FFLOW_SEGMENT_SECONDS and FFLOW_KEYFRAME_INTERVAL_SECONDS must be positive"
        );
        anyhow::ensure!(
            self.segment_seconds
                .is_multiple_of(self.keyframe_interval_seconds),
            "FFLOW_KEYFRAME_INTERVAL_SECONDS ({}) must divide FFLOW_SEGMENT_SECONDS ({})",
            self.keyframe_interval_seconds,
            self.segment_seconds
        );
        anyhow::ensure!(
            self.max_concurrent_encodes > 0,
            "FFLOW_MAX_CONCURRENT_ENCODES must be positive"
        );
        anyhow::ensure!(
            self.max_audio_tracks > 0,
            "FFLOW_MAX_AUDIO_TRACKS must be positive"
        );
        anyhow::ensure!(
            self.max_frame_rate > 0,
            "FFLOW_MAX_FRAME_RATE must be positive"
        );
        anyhow::ensure!(
            self.poster_at_seconds.is_finite() && self.poster_at_seconds >= 0.0,
            "FFLOW_POSTER_AT_SECONDS must be a time in seconds"
        );
        anyhow::ensure!(
            self.storyboard_max_tiles <= MAX_STORYBOARD_TILES,
            "FFLOW_STORYBOARD_MAX_TILES must be at most {MAX_STORYBOARD_TILES}"
        );
        anyhow::ensure!(
            self.storyboard_min_interval_ms > 0,
            "FFLOW_STORYBOARD_MIN_INTERVAL_MS must be positive"
        );
        anyhow::ensure!(
            (16..=640).contains(&self.storyboard_tile_size),
            "FFLOW_STORYBOARD_TILE_SIZE must be between 16 and 640 pixels"
        );
        anyhow::ensure!(
            self.stall_timeout_seconds > 0,
            "FFLOW_STALL_TIMEOUT_SECONDS must be positive"
        );
        anyhow::ensure!(
            self.max_source_seconds > 0,
            "FFLOW_MAX_SOURCE_SECONDS must be positive"
        );
        anyhow::ensure!(
            self.streaming_max_wait_seconds > 0,
            "FFLOW_STREAMING_MAX_WAIT_SECONDS must be positive"
        );
        anyhow::ensure!(
            X264_PRESETS.contains(&self.x264_preset.as_str()),
            "FFLOW_X264_PRESET must be one of {}",
            X264_PRESETS.join(", ")
        );
        anyhow::ensure!(
            self.max_chunk_bytes > 0,
            "FFLOW_MAX_CHUNK_BYTES must be positive"
        );
        anyhow::ensure!(
            self.holder.attempts > 0,
            "FFLOW_HOLDER__ATTEMPTS must be positive"
        );
        anyhow::ensure!(
            self.publish_backoff_ms > 0 && self.broker_check_interval_ms > 0,
            "FFLOW_PUBLISH_BACKOFF_MS and FFLOW_BROKER_CHECK_INTERVAL_MS must be positive"
        );
        Ok(())
    }

    pub(crate) fn storyboard(&self) -> StoryboardSettings {
        StoryboardSettings {
            max_tiles: self.storyboard_max_tiles,
            min_interval_ms: self.storyboard_min_interval_ms,
            tile_size: self.storyboard_tile_size,
        }
    }

    pub(crate) fn probe_timeout(&self) -> Duration {
        millis(self.probe_timeout_ms)
    }

    pub(crate) fn max_encode_duration(&self) -> Duration {
        Duration::from_secs(self.max_encode_seconds)
    }

    /// The builder of every ffmpeg and ffprobe command, with these programs and formats.
    pub(crate) fn sandbox(&self) -> Sandbox {
        Sandbox::new(
            self.ffmpeg_path.clone(),
            self.ffprobe_path.clone(),
            self.source_formats.clone(),
        )
    }

    pub(crate) fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout_seconds)
    }

    pub(crate) fn streaming_max_wait(&self) -> Duration {
        Duration::from_secs(self.streaming_max_wait_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config::for_tests(
            PathBuf::from("/tmp/x"),
            "r1",
            "127.0.0.1:2121",
            "pw",
            "test",
        )
    }

    #[test]
    fn test_config_is_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn missing_password_is_refused() {
        let config = Config::default();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("FFLOW_HOLDER__PASSWORD"), "{error}");
    }

    #[test]
    fn missing_internal_token_is_refused() {
        let config = Config {
            internal_token: SecretString::from(""),
            ..valid()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("FFLOW_INTERNAL_TOKEN"), "{error}");
    }

    #[test]
    fn the_internal_token_is_never_printed() {
        let config = Config {
            internal_token: SecretString::from("very-secret-token"),
            ..valid()
        };
        assert!(!format!("{config:?}").contains("very-secret-token"));
    }

    #[test]
    fn peers_are_read_from_the_environment() {
        let vars = [
            (
                "FFLOW_PEERS",
                "r1=http://fflow-r1:4050,r2=http://fflow-r2:4050",
            ),
            ("FFLOW_INTERNAL_TOKEN", "t"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let (config, unknown) =
            vod_infra::config::from_vars::<Config>("FFLOW", Some(vars.into_iter().collect()))
                .unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(config.peers.base_url("r2"), Some("http://fflow-r2:4050"));
        assert_eq!(config.internal_token.expose_secret(), "t");
    }

    #[test]
    fn holder_tls_is_read_from_the_environment() {
        let vars = [
            ("FFLOW_HOLDER__ADDR", "holder:2121"),
            ("FFLOW_HOLDER__TLS_CA_FILE", "/etc/vod/holder-ca.pem"),
            ("FFLOW_HOLDER__LOGIN_CHECK_INTERVAL_MS", "1000"),
            ("FFLOW_HTTP__HEADER_READ_TIMEOUT_MS", "2000"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let (config, unknown) =
            vod_infra::config::from_vars::<Config>("FFLOW", Some(vars.into_iter().collect()))
                .unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(
            config.holder.tls_ca_file(),
            Some(std::path::Path::new("/etc/vod/holder-ca.pem"))
        );
        assert_eq!(
            config.holder.tls_domain(),
            "holder",
            "the host of the address"
        );
        assert_eq!(config.holder.login_check_interval_ms, 1000);
        assert_eq!(config.http.header_read_timeout_ms, 2000);
        let named = HolderSettings {
            tls_domain: "holder.internal".to_owned(),
            ..config.holder
        };
        assert_eq!(named.tls_domain(), "holder.internal");
    }

    #[test]
    fn replica_id_is_checked() {
        for bad in ["", "R1", "r/1", "r 1", "r_1", "videos"] {
            let config = Config {
                replica_id: bad.to_owned(),
                ..valid()
            };
            assert!(config.validate().is_err(), "{bad:?} accepted");
        }
        let config = Config {
            replica_id: "fflow-2".to_owned(),
            ..valid()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn ladder_is_read_from_its_text_form() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "ladder": "360:800:856:1200,720:2800:2996:4200"
        }))
        .unwrap();
        let sizes: Vec<u32> = config.ladder.rungs().iter().map(|rung| rung.size).collect();
        assert_eq!(sizes, [720, 360]);
        let refused = serde_json::from_value::<Config>(serde_json::json!({ "ladder": "720" }));
        assert!(refused.is_err());
    }

    #[test]
    fn source_formats_and_bounds_are_read_from_the_environment() {
        let vars = [
            ("FFLOW_SOURCE_FORMATS", "mp4,matroska"),
            ("FFLOW_MIN_SOURCE_BYTES_PER_SECOND", "1000"),
            ("FFLOW_MAX_SOURCE_SECONDS", "3600"),
            ("FFLOW_STREAMING_MAX_WAIT_SECONDS", "30"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let (config, unknown) =
            vod_infra::config::from_vars::<Config>("FFLOW", Some(vars.into_iter().collect()))
                .unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(config.source_formats.to_string(), "mp4, matroska");
        assert_eq!(config.min_source_bytes_per_second, 1000);
        assert_eq!(config.max_source_seconds, 3600);
        assert_eq!(config.streaming_max_wait_seconds, 30);
        let playlists = [("FFLOW_SOURCE_FORMATS".to_owned(), "mov,hls".to_owned())];
        let refused =
            vod_infra::config::from_vars::<Config>("FFLOW", Some(playlists.into_iter().collect()));
        assert!(refused.is_err());
    }

    #[test]
    fn keyframe_interval_must_divide_segment() {
        let config = Config {
            segment_seconds: 4,
            keyframe_interval_seconds: 3,
            ..valid()
        };
        assert!(config.validate().is_err());
        let config = Config {
            segment_seconds: 6,
            keyframe_interval_seconds: 3,
            ..valid()
        };
        assert!(config.validate().is_ok());
    }
}
