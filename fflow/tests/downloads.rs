#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{make_clip_of, upload, upload_with, TestEnv};
use vod_contracts::fflow::Mp4Support;
use vod_contracts::layout;
use vod_contracts::outcome::EncodeResult;

/// The top-level box types of an MP4 file, in order.
fn top_level_boxes(bytes: &[u8]) -> Vec<String> {
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
        let size = if size == 1 {
            u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize
        } else {
            size
        };
        boxes.push(kind);
        if size < 8 {
            break;
        }
        at += size;
    }
    boxes
}

/// A stream as ffprobe describes it: `(codec_type, width, height)`.
type Stream = (String, Option<u64>, Option<u64>);

/// ffprobe's duration and its streams.
fn probed(file: &Path) -> (f64, Vec<Stream>) {
    let output = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(output.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let duration = answer["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let streams = answer["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stream| {
            (
                stream["codec_type"].as_str().unwrap().to_owned(),
                stream["width"].as_u64(),
                stream["height"].as_u64(),
            )
        })
        .collect();
    (duration, streams)
}

/// ffmpeg decodes every packet of `file` without an error.
fn decodes_whole(file: &Path) {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// MD5 of the video packets of `file`, as they are, not decoded.
fn video_packets_md5(file: &Path) -> String {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "streamhash",
            "-hash",
            "md5",
            "-",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn standard_mp4_support_stores_a_faststart_mp4_and_the_sound_made_without_reencoding() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let clip = make_clip_of(env.dir.path(), 9);
    let request = upload_with(&env, &replica, &clip, Mp4Support::Standard).await;
    let target = request.target.unwrap();
    let outcome = env.next_outcome().await;
    let EncodeResult::Ready(facts) = outcome.result else {
        panic!("encode failed: {:?}", outcome.result);
    };
    let dir = layout::presentation_dir(target.video_id, target.flow_id);
    let names: Vec<&str> = facts.downloads.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["highest.mp4", "audio.m4a"]);
    let highest = &facts.downloads[0];
    assert_eq!(highest.path, format!("{dir}/highest.mp4"));
    assert_eq!((highest.width, highest.height), (Some(320), Some(240)));
    let audio = &facts.downloads[1];
    assert_eq!(audio.path, format!("{dir}/audio.m4a"));
    assert_eq!((audio.width, audio.height), (None, None));

    for download in &facts.downloads {
        let response = env
            .http
            .get(format!("http://{}/{}", env.holder_http, download.path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, download.bytes, "{}", download.name);
        let boxes = top_level_boxes(&bytes);
        let moov = boxes.iter().position(|kind| kind == "moov");
        let mdat = boxes.iter().position(|kind| kind == "mdat");
        assert!(
            moov.is_some() && mdat.is_some() && moov < mdat,
            "{}: {boxes:?}",
            download.name
        );
        assert!(!boxes.iter().any(|kind| kind == "moof"), "{boxes:?}");
        let file = env.dir.path().join(&download.name);
        std::fs::write(&file, &bytes).unwrap();
        decodes_whole(&file);
        let (duration, streams) = probed(&file);
        assert!(
            (duration - 9.0).abs() < 0.5,
            "{} lasts {duration} s",
            download.name
        );
        let kinds: Vec<&str> = streams.iter().map(|(kind, _, _)| kind.as_str()).collect();
        if download.name == "highest.mp4" {
            assert_eq!(kinds, ["video", "audio"]);
            assert_eq!((streams[0].1, streams[0].2), (Some(320), Some(240)));
            // The very packets of the stored top rendition: copied, not encoded again.
            let stored = env.holder_root.join(&dir);
            let mut rendition = std::fs::read(stored.join("init-stream0.m4s")).unwrap();
            let mut segments: Vec<_> = std::fs::read_dir(&stored)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("chunk-stream0-"))
                .collect();
            segments.sort();
            for segment in segments {
                rendition.extend(std::fs::read(stored.join(segment)).unwrap());
            }
            let rendition_file = env.dir.path().join("rendition.mp4");
            std::fs::write(&rendition_file, rendition).unwrap();
            let packets = video_packets_md5(&file);
            assert!(packets.contains("MD5="), "{packets}");
            assert_eq!(packets, video_packets_md5(&rendition_file));
        } else {
            assert_eq!(kinds, ["audio"]);
        }
    }

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn no_downloads_are_made_without_mp4_support() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let clip = make_clip_of(env.dir.path(), 3);
    let request = upload(&env, &replica, &clip).await;
    let target = request.target.unwrap();
    let outcome = env.next_outcome().await;
    let EncodeResult::Ready(facts) = outcome.result else {
        panic!("encode failed: {:?}", outcome.result);
    };
    assert!(facts.downloads.is_empty(), "{:?}", facts.downloads);
    let stored = env
        .holder_root
        .join(layout::presentation_dir(target.video_id, target.flow_id));
    assert!(stored.join("master.m3u8").exists());
    assert!(!stored.join("highest.mp4").exists());
    assert!(!stored.join("audio.m4a").exists());

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn an_audio_only_video_gets_only_audio_m4a() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let sound = common::make_with_ffmpeg(
        &env.dir.path().join("tone.m4a"),
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=5",
            "-c:a",
            "aac",
        ],
    );
    upload_with(&env, &replica, &sound, Mp4Support::Standard).await;
    let outcome = env.next_outcome().await;
    let EncodeResult::Ready(facts) = outcome.result else {
        panic!("encode failed: {:?}", outcome.result);
    };
    assert_eq!(facts.storyboard, None);
    let names: Vec<&str> = facts.downloads.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["audio.m4a"]);
    let file = env.holder_root.join(&facts.downloads[0].path);
    decodes_whole(&file);
    let (duration, streams) = probed(&file);
    assert!((duration - 5.0).abs() < 0.5, "{duration} s");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].0, "audio");

    replica.stop().await;
    env.stop().await;
}
