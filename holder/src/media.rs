//! What players must be told about each kind of file: its media type and how long to cache it.

use axum::http::HeaderValue;

/// How a file may be cached once published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Segments, init segments, images, subtitles: written once under a new name, never changed.
    Immutable,
    /// Playlists, manifests, metadata: may be rewritten in place.
    ShortLived,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType {
    pub content_type: &'static str,
    pub caching: Caching,
}

/// The media type of `path` from its extension, `None` for files players do not ask for.
pub fn media_type(path: &str) -> Option<MediaType> {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = file_name.rsplit_once('.')?;
    let (content_type, caching) = match extension.to_ascii_lowercase().as_str() {
        "m3u8" => ("application/vnd.apple.mpegurl", Caching::ShortLived),
        "mpd" => ("application/dash+xml", Caching::ShortLived),
        "json" => ("application/json", Caching::ShortLived),
        "m4s" => ("video/iso.segment", Caching::Immutable),
        "mp4" => ("video/mp4", Caching::Immutable),
        "ts" => ("video/mp2t", Caching::Immutable),
        "jpg" | "jpeg" => ("image/jpeg", Caching::Immutable),
        "vtt" => ("text/vtt", Caching::Immutable),
        _ => return None,
    };
    Some(MediaType {
        content_type,
        caching,
    })
}

/// `Cache-Control` values, rendered once at start-up.
#[derive(Clone, Debug)]
pub struct CachePolicy {
    immutable: HeaderValue,
    short_lived: HeaderValue,
}

impl CachePolicy {
    pub fn new(segment_max_age_secs: u64, playlist_max_age_secs: u64) -> Self {
        Self {
            immutable: header_value(format!("public, max-age={segment_max_age_secs}, immutable")),
            short_lived: header_value(format!("public, max-age={playlist_max_age_secs}")),
        }
    }

    pub fn header(&self, caching: Caching) -> HeaderValue {
        match caching {
            Caching::Immutable => self.immutable.clone(),
            Caching::ShortLived => self.short_lived.clone(),
        }
    }
}

fn header_value(text: String) -> HeaderValue {
    // Letters, digits, commas and spaces are always a valid header value.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(path: &str) -> Option<&'static str> {
        media_type(path).map(|media| media.content_type)
    }

    #[test]
    fn streaming_files_get_the_types_players_expect() {
        let expected = [
            ("videos/v/f/master.m3u8", "application/vnd.apple.mpegurl"),
            ("manifest.mpd", "application/dash+xml"),
            ("720p/segment_00001.m4s", "video/iso.segment"),
            ("720p/init.mp4", "video/mp4"),
            ("720p/segment_00001.ts", "video/mp2t"),
            ("thumbs/0001.jpg", "image/jpeg"),
            ("thumbs/0001.jpeg", "image/jpeg"),
            ("subs/en.vtt", "text/vtt"),
            ("facts.json", "application/json"),
        ];
        for (path, content_type_expected) in expected {
            assert_eq!(content_type(path), Some(content_type_expected), "{path}");
        }
    }

    #[test]
    fn extensions_are_matched_case_insensitively() {
        assert_eq!(
            content_type("MASTER.M3U8"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(content_type("Seg.M4S"), Some("video/iso.segment"));
    }

    #[test]
    fn unknown_or_missing_extensions_have_no_media_type() {
        assert_eq!(media_type("notes.txt"), None);
        assert_eq!(media_type("videos/v/f/segment"), None);
        assert_eq!(media_type("videos/v.m3u8/segment"), None);
    }

    #[test]
    fn segments_and_images_are_immutable_and_playlists_short_lived() {
        let caching = |path: &str| media_type(path).map(|media| media.caching);
        for path in ["a.m4s", "init.mp4", "a.ts", "a.jpg", "a.jpeg", "a.vtt"] {
            assert_eq!(caching(path), Some(Caching::Immutable), "{path}");
        }
        for path in ["master.m3u8", "720p.m3u8", "manifest.mpd", "facts.json"] {
            assert_eq!(caching(path), Some(Caching::ShortLived), "{path}");
        }
    }

    #[test]
    fn cache_control_values_carry_the_configured_ages() {
        let policy = CachePolicy::new(31_536_000, 2);
        assert_eq!(
            policy.header(Caching::Immutable),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(policy.header(Caching::ShortLived), "public, max-age=2");
    }
}
