//! Test media: clips made with ffmpeg, ffprobe readings, and fetching a whole presentation.

use std::path::Path;
use std::process::Command;

/// Makes an MP4 clip with picture and sound.
pub fn generate_clip(path: &Path, seconds: u32, size: &str) {
    generate_clip_with(path, seconds, size, &[]);
}

/// Makes a clip with picture and sound in the container `path`'s extension names, with extra
/// output options (e.g. `-movflags +faststart`).
pub fn generate_clip_with(path: &Path, seconds: u32, size: &str, output_args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .args(output_args)
        .arg(path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the clip");
}

/// Runs ffmpeg quietly with `args` (the output last) and checks it succeeded.
pub fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The first video stream of an input as ffprobe sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct VideoStreamInfo {
    pub codec: String,
    pub pix_fmt: String,
    pub width: u32,
    pub height: u32,
}

pub fn video_stream(input: &str) -> VideoStreamInfo {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "stream=codec_name,pix_fmt,width,height",
            "-of",
            "json",
            input,
        ])
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ffprobe JSON");
    let stream = &json["streams"][0];
    VideoStreamInfo {
        codec: stream["codec_name"].as_str().unwrap_or_default().to_owned(),
        pix_fmt: stream["pix_fmt"].as_str().unwrap_or_default().to_owned(),
        width: stream["width"].as_u64().unwrap_or_default() as u32,
        height: stream["height"].as_u64().unwrap_or_default() as u32,
    }
}

/// Presentation times of every packet of an input's first video stream, in order.
pub fn video_packet_times(input: &str) -> Vec<f64> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0", input])
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe {input}");
    let mut times: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().trim_end_matches(',').parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// PSNR in dB between the first frames of two inputs of the same size (as decoders show them,
/// rotation applied).
pub fn first_frame_psnr(a: &str, b: &str) -> f64 {
    let output = Command::new("ffmpeg")
        .args([
            "-i",
            a,
            "-i",
            b,
            "-lavfi",
            "[0:v][1:v]psnr",
            "-frames:v",
            "1",
        ])
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "psnr of {a} and {b}: {stderr}");
    let average = stderr
        .split("average:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no PSNR in {stderr}"));
    if average == "inf" {
        f64::INFINITY
    } else {
        average.parse().expect("PSNR number")
    }
}

/// What ffprobe reads of an input (a file or a URL).
#[derive(Debug)]
pub struct Probe {
    pub duration_seconds: f64,
    pub codec_types: Vec<String>,
}

pub fn probe(input: &str) -> Probe {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type",
        ])
        .args(["-of", "json", input])
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ffprobe JSON");
    let duration_seconds = json["format"]["duration"]
        .as_str()
        .and_then(|value| value.parse().ok())
        .expect("duration");
    let codec_types = json["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|stream| stream["codec_type"].as_str().map(str::to_owned))
        .collect();
    Probe {
        duration_seconds,
        codec_types,
    }
}

/// Decodes the whole input and returns the duration ffmpeg reached, in seconds: proves every
/// segment is there and decodable, not only the headers.
pub fn decoded_duration(input: &str) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i", input, "-f", "null", "-"])
        .args(["-progress", "pipe:1", "-nostats"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "ffmpeg decodes {input}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("out_time_us="))
        .filter_map(|value| value.parse::<f64>().ok())
        .fold(0.0, f64::max)
        / 1_000_000.0
}

/// Presentation times of the keyframes of an input's first video stream, in seconds.
pub fn keyframe_times(input: &str) -> Vec<f64> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(input)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (time, flags) = line.split_once(',')?;
            flags.starts_with('K').then(|| time.parse::<f64>().ok())?
        })
        .collect()
}

/// The attributes of every `#EXT-X-STREAM-INF` of a master playlist, with the URI after it.
pub fn stream_infs(master: &str) -> Vec<(std::collections::HashMap<String, String>, String)> {
    let mut variants = Vec::new();
    let mut lines = master.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(attributes) = line.strip_prefix("#EXT-X-STREAM-INF:") else {
            continue;
        };
        let uri = lines.next().unwrap_or_default().to_owned();
        variants.push((hls_attributes(attributes), uri));
    }
    variants
}

/// An HLS attribute list, split at the commas outside quotes, with quotes removed.
pub fn hls_attributes(list: &str) -> std::collections::HashMap<String, String> {
    let mut attributes = std::collections::HashMap::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut flush = |current: &mut String| {
        if let Some((name, value)) = current.split_once('=') {
            attributes.insert(name.to_owned(), value.trim_matches('"').to_owned());
        }
        current.clear();
    };
    for c in list.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => flush(&mut current),
            _ => current.push(c),
        }
    }
    flush(&mut current);
    attributes
}

/// URIs a playlist references (media playlists, init segments, segments), resolved against
/// the playlist's own URL.
pub fn playlist_references(playlist_url: &str, body: &str) -> Vec<String> {
    let base = playlist_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(playlist_url);
    let mut references = Vec::new();
    for line in body.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            if let Some(start) = rest.find("URI=\"") {
                let uri = &rest[start + 5..];
                if let Some(end) = uri.find('"') {
                    references.push(format!("{base}/{}", &uri[..end]));
                }
            }
            continue;
        }
        references.push(format!("{base}/{line}"));
    }
    references
}

/// Segment file names an MPD references through `SegmentTemplate` and `SegmentTimeline`
/// (the `$RepresentationID$` and `$Number%05d$` forms ffmpeg writes).
pub fn mpd_references(mpd_url: &str, mpd: &str) -> Vec<String> {
    let base = mpd_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(mpd_url);
    let mut references = Vec::new();
    for representation in mpd.split("<Representation ").skip(1) {
        let id = attribute(representation, "id").expect("Representation id");
        let template = representation
            .split("<SegmentTemplate ")
            .nth(1)
            .expect("SegmentTemplate inside the Representation");
        let start_number: u64 = attribute(template, "startNumber")
            .and_then(|value| value.parse().ok())
            .unwrap_or(1);
        let init = attribute(template, "initialization").expect("initialization");
        let media = attribute(template, "media").expect("media");
        references.push(format!(
            "{base}/{}",
            init.replace("$RepresentationID$", &id)
        ));
        let timeline = template.split("</SegmentTimeline>").next().unwrap_or("");
        let mut count = 0u64;
        for segment in timeline.split("<S ").skip(1) {
            count += 1 + attribute(segment, "r")
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0);
        }
        assert!(count > 0, "representation {id} lists segments");
        for number in start_number..start_number + count {
            let name = media
                .replace("$RepresentationID$", &id)
                .replace("$Number%05d$", &format!("{number:05}"))
                .replace("$Number$", &number.to_string());
            references.push(format!("{base}/{name}"));
        }
    }
    references
}

fn attribute(element: &str, name: &str) -> Option<String> {
    let tag_end = element.find('>').unwrap_or(element.len());
    let tag = &element[..tag_end];
    let needle = format!(" {name}=\"");
    let start = format!(" {tag}").find(&needle)? + needle.len() - 1;
    let rest = &tag[start..];
    rest.find('"').map(|end| rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpd_segments_are_listed_from_the_timeline() {
        let mpd = r#"<MPD><Period><AdaptationSet>
<Representation id="0" mimeType="video/mp4">
<SegmentTemplate timescale="1000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
<SegmentTimeline><S t="0" d="4000" r="1" /><S d="2000" /></SegmentTimeline>
</SegmentTemplate></Representation></AdaptationSet></Period></MPD>"#;
        let references = mpd_references("http://h/v/manifest.mpd", mpd);
        assert_eq!(
            references,
            vec![
                "http://h/v/init-stream0.m4s",
                "http://h/v/chunk-stream0-00001.m4s",
                "http://h/v/chunk-stream0-00002.m4s",
                "http://h/v/chunk-stream0-00003.m4s",
            ]
        );
    }

    #[test]
    fn stream_infs_keep_quoted_commas() {
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=5,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=2x2\nmedia_0.m3u8\n";
        let variants = stream_infs(master);
        assert_eq!(variants.len(), 1);
        let (attributes, uri) = &variants[0];
        assert_eq!(uri, "media_0.m3u8");
        assert_eq!(attributes["CODECS"], "avc1.64001f,mp4a.40.2");
        assert_eq!(attributes["BANDWIDTH"], "5");
        assert_eq!(attributes["RESOLUTION"], "2x2");
    }

    #[test]
    fn playlist_references_include_map_uris() {
        let body = "#EXTM3U\n#EXT-X-MAP:URI=\"init-stream0.m4s\"\n#EXTINF:4.0,\nchunk-stream0-00001.m4s\n#EXT-X-ENDLIST\n";
        assert_eq!(
            playlist_references("http://h/v/media_0.m3u8", body),
            vec![
                "http://h/v/init-stream0.m4s",
                "http://h/v/chunk-stream0-00001.m4s"
            ]
        );
    }
}
