#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{make_clip_of, upload, TestEnv};
use vod_contracts::layout;
use vod_contracts::outcome::EncodeResult;

/// One cue of a storyboard track: its times in seconds and its tile's rectangle.
#[derive(Debug)]
struct Cue {
    start: f64,
    end: f64,
    image: String,
    rect: [u32; 4],
}

fn seconds(time: &str) -> f64 {
    let parts: Vec<f64> = time.split(':').map(|part| part.parse().unwrap()).collect();
    parts.iter().fold(0.0, |total, part| total * 60.0 + part)
}

fn cues(vtt: &str) -> Vec<Cue> {
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    let lines: Vec<&str> = vtt.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let (start, end) = pair[0].split_once(" --> ")?;
            let (image, rect) = pair[1].split_once("#xywh=")?;
            let rect: Vec<u32> = rect.split(',').map(|n| n.parse().unwrap()).collect();
            Some(Cue {
                start: seconds(start),
                end: seconds(end),
                image: image.to_owned(),
                rect: rect.try_into().unwrap(),
            })
        })
        .collect()
}

/// The size ffprobe reads from `image`, after ffmpeg decoded it whole without an error.
fn decoded_size(image: &Path) -> (u32, u32) {
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(image)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let probed = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(image)
        .output()
        .unwrap();
    let text = String::from_utf8(probed.stdout).unwrap();
    let fields: Vec<&str> = text.trim().split(',').collect();
    assert_eq!(fields[0], "mjpeg", "{text}");
    (fields[1].parse().unwrap(), fields[2].parse().unwrap())
}

#[tokio::test]
async fn storyboard_cues_cover_the_duration_with_tiles_inside_the_decoded_image() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    // 21 s at a tile every 2 s: 11 tiles, a full row of 10 and one more.
    let clip = make_clip_of(env.dir.path(), 21);
    let request = upload(&env, &replica, &clip).await;
    let target = request.target.unwrap();
    let outcome = env.next_outcome().await;
    let EncodeResult::Ready(facts) = outcome.result else {
        panic!("encode failed: {:?}", outcome.result);
    };
    let dir = layout::presentation_dir(target.video_id, target.flow_id);
    let storyboard = facts.storyboard.clone().expect("a storyboard");
    assert_eq!(storyboard.image_path, format!("{dir}/storyboard.jpg"));
    assert_eq!(storyboard.vtt_path, format!("{dir}/storyboard.vtt"));
    assert_eq!(storyboard.interval_ms, 2000);
    // 320x240 tiles are 160x120, ten to a row.
    assert_eq!((storyboard.width, storyboard.height), (1600, 240));

    // As a player gets them: over holder's HTTP.
    let vtt = env
        .http
        .get(format!(
            "http://{}/{}",
            env.holder_http, storyboard.vtt_path
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(vtt.status(), reqwest::StatusCode::OK);
    assert_eq!(vtt.headers()["content-type"], "text/vtt");
    let vtt = vtt.text().await.unwrap();
    let image = env
        .http
        .get(format!(
            "http://{}/{}",
            env.holder_http, storyboard.image_path
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), reqwest::StatusCode::OK);
    let image_file = env.dir.path().join("storyboard.jpg");
    std::fs::write(&image_file, image.bytes().await.unwrap()).unwrap();
    let (width, height) = decoded_size(&image_file);
    assert_eq!((width, height), (storyboard.width, storyboard.height));

    let cues = cues(&vtt);
    assert_eq!(cues.len(), 11, "{vtt}");
    assert_eq!(cues[0].start, 0.0, "{vtt}");
    for pair in cues.windows(2) {
        assert!((pair[1].start - pair[0].end).abs() < 1e-9, "{vtt}");
    }
    let last = cues.last().unwrap();
    assert!(
        (last.end - facts.duration_seconds).abs() < 0.1,
        "cues end at {} of {} s",
        last.end,
        facts.duration_seconds
    );
    for cue in &cues {
        assert!(cue.end > cue.start, "{cue:?}");
        assert_eq!(cue.image, "storyboard.jpg");
        let [x, y, w, h] = cue.rect;
        assert!(w > 0 && h > 0, "{cue:?}");
        assert!(
            x + w <= width && y + h <= height,
            "{cue:?} outside {width}x{height}"
        );
    }
    assert_eq!(cues[10].rect, [0, 120, 160, 120]);

    replica.stop().await;
    env.stop().await;
}
