//! Playing a presentation in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core, with Shaka Player, dash.js or hls.js, through `tests/browser/play.mjs`.
//! `./dev test` installs the browser and the pinned npm packages; a test that needs them and
//! finds them missing fails saying so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

/// The browser the tests play in, unless `VOD_TEST_CHROMIUM` names another.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// How long one playback may take, unless `VOD_TEST_BROWSER_TIMEOUT_MS` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A web player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Player {
    /// Shaka Player (DASH or HLS).
    Shaka,
    /// dash.js (DASH).
    DashJs,
    /// hls.js (HLS).
    HlsJs,
}

impl Player {
    fn name(self) -> &'static str {
        match self {
            Self::Shaka => "shaka",
            Self::DashJs => "dashjs",
            Self::HlsJs => "hlsjs",
        }
    }
}

/// What a player did with a manifest.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Playback {
    /// The furthest position reached, in seconds.
    #[serde(default)]
    pub played: f64,
    /// The duration the element ended up with, when it learned one.
    pub duration: Option<f64>,
    /// The element's or the player's own end of playback.
    #[serde(default)]
    pub ended: bool,
    /// Neither ended nor failed within the deadline.
    #[serde(default)]
    pub timed_out: bool,
    /// The audio tracks the player offers, in its order.
    #[serde(default)]
    pub audio_tracks: Vec<AudioTrack>,
    /// The player's or the element's fatal error, or the harness's own failure.
    pub error: Option<String>,
    /// The page's warnings and errors, for the failure message.
    #[serde(default)]
    pub console: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AudioTrack {
    pub language: Option<String>,
    pub label: Option<String>,
}

impl Playback {
    /// Every audio track's language, `?` for one without.
    pub fn audio_languages(&self) -> Vec<&str> {
        self.audio_tracks
            .iter()
            .map(|track| track.language.as_deref().unwrap_or("?"))
            .collect()
    }

    /// Every audio track's label, `?` for one without.
    pub fn audio_labels(&self) -> Vec<&str> {
        self.audio_tracks
            .iter()
            .map(|track| track.label.as_deref().unwrap_or("?"))
            .collect()
    }

    /// Played without error until the end: the position moved, and the end of playback was
    /// announced or the position reached the duration (within 10 ms).
    pub fn reached_the_end(&self) -> bool {
        self.error.is_none()
            && self.played > 0.0
            && (self.ended
                || self
                    .duration
                    .is_some_and(|duration| self.played >= duration - 0.01))
    }
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The browser's path: `VOD_TEST_CHROMIUM`, else [`DEFAULT_CHROMIUM`].
pub fn chromium_path() -> PathBuf {
    std::env::var_os("VOD_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM))
}

/// The bound on one playback: `VOD_TEST_BROWSER_TIMEOUT_MS`, else [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Duration {
    std::env::var("VOD_TEST_BROWSER_TIMEOUT_MS")
        .ok()
        .and_then(|value| value.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

/// Plays `manifest` (an absolute URL) muted from the start with `player` in headless Chromium
/// until it ends, fails or [`timeout`] passes. Panics, naming what is missing, when Chromium or
/// the npm packages are not installed.
pub async fn play(player: Player, manifest: &str) -> Playback {
    let chromium = chromium_path();
    assert!(
        chromium.exists(),
        "Chromium is not installed at {}: run ./dev test, which installs Debian's chromium \
         (or set VOD_TEST_CHROMIUM to another Chromium)",
        chromium.display()
    );
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the players are not installed: run ./dev test, which installs them into {}",
        dir.display()
    );
    let timeout = timeout();
    let options = json!({
        "player": player.name(),
        "manifest": manifest,
        "timeoutMs": timeout.as_millis() as u64,
        "chromium": chromium,
    });
    let output = tokio::process::Command::new("node")
        .arg(dir.join("play.mjs"))
        .arg(options.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let playback = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Playback>(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "{player:?} printed no result for {manifest} ({}):\n{stdout}\n{stderr}",
                output.status
            )
        });
    assert!(
        output.status.success() || playback.error.is_some(),
        "{player:?} failed without saying why: {stdout}\n{stderr}"
    );
    playback
}
