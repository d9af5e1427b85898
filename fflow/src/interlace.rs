//! Whether a source whose container does not say how its pictures are scanned is interlaced:
//! ffmpeg's `idet` filter over its first frames.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::probe::Scan;
use crate::sandbox::{Sandbox, Source};

/// Runs `idet` over the first `frames` frames of `source`'s picture and says what it saw.
pub async fn detect(
    sandbox: &Sandbox,
    dir: &Path,
    source: &Source<'_>,
    frames: u32,
    timeout: Duration,
) -> anyhow::Result<Scan> {
    let args: Vec<String> = [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "info",
        "-map",
        "0:v:0",
        "-vf",
        "idet",
        "-frames:v",
        &frames.to_string(),
        "-an",
        "-sn",
        "-dn",
        "-f",
        "null",
        "-",
    ]
    .map(str::to_owned)
    .into();
    let mut command = tokio::process::Command::from(sandbox.ffmpeg(dir, source, &args));
    let run = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow::anyhow!("idet did not finish within {timeout:?}"))?
        .map_err(|err| anyhow::anyhow!("failed to run ffmpeg's idet: {err}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let counts = multi_frame_counts(&stderr).ok_or_else(|| {
        anyhow::anyhow!(
            "idet reported nothing (ffmpeg exited with {})",
            output.status
        )
    })?;
    Ok(verdict(counts))
}

/// Frames `idet` found `(top field first, bottom field first, progressive)`, from its
/// `Multi frame detection: TFF: 51 BFF: 0 Progressive: 0 Undetermined: 0` line.
fn multi_frame_counts(stderr: &str) -> Option<(u64, u64, u64)> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|line| line.split_once("Multi frame detection:"))?
        .1;
    let count = |label: &str| -> Option<u64> {
        let rest = &line[line.find(label)? + label.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((count("TFF:")?, count("BFF:")?, count("Progressive:")?))
}

/// Interlaced when more frames look interlaced than progressive; undetermined frames (a still
/// picture) count for neither, and a picture with none decided is progressive.
fn verdict((top_first, bottom_first, progressive): (u64, u64, u64)) -> Scan {
    if top_first + bottom_first <= progressive {
        Scan::Progressive
    } else if top_first >= bottom_first {
        Scan::TopFieldFirst
    } else {
        Scan::BottomFieldFirst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multi_frame_line_decides() {
        let stderr = "[Parsed_idet_0 @ 0x55ff] Repeated Fields: Neither: 51 Top: 0 Bottom: 0\n\
            [Parsed_idet_0 @ 0x55ff] Single frame detection: TFF:    40 BFF:     0 \
            Progressive:    11 Undetermined:     0\n\
            [Parsed_idet_0 @ 0x55ff] Multi frame detection: TFF:    51 BFF:     0 \
            Progressive:     0 Undetermined:     0\n";
        assert_eq!(multi_frame_counts(stderr), Some((51, 0, 0)));
        assert_eq!(verdict((51, 0, 0)), Scan::TopFieldFirst);
        assert_eq!(verdict((3, 40, 2)), Scan::BottomFieldFirst);
        assert_eq!(verdict((2, 1, 90)), Scan::Progressive);
        assert_eq!(verdict((0, 0, 0)), Scan::Progressive);
        assert_eq!(multi_frame_counts("no such line"), None);
    }
}
