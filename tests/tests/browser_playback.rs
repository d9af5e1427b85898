//! Presentations play in the web players sites embed: Shaka Player, dash.js and hls.js in
//! headless Chromium (see `vod_tests::browser`), fetching manifests and segments from holder as
//! a page on another origin does. One stack serves every case.

use std::path::Path;

use vod_contracts::api::{Playback as PlaybackUrls, VideoView};
use vod_contracts::VideoStatus;
use vod_tests::browser::{play, Playback, Player};
use vod_tests::media::ffmpeg;
use vod_tests::{Stack, TestEnv};

/// Makes `output` with ffmpeg from `args`, separated by spaces.
fn make(output: &Path, args: &str) {
    let mut all: Vec<&str> = args.split_whitespace().collect();
    all.push(output.to_str().expect("utf-8 path"));
    ffmpeg(&all);
}

/// Uploads the file at `path` and waits until its video is READY.
async fn upload_until_ready(stack: &Stack, path: &Path) -> PlaybackUrls {
    let bytes = std::fs::read(path).expect("test input");
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("input");
    let upload = stack.upload_in_pieces(&bytes, name, 2).await;
    let video: VideoView = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{name}: {video:#?}");
    video.playback.expect("a ready video has playback URLs")
}

async fn play_to_the_end(player: Player, manifest: &str) -> Playback {
    let playback = play(player, manifest).await;
    assert!(
        playback.reached_the_end(),
        "{player:?} did not play {manifest} to its end: {playback:#?}"
    );
    playback
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_players_offer_every_sound_track_and_play_a_one_frame_source() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let two_languages = env.dir.path().join("two-languages.mkv");
    // English stereo, then French 5.1.
    make(
        &two_languages,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 \
         -f lavfi -i sine=frequency=660,aformat=channel_layouts=5.1 -t 3 -map 0 -map 1 -map 2 \
         -c:v libx264 -pix_fmt yuv420p -c:a aac -ac:a:0 2 -metadata:s:a:0 language=eng \
         -metadata:s:a:1 language=fre -f matroska",
    );
    // Two sound tracks in English: the film and a commentary.
    let two_english = env.dir.path().join("two-english.mkv");
    make(
        &two_english,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 \
         -f lavfi -i sine=frequency=880 -t 2 -map 0 -map 1 -map 2 -c:v libx264 -pix_fmt yuv420p \
         -c:a aac -metadata:s:a language=eng -metadata:s:a:1 title=Commentary -f matroska",
    );
    let one_frame = env.dir.path().join("one-frame.mp4");
    make(
        &one_frame,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 1 -c:v libx264 -pix_fmt yuv420p",
    );
    let (two_languages, two_english, one_frame) = tokio::join!(
        upload_until_ready(&stack, &two_languages),
        upload_until_ready(&stack, &two_english),
        upload_until_ready(&stack, &one_frame)
    );

    for (player, manifest) in [
        (Player::Shaka, &two_languages.dash),
        (Player::Shaka, &two_languages.hls),
        (Player::DashJs, &two_languages.dash),
        (Player::HlsJs, &two_languages.hls),
    ] {
        let playback = play_to_the_end(player, manifest).await;
        assert_eq!(
            playback.audio_languages(),
            ["en", "fr"],
            "{player:?} on {manifest}: {playback:#?}"
        );
        assert_eq!(
            playback.audio_labels(),
            ["English", "French"],
            "{player:?} on {manifest}: {playback:#?}"
        );
        assert!(
            (playback.played - 3.0).abs() < 0.1,
            "{player:?} played {} s of 3",
            playback.played
        );
    }

    // Each English track is offered on its own, by its name.
    for (player, manifest) in [
        (Player::Shaka, &two_english.dash),
        (Player::DashJs, &two_english.dash),
        (Player::HlsJs, &two_english.hls),
    ] {
        let playback = play_to_the_end(player, manifest).await;
        assert_eq!(
            playback.audio_languages(),
            ["en", "en"],
            "{player:?} on {manifest}: {playback:#?}"
        );
        assert_eq!(
            playback.audio_labels(),
            ["English", "Commentary"],
            "{player:?} on {manifest}: {playback:#?}"
        );
    }

    for (player, manifest) in [
        (Player::Shaka, &one_frame.dash),
        (Player::DashJs, &one_frame.dash),
        (Player::HlsJs, &one_frame.hls),
    ] {
        let playback = play_to_the_end(player, manifest).await;
        assert_eq!(playback.audio_tracks, [], "{player:?}: {playback:#?}");
    }
    stack.shutdown().await;
}
