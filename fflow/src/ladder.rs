//! The bitrate ladder: the table of rungs (configuration) and the renditions chosen from it for
//! one source.
//!
//! A rung is named by the short side of its picture (the height of a landscape picture, the
//! width of a portrait one), so a phone video filmed upright gets the same quality steps as a
//! landscape one. A source gets every rung at or below its short side; a source just under a
//! rung (within 10 %) gets that rung at its own size rather than losing a step; a source smaller
//! than every rung gets one rendition at its own size. Nothing is ever upscaled.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// One step of the ladder, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    /// Short side of the picture, in pixels; even.
    pub size: u32,
    /// Target video bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Peak the encoder's rate control may not exceed (`-maxrate`), kbit/s.
    pub maxrate_kbps: u32,
    /// Rate-control buffer (`-bufsize`), kbit.
    pub bufsize_kbit: u32,
}

/// The configured rungs, tallest first (`FFLOW_LADDER`).
///
/// Written as `size:bitrate:maxrate:bufsize` per rung (kbit/s, kbit), comma-separated, e.g.
/// `720:2800:2996:4200,360:800:856:1200`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Ladder {
    rungs: Vec<Rung>,
}

/// The default table: common streaming steps with a 7 % peak allowance and a 1.5 s buffer.
pub const DEFAULT_LADDER: &str = "1080:5000:5350:7500,720:2800:2996:4200,480:1400:1498:2100,\
                                  360:800:856:1200,240:400:428:600";

impl Default for Ladder {
    fn default() -> Self {
        DEFAULT_LADDER
            .parse()
            .unwrap_or_else(|_| Ladder { rungs: Vec::new() })
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid ladder rung {rung:?}: {problem}")]
pub struct LadderError {
    rung: String,
    problem: &'static str,
}

impl FromStr for Ladder {
    type Err = LadderError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut rungs = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let error = |problem| LadderError {
                rung: part.to_owned(),
                problem,
            };
            let numbers: Vec<u32> = part
                .split(':')
                .map(|number| number.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| error("expected size:bitrate:maxrate:bufsize in whole numbers"))?;
            let [size, bitrate_kbps, maxrate_kbps, bufsize_kbit] = numbers[..] else {
                return Err(error("expected size:bitrate:maxrate:bufsize"));
            };
            if size < 2 || size % 2 != 0 || size > 8192 {
                return Err(error("the size must be even, between 2 and 8192"));
            }
            if bitrate_kbps == 0 || maxrate_kbps < bitrate_kbps || bufsize_kbit == 0 {
                return Err(error(
                    "bitrate and bufsize must be positive and maxrate at least the bitrate",
                ));
            }
            if rungs.iter().any(|rung: &Rung| rung.size == size) {
                return Err(error("two rungs have the same size"));
            }
            rungs.push(Rung {
                size,
                bitrate_kbps,
                maxrate_kbps,
                bufsize_kbit,
            });
        }
        if rungs.is_empty() {
            return Err(LadderError {
                rung: text.to_owned(),
                problem: "the ladder has no rung",
            });
        }
        rungs.sort_by_key(|rung| std::cmp::Reverse(rung.size));
        Ok(Ladder { rungs })
    }
}

impl TryFrom<String> for Ladder {
    type Error = LadderError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rungs: Vec<String> = self
            .rungs
            .iter()
            .map(|rung| {
                format!(
                    "{}:{}:{}:{}",
                    rung.size, rung.bitrate_kbps, rung.maxrate_kbps, rung.bufsize_kbit
                )
            })
            .collect();
        f.write_str(&rungs.join(","))
    }
}

impl Ladder {
    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }
}

/// A picture's displayed shape: width and height after rotation and pixel aspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisplaySize {
    pub width: u32,
    pub height: u32,
    /// Display aspect ratio as a reduced fraction `width_ratio:height_ratio`; exact even when
    /// `width` and `height` were rounded.
    pub aspect: (u64, u64),
}

impl DisplaySize {
    /// From the stored size, the sample (pixel) aspect ratio and the rotation in degrees.
    pub fn new(width: u32, height: u32, sample_aspect: (u32, u32), rotation: i32) -> Self {
        let (sar_num, sar_den) = match sample_aspect {
            (num, den) if num > 0 && den > 0 => (u64::from(num), u64::from(den)),
            _ => (1, 1),
        };
        let mut aspect = reduce(u64::from(width) * sar_num, u64::from(height) * sar_den);
        let display_width = (u64::from(width) * sar_num) as f64 / sar_den as f64;
        let mut display = (display_width.round().max(1.0) as u32, height);
        if rotation.rem_euclid(180) == 90 {
            display = (display.1, display.0);
            aspect = (aspect.1, aspect.0);
        }
        Self {
            width: display.0,
            height: display.1,
            aspect,
        }
    }

    fn short_side(&self) -> u32 {
        self.width.min(self.height)
    }

    fn is_portrait(&self) -> bool {
        self.height > self.width
    }
}

/// One rendition to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    /// Pixel aspect that makes `width:height` show the source's exact display aspect.
    pub sample_aspect: (u64, u64),
    pub rung: Rung,
}

/// How close below a rung a source may be and still get that rung, at its own size.
const NEAR_RUNG_PERCENT: u64 = 90;

/// The renditions of a source, tallest first.
pub fn renditions(source: DisplaySize, ladder: &Ladder) -> Vec<Rendition> {
    let short = source.short_side();
    let mut chosen: Vec<(u32, Rung)> = Vec::new();
    let next_up = ladder.rungs.iter().rev().find(|rung| rung.size > short);
    if let Some(rung) = next_up {
        if u64::from(short) * 100 >= u64::from(rung.size) * NEAR_RUNG_PERCENT {
            chosen.push((even_floor(short), *rung));
        }
    }
    chosen.extend(
        ladder
            .rungs
            .iter()
            .filter(|rung| rung.size <= short)
            .map(|rung| (rung.size, *rung)),
    );
    if chosen.is_empty() {
        if let Some(smallest) = ladder.rungs.last() {
            chosen.push((even_floor(short), *smallest));
        }
    }
    chosen.dedup_by_key(|(size, _)| *size);
    chosen
        .into_iter()
        .map(|(short_side, rung)| sized(source, short_side, rung))
        .collect()
}

fn sized(source: DisplaySize, short_side: u32, rung: Rung) -> Rendition {
    let (aspect_w, aspect_h) = source.aspect;
    let (long_ratio, short_ratio) = if source.is_portrait() {
        (aspect_h, aspect_w)
    } else {
        (aspect_w, aspect_h)
    };
    let long_side =
        even_round(u64::from(short_side) as f64 * long_ratio as f64 / short_ratio as f64);
    let (width, height) = if source.is_portrait() {
        (short_side, long_side)
    } else {
        (long_side, short_side)
    };
    // width * sar / height == aspect_w / aspect_h
    let sample_aspect = reduce(aspect_w * u64::from(height), aspect_h * u64::from(width));
    Rendition {
        width,
        height,
        sample_aspect,
        rung,
    }
}

fn even_floor(size: u32) -> u32 {
    (size & !1).max(2)
}

fn even_round(size: f64) -> u32 {
    let rounded = ((size / 2.0).round() * 2.0) as u32;
    rounded.max(2)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn reduce(num: u64, den: u64) -> (u64, u64) {
    match gcd(num, den) {
        0 => (1, 1),
        divisor => (num / divisor, den / divisor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(source: DisplaySize) -> Vec<(u32, u32)> {
        renditions(source, &Ladder::default())
            .iter()
            .map(|rendition| (rendition.width, rendition.height))
            .collect()
    }

    fn square(width: u32, height: u32) -> DisplaySize {
        DisplaySize::new(width, height, (1, 1), 0)
    }

    #[test]
    fn default_ladder_parses_tallest_first() {
        let ladder = Ladder::default();
        let sizes: Vec<u32> = ladder.rungs().iter().map(|rung| rung.size).collect();
        assert_eq!(sizes, [1080, 720, 480, 360, 240]);
        assert_eq!(ladder.to_string().parse::<Ladder>(), Ok(ladder));
    }

    #[test]
    fn bad_ladders_are_refused_with_the_rung() {
        for bad in [
            "",
            "720",
            "720:a:b:c",
            "721:2800:2996:4200",
            "720:2800:2000:4200",
            "720:0:0:1",
            "720:1:1:1,720:2:2:2",
        ] {
            assert!(bad.parse::<Ladder>().is_err(), "{bad:?} accepted");
        }
        let error = "720:2800:2996:4200,361:1:1:1"
            .parse::<Ladder>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("361:1:1:1"), "{error}");
    }

    #[test]
    fn hd_source_gets_every_rung_at_or_below_its_height() {
        assert_eq!(
            sizes(square(1280, 720)),
            [(1280, 720), (854, 480), (640, 360), (426, 240)]
        );
        assert_eq!(sizes(square(3840, 2160))[0], (1920, 1080));
        assert_eq!(sizes(square(3840, 2160)).len(), 5);
    }

    #[test]
    fn every_rendition_shows_the_source_aspect_exactly() {
        for source in [square(1280, 720), square(853, 479), square(1080, 1920)] {
            for rendition in renditions(source, &Ladder::default()) {
                let (sar_num, sar_den) = rendition.sample_aspect;
                let shown = reduce(
                    u64::from(rendition.width) * sar_num,
                    u64::from(rendition.height) * sar_den,
                );
                assert_eq!(shown, source.aspect, "{rendition:?}");
                assert_eq!(rendition.width % 2, 0, "{rendition:?}");
                assert_eq!(rendition.height % 2, 0, "{rendition:?}");
            }
        }
    }

    #[test]
    fn source_just_below_a_rung_gets_it_at_its_own_size() {
        assert_eq!(
            sizes(square(853, 479)),
            [(852, 478), (642, 360), (428, 240)]
        );
        assert_eq!(sizes(square(1280, 700))[0], (1280, 700));
    }

    #[test]
    fn tiny_source_gets_one_rendition_at_its_own_size() {
        assert_eq!(sizes(square(160, 120)), [(160, 120)]);
        assert_eq!(sizes(square(320, 240)), [(320, 240)]);
        assert_eq!(sizes(square(161, 121)), [(160, 120)]);
    }

    #[test]
    fn portrait_source_keeps_its_shape() {
        assert_eq!(
            sizes(square(1080, 1920)),
            [
                (1080, 1920),
                (720, 1280),
                (480, 854),
                (360, 640),
                (240, 426)
            ]
        );
        let rotated = DisplaySize::new(1920, 1080, (1, 1), -90);
        assert_eq!((rotated.width, rotated.height), (1080, 1920));
        assert_eq!(sizes(rotated)[0], (1080, 1920));
    }

    #[test]
    fn non_square_pixels_are_displayed_at_their_aspect() {
        // DVD-style anamorphic 16:9: 720x576 with 64:45 pixels shows as 1024x576.
        let source = DisplaySize::new(720, 576, (64, 45), 0);
        assert_eq!((source.width, source.height), (1024, 576));
        assert_eq!(source.aspect, (16, 9));
        assert_eq!(sizes(source), [(854, 480), (640, 360), (426, 240)]);
    }
}
