//! The one way fflow starts ffmpeg and ffprobe. An upload is untrusted, and ffmpeg follows what
//! its input names: an HLS playlist, a concat script or an image pattern makes it open other
//! files or URLs. So every child this module builds:
//!
//! - starts with an empty environment but `PATH` (fflow's own holds the broker URL, the FTP
//!   password and the internal token), in the session directory;
//! - reads its input through the `file` and `pipe` protocols only;
//! - opens only the demuxers of [`SourceFormats`] (`-format_whitelist`), none of which reads
//!   another file; an encode opens only the one demuxer its probe found, forced with `-f`;
//! - and, when it encodes, reads at most the seconds the source can hold (`-t`, see
//!   [`crate::bounds`]).
//!
//! Nothing else in fflow makes a `Command` for ffmpeg or ffprobe.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use serde::Deserialize;

/// The protocols an input is read through: the spool file, or standard input while it uploads.
const PROTOCOLS: &str = "file,pipe";

/// Demuxers that read other files or URLs, or make media of their own: never a source format.
const REFUSED_FORMATS: [&str; 14] = [
    "hls",
    "dash",
    "concat",
    "image2",
    "imf",
    "lavfi",
    "sdp",
    "rtp",
    "rtsp",
    "tty",
    "avisynth",
    "vapoursynth",
    "sbg",
    "webm_dash_manifest",
];

/// What `FFLOW_SOURCE_FORMATS` is unless set: the containers of video and sound files people
/// upload (the `mov` demuxer reads MP4, M4A and 3GP; `matroska` reads WebM).
const DEFAULT_FORMATS: &str =
    "mov,mp4,m4a,3gp,3g2,matroska,webm,mpegts,avi,flv,mpeg,ogg,asf,wav,w64,aiff,mp3,aac,flac";

/// The demuxers a source may be read with (`FFLOW_SOURCE_FORMATS`, ffmpeg's names separated by
/// commas). Playlist and script demuxers are refused here, whatever the configuration says.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SourceFormats(Vec<String>);

/// One demuxer, by one of its names: the one an encode forces (`-f`) and may open. Made only
/// from a format [`SourceFormats`] accepts, or for fflow's own segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demuxer(String);

impl Demuxer {
    /// The demuxer of the CMAF (fragmented MP4) segments fflow's encode wrote.
    pub fn own_segments() -> Self {
        Self("mov".to_owned())
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Demuxer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SourceFormats {
    /// The source's format when it is allowed. `format_name` is what ffprobe reports: the
    /// names of one demuxer separated by commas, e.g. `matroska,webm`.
    pub fn accepted(&self, format_name: &str) -> Option<Demuxer> {
        format_name
            .split(',')
            .map(str::trim)
            .find(|name| self.0.iter().any(|allowed| allowed == name))
            .map(|name| Demuxer(name.to_owned()))
    }

    fn whitelist(&self) -> String {
        self.0.join(",")
    }
}

impl fmt::Display for SourceFormats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl Default for SourceFormats {
    fn default() -> Self {
        Self(DEFAULT_FORMATS.split(',').map(str::to_owned).collect())
    }
}

impl FromStr for SourceFormats {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut formats: Vec<String> = Vec::new();
        for name in text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            let valid = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(format!("{name:?} is not a demuxer name ([a-z0-9_]+)"));
            }
            if REFUSED_FORMATS.contains(&name) {
                return Err(format!(
                    "{name} reads other files or makes media of its own, it cannot be a source \
                     format"
                ));
            }
            if !formats.iter().any(|known| known == name) {
                formats.push(name.to_owned());
            }
        }
        if formats.is_empty() {
            return Err("at least one source format is needed".to_owned());
        }
        Ok(Self(formats))
    }
}

impl TryFrom<String> for SourceFormats {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// Where ffmpeg reads the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// A complete file, relative to the session directory.
    File(&'a str),
    /// ffmpeg's standard input, fed while the upload arrives.
    Stdin,
}

/// A source as an encode reads it.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub input: Input<'a>,
    /// The demuxer the probe found (or that of fflow's own segments).
    pub format: &'a Demuxer,
    /// Seconds of media read at most (see [`crate::bounds::SourceBounds::encode_seconds`]).
    pub max_seconds: f64,
}

/// Builds every ffmpeg and ffprobe command of the replica.
#[derive(Clone, Debug)]
pub struct Sandbox {
    ffmpeg: String,
    ffprobe: String,
    formats: SourceFormats,
    /// fflow's own `PATH`, the one variable a child gets, so that a program named without a
    /// directory is the one fflow checked at start-up.
    path: Option<OsString>,
}

impl Sandbox {
    /// The programs (a path, or a name looked up in fflow's `PATH`) and the demuxers a source
    /// may be read with; `Config::sandbox` makes it from the replica's settings.
    pub fn new(ffmpeg: String, ffprobe: String, formats: SourceFormats) -> Self {
        Self {
            ffmpeg,
            ffprobe,
            formats,
            path: std::env::var_os("PATH"),
        }
    }

    pub fn formats(&self) -> &SourceFormats {
        &self.formats
    }

    /// `ffmpeg -version` and `ffprobe -version`, run in `dir` to check that both start.
    pub fn version_checks(&self, dir: &Path) -> [Command; 2] {
        [&self.ffmpeg, &self.ffprobe].map(|program| {
            let mut command = self.command(program, dir);
            command.arg("-version");
            command
        })
    }

    /// ffprobe with `args` (its options) describing `file`, a name inside `dir`, with any of
    /// the source formats.
    pub fn ffprobe(&self, dir: &Path, args: &[&str], file: &str) -> Command {
        let mut command = self.command(&self.ffprobe, dir);
        command
            .args(input_restrictions(&self.formats.whitelist()))
            .args(args)
            .arg(file);
        command
    }

    /// ffmpeg reading `source` in `dir` with its demuxer only, then `args` (global and output
    /// options).
    pub fn ffmpeg(&self, dir: &Path, source: &Source<'_>, args: &[String]) -> Command {
        let mut command = self.command(&self.ffmpeg, dir);
        command
            .args(input_restrictions(source.format.name()))
            .args(["-f", source.format.name()])
            .args(["-t", &format!("{:.3}", source.max_seconds.max(0.0))])
            .args([
                "-i",
                match source.input {
                    Input::File(name) => name,
                    Input::Stdin => "pipe:0",
                },
            ])
            .args(args);
        command
    }

    /// The options that add one more input to an ffmpeg of [`Sandbox::ffmpeg`]: a file of
    /// fflow's own segments (`name` inside the session directory), read with their demuxer
    /// only, at most `max_seconds`.
    pub fn own_segments_input(name: &str, max_seconds: f64) -> Vec<String> {
        let demuxer = Demuxer::own_segments();
        let mut args: Vec<String> = input_restrictions(demuxer.name()).map(str::to_owned).into();
        args.extend([
            "-f".to_owned(),
            demuxer.name().to_owned(),
            "-t".to_owned(),
            format!("{:.3}", max_seconds.max(0.0)),
            "-i".to_owned(),
            name.to_owned(),
        ]);
        args
    }

    fn command(&self, program: &str, dir: &Path) -> Command {
        let mut command = Command::new(program);
        command.env_clear().current_dir(dir);
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        command
    }
}

fn input_restrictions(demuxers: &str) -> [&str; 4] {
    [
        "-protocol_whitelist",
        PROTOCOLS,
        "-format_whitelist",
        demuxers,
    ]
}

/// The demuxer ffmpeg named when it refused to open a format the whitelist leaves out, from a
/// log line such as `[hls @ 0x55d0c] Format not on whitelist 'mov,...'`; `Some(None)` when the
/// line does not name it, `None` when the input was not refused so.
pub fn refused_format(stderr: &str) -> Option<Option<String>> {
    let line = stderr
        .lines()
        .find(|line| line.contains("Format not on whitelist"))?;
    let name = line
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(" @ "))
        .map(|(name, _)| name.to_owned())
        .filter(|name| !name.is_empty() && !name.contains(' '));
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox::new(
            "ffmpeg".to_owned(),
            "ffprobe".to_owned(),
            SourceFormats::default(),
        )
    }

    fn args_of(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|arg| arg == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    /// A child's environment holds `PATH` and nothing else, and it works in the session.
    fn assert_sandboxed(command: &Command, dir: &Path) {
        let envs: Vec<_> = command.get_envs().collect();
        let names: Vec<_> = envs.iter().map(|(name, _)| name.to_os_string()).collect();
        assert!(
            names.is_empty() || names == [OsString::from("PATH")],
            "{names:?}"
        );
        // `env -i` is how std writes a cleared environment: nothing fflow has is inherited.
        let shown = format!("{command:?}");
        assert!(shown.contains("env -i "), "{shown}");
        assert!(!shown.contains("FFLOW_"), "{shown}");
        assert_eq!(command.get_current_dir(), Some(dir));
    }

    #[test]
    fn every_child_gets_a_cleared_environment_and_the_session_directory() {
        let sandbox = sandbox();
        let dir = Path::new("/var/spool/fflow/r1/abc");
        let format = SourceFormats::default().accepted("matroska,webm").unwrap();
        let source = Source {
            input: Input::Stdin,
            format: &format,
            max_seconds: 12.0,
        };
        let encode = sandbox.ffmpeg(dir, &source, &["out/x.mpd".to_owned()]);
        assert_sandboxed(&encode, dir);
        let probe = sandbox.ffprobe(dir, &["-of", "json"], "source");
        assert_sandboxed(&probe, dir);
        for check in sandbox.version_checks(dir) {
            assert_sandboxed(&check, dir);
        }
    }

    #[test]
    fn inputs_are_read_only_through_files_and_pipes_with_allowed_demuxers() {
        let sandbox = sandbox();
        let dir = Path::new("/spool/s");
        let format = SourceFormats::default()
            .accepted("mov,mp4,m4a,3gp,3g2,mj2")
            .unwrap();
        let source = Source {
            input: Input::File("source"),
            format: &format,
            max_seconds: 9.5,
        };
        let args = args_of(&sandbox.ffmpeg(dir, &source, &["-y".to_owned(), "out".to_owned()]));
        assert_eq!(
            args[..10],
            [
                "-protocol_whitelist",
                "file,pipe",
                "-format_whitelist",
                "mov",
                "-f",
                "mov",
                "-t",
                "9.500",
                "-i",
                "source"
            ]
        );
        assert_eq!(args[10..], ["-y", "out"]);

        let stdin = Source {
            input: Input::Stdin,
            ..source
        };
        let args = args_of(&sandbox.ffmpeg(dir, &stdin, &[]));
        assert_eq!(value_of(&args, "-i"), Some("pipe:0"));

        let args = args_of(&sandbox.ffprobe(dir, &["-show_format"], "source"));
        assert_eq!(value_of(&args, "-protocol_whitelist"), Some("file,pipe"));
        assert_eq!(value_of(&args, "-format_whitelist"), Some(DEFAULT_FORMATS));
        assert_eq!(args.last().map(String::as_str), Some("source"));
    }

    #[test]
    fn a_second_input_of_own_segments_is_restricted_like_the_first() {
        assert_eq!(
            Sandbox::own_segments_input("joined.mp4", 12.5),
            [
                "-protocol_whitelist",
                "file,pipe",
                "-format_whitelist",
                "mov",
                "-f",
                "mov",
                "-t",
                "12.500",
                "-i",
                "joined.mp4"
            ]
        );
    }

    #[test]
    fn a_format_is_accepted_by_any_of_its_demuxer_names() {
        let formats: SourceFormats = "mp4, webm".parse().unwrap();
        assert_eq!(
            formats.accepted("mov,mp4,m4a,3gp,3g2,mj2").unwrap().name(),
            "mp4"
        );
        assert_eq!(formats.accepted("matroska,webm").unwrap().name(), "webm");
        assert_eq!(formats.accepted("mpegts"), None);
        assert_eq!(formats.accepted("hls"), None);
    }

    #[test]
    fn playlist_and_script_demuxers_cannot_be_configured() {
        for refused in ["hls", "mov,concat", "image2", "lavfi", "tty", "dash"] {
            let error = refused.parse::<SourceFormats>().unwrap_err();
            assert!(error.contains("cannot be a source format"), "{error}");
        }
        assert!("".parse::<SourceFormats>().is_err());
        assert!("mov,../x".parse::<SourceFormats>().is_err());
        assert_eq!(
            " mov , mov,matroska ".parse::<SourceFormats>().unwrap(),
            SourceFormats(vec!["mov".to_owned(), "matroska".to_owned()])
        );
    }

    #[test]
    fn the_default_formats_are_valid_demuxers_of_this_ffmpeg() {
        assert_eq!(DEFAULT_FORMATS.parse(), Ok(SourceFormats::default()));
        let output = Command::new("ffmpeg")
            .args(["-hide_banner", "-demuxers"])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&output.stdout);
        let demuxers: Vec<&str> = listing
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .flat_map(|names| names.split(','))
            .collect();
        for format in &SourceFormats::default().0 {
            assert!(demuxers.contains(&format.as_str()), "{format} unknown");
        }
    }

    #[test]
    fn the_refused_demuxer_is_named_from_ffmpeg_s_log() {
        let stderr = "[hls @ 0x560c62c1f280] Format not on whitelist 'mov,matroska'\n\
                      source: Invalid argument\n";
        assert_eq!(refused_format(stderr), Some(Some("hls".to_owned())));
        assert_eq!(
            refused_format("Format not on whitelist 'mov'\n"),
            Some(None)
        );
        assert_eq!(
            refused_format("source: Invalid data found when processing input"),
            None
        );
    }
}
