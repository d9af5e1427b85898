//! The seek-bar preview of a presentation: `storyboard.jpg`, a grid of small frames taken at a
//! regular interval, and `storyboard.vtt`, whose cues name each frame's rectangle in the grid
//! (`storyboard.jpg#xywh=x,y,w,h`). The grid is made after the encode from the smallest
//! rendition: a frame every interval, scaled down, tiled, written once at the end. (As a branch
//! of the encode's own decode it cost nothing measurable, but ffmpeg 5.1 reports no progress
//! while an output has written nothing, which blinds the watchdog and the progress reports.)
//! Its layout is fixed before the encode from the probed duration, so the image, and the
//! memory ffmpeg holds for it, are bounded by `FFLOW_STORYBOARD_MAX_TILES`.

use std::fmt::Write as _;

#[cfg(test)]
use vod_contracts::layout::STORYBOARD_IMAGE;

/// Tiles in a row of the grid, at most.
const COLUMNS: u32 = 10;

/// How the storyboard of one encode is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storyboard {
    /// Time between two tiles.
    pub interval_ms: u64,
    pub columns: u32,
    pub rows: u32,
    pub tile_width: u32,
    pub tile_height: u32,
}

/// What the storyboard is made from.
#[derive(Clone, Copy, Debug)]
pub struct StoryboardSettings {
    /// At most this many tiles; a longer source gets a longer interval.
    pub max_tiles: u32,
    /// Tiles are at least this far apart.
    pub min_interval_ms: u64,
    /// The longer side of a tile, in pixels.
    pub tile_size: u32,
}

impl Storyboard {
    /// The layout for a picture of `duration_seconds` shown at `display_width` x
    /// `display_height`: tiles at a regular interval covering the duration, no more than
    /// `max_tiles`; `None` when the duration is unknown.
    pub fn plan(
        settings: StoryboardSettings,
        duration_seconds: f64,
        display_width: u32,
        display_height: u32,
    ) -> Option<Self> {
        if !duration_seconds.is_finite() || duration_seconds <= 0.0 || settings.max_tiles == 0 {
            return None;
        }
        let duration_ms = (duration_seconds * 1000.0).ceil() as u64;
        let max_tiles = u64::from(settings.max_tiles);
        let interval_ms = duration_ms
            .div_ceil(max_tiles)
            .max(settings.min_interval_ms)
            .max(1);
        let tiles = u32::try_from(duration_ms.div_ceil(interval_ms).clamp(1, max_tiles)).ok()?;
        let columns = tiles.min(COLUMNS);
        let rows = tiles.div_ceil(columns);
        let (tile_width, tile_height) =
            tile_size(settings.tile_size, display_width, display_height);
        Some(Self {
            interval_ms,
            columns,
            rows,
            tile_width,
            tile_height,
        })
    }

    pub fn tiles(&self) -> u32 {
        self.columns * self.rows
    }

    /// Width and height of the whole image.
    pub fn image_size(&self) -> (u32, u32) {
        (self.columns * self.tile_width, self.rows * self.tile_height)
    }

    /// The filters after the decoded picture: one frame per interval (the one nearest each
    /// tile's time), scaled, tiled into the grid, which ffmpeg writes when the grid is full or
    /// the picture ends (empty tiles stay black).
    pub fn filters(&self) -> String {
        format!(
            "fps=1000/{},scale={}:{},setsar=1,tile={}x{}",
            self.interval_ms, self.tile_width, self.tile_height, self.columns, self.rows
        )
    }

    /// The filters that make the grid of a picture's first frame alone, the other tiles
    /// black.
    pub fn filters_of_first_frame(&self) -> String {
        format!(
            "scale={}:{},setsar=1,tile={}x{}",
            self.tile_width, self.tile_height, self.columns, self.rows
        )
    }

    /// The WebVTT track of a presentation of `duration_seconds`: one cue per tile, back to
    /// back from 0 to the duration, each naming its tile in `image` (as the track refers to
    /// it, relative to the track). A picture longer than the grid holds (its duration was
    /// underestimated before the encode) stretches the last tile's cue to its end.
    pub fn vtt(&self, duration_seconds: f64, image: &str) -> String {
        let duration_ms = if duration_seconds.is_finite() && duration_seconds > 0.0 {
            (duration_seconds * 1000.0).round() as u64
        } else {
            self.interval_ms
        };
        let tiles = duration_ms
            .div_ceil(self.interval_ms)
            .clamp(1, u64::from(self.tiles()));
        let mut text = String::from("WEBVTT\n");
        for tile in 0..tiles {
            let start = tile * self.interval_ms;
            let end = if tile + 1 == tiles {
                duration_ms
            } else {
                start + self.interval_ms
            };
            let column = u32::try_from(tile % u64::from(self.columns)).unwrap_or(0);
            let row = u32::try_from(tile / u64::from(self.columns)).unwrap_or(0);
            let _ = write!(
                text,
                "\n{} --> {}\n{image}#xywh={},{},{},{}\n",
                timestamp(start),
                timestamp(end),
                column * self.tile_width,
                row * self.tile_height,
                self.tile_width,
                self.tile_height,
            );
        }
        text
    }
}

/// A tile of the picture's display aspect whose longer side is `size`, both sides even.
fn tile_size(size: u32, display_width: u32, display_height: u32) -> (u32, u32) {
    let even = |side: f64| ((side / 2.0).round() as u32).max(1) * 2;
    let (width, height) = (
        f64::from(display_width.max(1)),
        f64::from(display_height.max(1)),
    );
    let size = f64::from(size);
    if width >= height {
        (even(size), even(size * height / width))
    } else {
        (even(size * width / height), even(size))
    }
}

/// `hh:mm:ss.mmm`, as WebVTT writes a time.
fn timestamp(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StoryboardSettings {
        StoryboardSettings {
            max_tiles: 100,
            min_interval_ms: 2000,
            tile_size: 160,
        }
    }

    #[test]
    fn a_short_picture_gets_a_tile_every_minimum_interval() {
        let board = Storyboard::plan(settings(), 23.0, 1280, 720).unwrap();
        assert_eq!(board.interval_ms, 2000);
        assert_eq!((board.columns, board.rows), (10, 2));
        assert_eq!((board.tile_width, board.tile_height), (160, 90));
        assert_eq!(board.image_size(), (1600, 180));
        assert_eq!(
            board.filters(),
            "fps=1000/2000,scale=160:90,setsar=1,tile=10x2"
        );

        let tiny = Storyboard::plan(settings(), 3.0, 1280, 720).unwrap();
        assert_eq!((tiny.columns, tiny.rows), (2, 1));
    }

    #[test]
    fn a_long_picture_is_held_in_the_maximum_number_of_tiles() {
        for seconds in [201.0, 3600.0, 12.0 * 3600.0 + 0.7] {
            let board = Storyboard::plan(settings(), seconds, 1920, 1080).unwrap();
            assert!(board.tiles() <= 100, "{board:?}");
            assert!(
                board.interval_ms * u64::from(board.tiles()) >= (seconds * 1000.0) as u64,
                "{board:?} does not cover {seconds} s"
            );
        }
        let hour = Storyboard::plan(settings(), 3600.0, 1920, 1080).unwrap();
        assert_eq!(hour.interval_ms, 36_000);
        assert_eq!((hour.columns, hour.rows), (10, 10));
    }

    #[test]
    fn portrait_tiles_keep_the_display_aspect() {
        let board = Storyboard::plan(settings(), 10.0, 720, 1280).unwrap();
        assert_eq!((board.tile_width, board.tile_height), (90, 160));
    }

    #[test]
    fn no_storyboard_without_a_duration() {
        assert_eq!(Storyboard::plan(settings(), 0.0, 640, 360), None);
        assert_eq!(Storyboard::plan(settings(), f64::NAN, 640, 360), None);
    }

    #[test]
    fn cues_run_back_to_back_to_the_end_and_name_their_tile() {
        let board = Storyboard::plan(settings(), 23.0, 1280, 720).unwrap();
        let vtt = board.vtt(23.04, STORYBOARD_IMAGE);
        assert!(vtt.starts_with(
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nstoryboard.jpg#xywh=0,0,160,90\n"
        ));
        assert!(vtt.contains("00:00:18.000 --> 00:00:20.000\nstoryboard.jpg#xywh=1440,0,160,90\n"));
        assert!(vtt.contains("00:00:20.000 --> 00:00:22.000\nstoryboard.jpg#xywh=0,90,160,90\n"));
        assert!(vtt.ends_with("00:00:22.000 --> 00:00:23.040\nstoryboard.jpg#xywh=160,90,160,90\n"));
        assert_eq!(vtt.matches(" --> ").count(), 12);

        // Longer than planned: the last tile's cue reaches the end.
        let vtt = board.vtt(3725.5, STORYBOARD_IMAGE);
        assert!(
            vtt.ends_with("00:00:38.000 --> 01:02:05.500\nstoryboard.jpg#xywh=1440,90,160,90\n")
        );
    }
}
