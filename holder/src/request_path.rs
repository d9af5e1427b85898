//! Which request paths may reach the file system.
//!
//! `ServeDir` already refuses `..`, but holder is stricter: a path that tries to climb out of the
//! root in any spelling is a client error, and files that are not published yet (uploads in
//! progress use names starting with `.`) do not exist for players.

use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// A decoded request path, relative to the root, naming a file that may be published.
#[derive(Debug, PartialEq, Eq)]
pub struct PublishedPath(String);

impl PublishedPath {
    /// Checks the raw (still percent-encoded) path of a request.
    pub fn parse(raw: &str) -> Result<PublishedPath, ApiError> {
        let relative = raw.strip_prefix('/').ok_or(ApiError::InvalidPath)?;
        let decoded = percent_decode_str(relative)
            .decode_utf8()
            .map_err(|_| ApiError::InvalidPath)?;
        if decoded.contains(['\\', '\0']) {
            return Err(ApiError::InvalidPath);
        }
        let segments: Vec<&str> = decoded.split('/').collect();
        let (file_name, directories) = segments.split_last().ok_or(ApiError::NotFound)?;
        for segment in directories {
            match *segment {
                "" | "." | ".." => return Err(ApiError::InvalidPath),
                hidden if hidden.starts_with('.') => return Err(ApiError::NotFound),
                _ => {}
            }
        }
        match *file_name {
            "." | ".." => Err(ApiError::InvalidPath),
            // No directory listings: `/videos/` and `/` name directories.
            "" => Err(ApiError::NotFound),
            hidden if hidden.starts_with('.') => Err(ApiError::NotFound),
            _ => Ok(PublishedPath(decoded.into_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_invalid(raw: &str) -> bool {
        matches!(PublishedPath::parse(raw), Err(ApiError::InvalidPath))
    }

    fn is_not_found(raw: &str) -> bool {
        matches!(PublishedPath::parse(raw), Err(ApiError::NotFound))
    }

    #[test]
    fn published_files_are_accepted_and_decoded() {
        let parsed = |raw: &str| PublishedPath::parse(raw).ok().map(|path| path.0);
        assert_eq!(
            parsed("/videos/v/f/master.m3u8").as_deref(),
            Some("videos/v/f/master.m3u8")
        );
        assert_eq!(parsed("/a%20b/c.ts").as_deref(), Some("a b/c.ts"));
        assert_eq!(
            parsed("/v/segment.v1.m4s").as_deref(),
            Some("v/segment.v1.m4s")
        );
    }

    #[test]
    fn traversal_in_any_spelling_is_invalid() {
        for raw in [
            "/../secret",
            "/videos/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/videos/%2e%2e%2f%2e%2e/secret",
            "/..%2fsecret",
            "/..%5csecret",
            "/videos\\..\\secret",
            "/%5c%5cserver/secret",
            "//etc/passwd",
            "/%2fetc/passwd",
            "/./secret",
            "/videos/..",
            "/secret%00.ts",
            "relative/path",
            "/%ff%fe",
        ] {
            assert!(is_invalid(raw), "{raw} should be invalid");
        }
    }

    #[test]
    fn hidden_files_and_directories_do_not_exist() {
        for raw in [
            "/.segment.m4s.tmp",
            "/videos/v/f/.master.m3u8.part",
            "/videos/.incoming/a.ts",
            "/videos/%2eincoming/a.ts",
            "/",
            "/videos/",
        ] {
            assert!(is_not_found(raw), "{raw} should be not found");
        }
    }
}
