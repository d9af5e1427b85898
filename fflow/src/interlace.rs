//! Whether a source whose container does not say it is interlaced is: ffmpeg's `idet` filter
//! over its first frames. A source whose container says nothing is interlaced when more than
//! two in three of the frames decided show one field order; one whose container says
//! progressive (an editor's export of a woven capture) only when more than four in five do.
//! Sharp-edged progressive pictures make `idet` see both orders at once, about as often each
//! (testsrc2 at 320x240: 48 top first, 44 bottom first, 8 progressive), never mostly one.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::probe::Scan;
use crate::sandbox::{Sandbox, Source};

/// Runs `idet` over the first `frames` frames of `source`'s picture and says how it is scanned,
/// given what its container says (`Progressive` or `Unknown`).
pub async fn detect(
    sandbox: &Sandbox,
    dir: &Path,
    source: &Source<'_>,
    frames: u32,
    timeout: Duration,
    container: Scan,
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
    Ok(verdict(counts, container))
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

/// Interlaced when one field order is seen in more than twice as many frames as the other order
/// and progressive together, or four times when the container says progressive; undetermined
/// frames (a still picture) count for nothing, and a picture with none decided is progressive.
fn verdict((top_first, bottom_first, progressive): (u64, u64, u64), container: Scan) -> Scan {
    let (dominant, order) = if top_first >= bottom_first {
        (top_first, Scan::TopFieldFirst)
    } else {
        (bottom_first, Scan::BottomFieldFirst)
    };
    let rest = top_first.min(bottom_first) + progressive;
    let weight = if container == Scan::Progressive { 4 } else { 2 };
    if dominant > rest * weight {
        order
    } else {
        Scan::Progressive
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
        assert_eq!(multi_frame_counts("no such line"), None);
    }

    #[test]
    fn one_field_order_must_dominate() {
        for container in [Scan::Unknown, Scan::Progressive] {
            assert_eq!(verdict((51, 0, 0), container), Scan::TopFieldFirst);
            assert_eq!(verdict((3, 40, 2), container), Scan::BottomFieldFirst);
            assert_eq!(verdict((2, 1, 90), container), Scan::Progressive);
            assert_eq!(verdict((0, 0, 0), container), Scan::Progressive);
            // What idet makes of testsrc2 at 25p: both orders, so progressive.
            assert_eq!(verdict((48, 44, 8), container), Scan::Progressive);
            assert_eq!(verdict((34, 22, 19), container), Scan::Progressive);
        }
        assert_eq!(verdict((60, 5, 20), Scan::Unknown), Scan::TopFieldFirst);
        assert_eq!(verdict((50, 5, 20), Scan::Unknown), Scan::Progressive);
        assert_eq!(verdict((60, 5, 20), Scan::Progressive), Scan::Progressive);
        assert_eq!(verdict((80, 0, 20), Scan::Progressive), Scan::Progressive);
        assert_eq!(verdict((81, 0, 20), Scan::Progressive), Scan::TopFieldFirst);
    }
}
