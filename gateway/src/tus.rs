//! The tus 1.0.0 headers: names, and parsing of what clients send.

use std::collections::BTreeMap;

use axum::http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::HeaderMap;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use chrono::{DateTime, Utc};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use vod_contracts::{PlaybackPolicy, SessionId, VideoId};

use crate::error::ApiError;
use crate::plain_text::{check_plain_text, Lines};
use crate::title::{default_title, normalize_title};
pub use crate::tus_names::*;

/// Padding is optional in what clients send.
const METADATA_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// 412 unless the request speaks tus 1.0.0.
pub fn require_tus_resumable(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(TUS_RESUMABLE) {
        Some(value) if value.as_bytes() == SUPPORTED_VERSION.as_bytes() => Ok(()),
        _ => Err(ApiError::TusVersionUnsupported),
    }
}

/// True when the body is declared as tus upload bytes.
pub fn has_offset_octet_stream_body(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// A header that must hold a non-negative integer, if present.
pub fn optional_u64(
    headers: &HeaderMap,
    name: &HeaderName,
    display_name: &'static str,
) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(parse_non_negative)
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_header(
                display_name,
                format!("{display_name} must be a non-negative integer"),
            )
        })
}

/// A header that must be present and hold a non-negative integer.
pub fn required_u64(
    headers: &HeaderMap,
    name: &HeaderName,
    display_name: &'static str,
) -> Result<u64, ApiError> {
    optional_u64(headers, name, display_name)?.ok_or_else(|| {
        ApiError::invalid_header(display_name, format!("{display_name} is required"))
    })
}

pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    optional_u64(headers, &CONTENT_LENGTH, "Content-Length")
}

/// Digits only: `u64::from_str` would also take a leading `+`.
fn parse_non_negative(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// How long the upload will be: known, or given later (`creation-defer-length`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclaredLength {
    Known(u64),
    Deferred,
}

/// `Upload-Length`, or `Upload-Defer-Length: 1`, exactly one of them.
pub fn declared_length(headers: &HeaderMap) -> Result<DeclaredLength, ApiError> {
    let length = optional_u64(headers, &UPLOAD_LENGTH, "Upload-Length")?;
    let deferred = match headers.get(UPLOAD_DEFER_LENGTH) {
        None => false,
        Some(value) if value.as_bytes() == b"1" => true,
        Some(_) => {
            return Err(ApiError::invalid_header(
                "Upload-Defer-Length",
                "Upload-Defer-Length must be 1",
            ))
        }
    };
    match (length, deferred) {
        (Some(_), true) => Err(ApiError::invalid_header(
            "Upload-Defer-Length",
            "send either Upload-Length or Upload-Defer-Length, not both",
        )),
        (Some(length), false) => Ok(DeclaredLength::Known(length)),
        (None, true) => Ok(DeclaredLength::Deferred),
        (None, false) => Err(ApiError::invalid_header(
            "Upload-Length",
            "Upload-Length is required (or Upload-Defer-Length: 1)",
        )),
    }
}

/// `Upload-Concat` of a creation request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Concat {
    Partial,
    /// The partial uploads, in order, as the URLs the client sent.
    Final(Vec<String>),
}

pub fn concat(headers: &HeaderMap) -> Result<Option<Concat>, ApiError> {
    let Some(value) = headers.get(UPLOAD_CONCAT) else {
        return Ok(None);
    };
    let invalid = |message: &str| ApiError::invalid_header("Upload-Concat", message);
    let text = value
        .to_str()
        .map_err(|_| invalid("Upload-Concat must be ASCII"))?
        .trim();
    if text == "partial" {
        return Ok(Some(Concat::Partial));
    }
    let Some(urls) = text.strip_prefix("final;") else {
        return Err(invalid(
            "Upload-Concat must be \"partial\" or \"final;\" followed by upload URLs",
        ));
    };
    let urls: Vec<String> = urls.split_whitespace().map(str::to_owned).collect();
    if urls.is_empty() {
        return Err(invalid("a final upload names at least one partial upload"));
    }
    Ok(Some(Concat::Final(urls)))
}

/// The upload id at the end of an upload URL, absolute or relative: `…/v1/uploads/{id}`.
pub fn session_id_from_url(url: &str) -> Option<SessionId> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let (prefix, id) = path.trim_end_matches('/').rsplit_once('/')?;
    if !prefix.ends_with("/v1/uploads") && prefix != "v1/uploads" {
        return None;
    }
    id.parse().ok()
}

/// An HTTP date, as `Upload-Expires` carries it.
pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A checksum algorithm of the `checksum` extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
    Sha512,
    Md5,
}

impl ChecksumAlgorithm {
    pub const ALL: [Self; 4] = [Self::Sha1, Self::Sha256, Self::Sha512, Self::Md5];

    /// As `Tus-Checksum-Algorithm` lists it, and as `Upload-Checksum` must name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::Md5 => "md5",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
            Self::Md5 => 16,
        }
    }

    pub fn hasher(self) -> ChecksumHasher {
        match self {
            Self::Sha1 => ChecksumHasher::Sha1(Sha1::new()),
            Self::Sha256 => ChecksumHasher::Sha256(Sha256::new()),
            Self::Sha512 => ChecksumHasher::Sha512(Sha512::new()),
            Self::Md5 => ChecksumHasher::Md5(Md5::new()),
        }
    }
}

/// What `Upload-Checksum` says the request body hashes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub digest: Vec<u8>,
}

pub enum ChecksumHasher {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha512(Sha512),
    Md5(Md5),
}

impl ChecksumHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(hasher) => hasher.update(bytes),
            Self::Sha256(hasher) => hasher.update(bytes),
            Self::Sha512(hasher) => hasher.update(bytes),
            Self::Md5(hasher) => hasher.update(bytes),
        }
    }

    #[cfg(test)]
    fn finalize_of(mut self, bytes: &[u8]) -> Vec<u8> {
        self.update(bytes);
        self.finalize()
    }

    pub fn finalize(self) -> Vec<u8> {
        match self {
            Self::Sha1(hasher) => hasher.finalize().to_vec(),
            Self::Sha256(hasher) => hasher.finalize().to_vec(),
            Self::Sha512(hasher) => hasher.finalize().to_vec(),
            Self::Md5(hasher) => hasher.finalize().to_vec(),
        }
    }
}

/// `Upload-Checksum: {algorithm} {base64 digest}`; an algorithm we do not support is 400.
pub fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    let Some(value) = headers.get(UPLOAD_CHECKSUM) else {
        return Ok(None);
    };
    let invalid = |message: &str| ApiError::invalid_header("Upload-Checksum", message);
    let text = value
        .to_str()
        .map_err(|_| invalid("Upload-Checksum must be ASCII"))?;
    let (name, encoded) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| invalid("Upload-Checksum must be an algorithm and a base64 digest"))?;
    let algorithm = ChecksumAlgorithm::parse(name).ok_or_else(|| {
        ApiError::ChecksumAlgorithmUnsupported(format!(
            "checksum algorithm {name:?} is not supported; use one of {CHECKSUM_ALGORITHMS}"
        ))
    })?;
    let digest = METADATA_BASE64
        .decode(encoded)
        .map_err(|_| invalid("the Upload-Checksum digest is not base64"))?;
    if digest.len() != algorithm.digest_len() {
        return Err(invalid(&format!(
            "a {name} digest is {} bytes, not {}",
            algorithm.digest_len(),
            digest.len()
        )));
    }
    Ok(Some(Checksum { algorithm, digest }))
}

/// `Upload-Metadata` is not a comma-separated list of `key base64value` pairs.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("Upload-Metadata has an empty key")]
    EmptyKey,
    #[error("Upload-Metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("Upload-Metadata value of {0:?} is not base64")]
    NotBase64(String),
    #[error("Upload-Metadata pair {0:?} has more than a key and a value")]
    Malformed(String),
    #[error("Upload-Metadata key {0:?} holds a character other than printable ASCII (no space or comma)")]
    InvalidKey(String),
}

/// Spaces and tabs, which may surround a pair of `Upload-Metadata`.
const OPTIONAL_WHITESPACE: [char; 2] = [' ', '\t'];

/// tus: a key is printable ASCII, with no space and no comma.
fn is_metadata_key_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && byte != b','
}

/// Parses `key base64value` pairs separated by commas (and optional spaces or tabs); a value
/// may be left out. Accepts what [`metadata_pattern`] matches, duplicate keys aside.
pub fn parse_metadata(raw: &str) -> Result<BTreeMap<String, Vec<u8>>, MetadataError> {
    let mut pairs = BTreeMap::new();
    if raw.trim().is_empty() {
        return Ok(pairs);
    }
    for pair in raw.split(',') {
        let pair = pair.trim_matches(OPTIONAL_WHITESPACE);
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        if key.is_empty() {
            return Err(MetadataError::EmptyKey);
        }
        if !key.bytes().all(is_metadata_key_byte) {
            return Err(MetadataError::InvalidKey(key.to_owned()));
        }
        if encoded.contains(OPTIONAL_WHITESPACE) {
            return Err(MetadataError::Malformed(pair.to_owned()));
        }
        let value = METADATA_BASE64
            .decode(encoded)
            .map_err(|_| MetadataError::NotBase64(key.to_owned()))?;
        if pairs.insert(key.to_owned(), value).is_some() {
            return Err(MetadataError::DuplicateKey(key.to_owned()));
        }
    }
    Ok(pairs)
}

/// The most `Upload-Metadata` a creation may carry: it is stored with the upload and given back
/// by every `HEAD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataLimits {
    /// The header as sent, in bytes.
    pub max_bytes: usize,
    pub max_keys: usize,
    /// `filename`, decoded, in bytes.
    pub max_filename_bytes: usize,
}

/// Refuses `Upload-Metadata` over `limits` before anything of it is read or stored.
pub fn check_metadata_limits(raw: &str, limits: MetadataLimits) -> Result<(), ApiError> {
    if raw.len() > limits.max_bytes {
        return Err(ApiError::MetadataTooLarge {
            max: limits.max_bytes,
        });
    }
    let pairs = parse_metadata(raw)
        .map_err(|err| ApiError::invalid_header("Upload-Metadata", err.to_string()))?;
    if pairs.len() > limits.max_keys {
        return Err(ApiError::MetadataTooManyKeys {
            max: limits.max_keys,
        });
    }
    if pairs
        .get("filename")
        .is_some_and(|name| name.len() > limits.max_filename_bytes)
    {
        return Err(ApiError::FilenameTooLong {
            max: limits.max_filename_bytes,
        });
    }
    Ok(())
}

/// What the gateway reads from `Upload-Metadata`.
#[derive(Debug, PartialEq, Eq)]
pub struct UploadMetadata {
    pub filename: Option<String>,
    pub title: String,
    pub video_id: Option<VideoId>,
    /// The new video's policy; `public` when the key is absent.
    pub playback_policy: PlaybackPolicy,
}

impl UploadMetadata {
    /// Reads the known keys of the raw header; other keys are kept only in the raw header.
    pub fn from_header(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs = match raw {
            Some(raw) => parse_metadata(raw)
                .map_err(|err| ApiError::invalid_header("Upload-Metadata", err.to_string()))?,
            None => BTreeMap::new(),
        };
        let text = |key: &str| -> Result<Option<String>, ApiError> {
            pairs
                .get(key)
                .map(|value| {
                    String::from_utf8(value.clone()).map_err(|_| {
                        ApiError::invalid_header(
                            "Upload-Metadata",
                            format!("Upload-Metadata value of {key:?} is not UTF-8"),
                        )
                    })
                })
                .transpose()
        };
        let filename = text("filename")?.filter(|name| !name.trim().is_empty());
        if let Some(filename) = &filename {
            check_plain_text(filename, Lines::Single)
                .map_err(|err| ApiError::validation("filename", format!("filename {err}")))?;
        }
        let title = match text("title")? {
            Some(title) => normalize_title(&title)
                .map_err(|err| ApiError::validation("title", err.to_string()))?,
            None => default_title(filename.as_deref()),
        };
        let video_id = text("video_id")?
            .map(|id| {
                id.trim()
                    .parse::<VideoId>()
                    .map_err(|_| ApiError::validation("video_id", "video_id must be a UUID"))
            })
            .transpose()?;
        let playback_policy = text("playback_policy")?
            .map(|policy| {
                policy
                    .trim()
                    .parse::<PlaybackPolicy>()
                    .map_err(|err| ApiError::validation("playback_policy", err.to_string()))
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            filename,
            title,
            video_id,
            playback_policy,
        })
    }
}

/// The grammars of the tus request headers, as the OpenAPI document states them (ECMA-262
/// patterns, which Python's `re` reads alike): the parsers above accept what they match.
pub mod grammar {
    use super::ChecksumAlgorithm;

    /// One base64 character, and the last ones of a padded group, whose unused bits are zero.
    const B64: &str = "[A-Za-z0-9+/]";
    const LAST_OF_TWO_BYTES: &str = "[AEIMQUYcgkosw048]";
    const LAST_OF_ONE_BYTE: &str = "[AQgw]";

    /// Canonical base64 of exactly `len` bytes, its padding optional.
    pub fn base64_of_len(len: usize) -> String {
        let groups = format!("{B64}{{{}}}", len / 3 * 4);
        match len % 3 {
            0 => groups,
            1 => format!("{groups}{B64}{LAST_OF_ONE_BYTE}(==)?"),
            _ => format!("{groups}{B64}{{2}}{LAST_OF_TWO_BYTES}=?"),
        }
    }

    /// Canonical base64 of any length, its padding optional.
    pub fn base64() -> String {
        format!("({B64}{{4}})*({B64}{LAST_OF_ONE_BYTE}(==)?|{B64}{{2}}{LAST_OF_TWO_BYTES}=?)?")
    }

    /// `Upload-Checksum`: a supported algorithm, a space, the base64 digest of its size.
    pub fn checksum() -> String {
        let alternatives: Vec<String> = ChecksumAlgorithm::ALL
            .iter()
            .map(|algorithm| {
                format!(
                    "{} {}",
                    algorithm.name(),
                    base64_of_len(algorithm.digest_len())
                )
            })
            .collect();
        format!("^({})$", alternatives.join("|"))
    }

    /// `Upload-Metadata`: up to `max_keys` comma-separated pairs, each a key of printable ASCII
    /// (no space, no comma) and, after one space, its base64 value; spaces or tabs may surround
    /// the commas (not the whole value, which HTTP trims).
    pub fn metadata(max_keys: usize) -> String {
        let pair = format!("[!-+\\--~]+( {})?", base64());
        format!(
            "^({pair}([ \\t]*,[ \\t]*{pair}){{0,{}}})?$",
            max_keys.saturating_sub(1)
        )
    }

    /// `Upload-Concat`: `partial`, or `final;` and the URLs of uploads of this server.
    pub const CONCAT: &str = "^(partial|final;( *[A-Za-z0-9:/._~%-]*/v1/uploads/\
        [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})+)$";
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                name.clone(),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    #[test]
    fn metadata_pairs_decode_with_and_without_values() {
        let raw = format!(
            "filename {},is_confidential, title {}",
            b64("a.mp4"),
            b64("Ünïcode")
        );
        let pairs = parse_metadata(&raw).expect("valid metadata");
        assert_eq!(pairs["filename"], b"a.mp4");
        assert_eq!(pairs["is_confidential"], b"");
        assert_eq!(pairs["title"], "Ünïcode".as_bytes());
    }

    #[test]
    fn metadata_without_padding_is_accepted() {
        let pairs = parse_metadata("filename YS5tcDQ").expect("valid metadata");
        assert_eq!(pairs["filename"], b"a.mp4");
    }

    #[test]
    fn malformed_metadata_is_refused() {
        assert_eq!(
            parse_metadata("title !!!"),
            Err(MetadataError::NotBase64("title".to_owned()))
        );
        assert_eq!(
            parse_metadata("title YQ==,title Yg=="),
            Err(MetadataError::DuplicateKey("title".to_owned()))
        );
        assert_eq!(parse_metadata("title YQ==,,"), Err(MetadataError::EmptyKey));
        assert!(matches!(
            parse_metadata("title YQ== extra"),
            Err(MetadataError::Malformed(_))
        ));
    }

    #[test]
    fn title_defaults_to_the_filename_then_to_untitled() {
        let raw = format!("filename {}", b64("holiday.mp4"));
        let metadata = UploadMetadata::from_header(Some(&raw)).expect("valid");
        assert_eq!(metadata.title, "holiday.mp4");
        assert_eq!(metadata.filename.as_deref(), Some("holiday.mp4"));
        let metadata = UploadMetadata::from_header(None).expect("valid");
        assert_eq!(metadata.title, "Untitled");
        assert_eq!(metadata.video_id, None);
    }

    #[test]
    fn explicit_titles_are_trimmed_and_bounded() {
        let raw = format!("title {}", b64("  My film "));
        let metadata = UploadMetadata::from_header(Some(&raw)).expect("valid");
        assert_eq!(metadata.title, "My film");
        for bad in ["   ", &"é".repeat(201)] {
            let raw = format!("title {}", b64(bad));
            let error = UploadMetadata::from_header(Some(&raw)).expect_err("invalid title");
            assert_eq!(error.code(), "validation_failed");
            assert!(
                matches!(error, ApiError::ValidationFailed { ref field, .. } if field == "title")
            );
        }
        let raw = format!("title {}", b64(&"é".repeat(200)));
        assert!(UploadMetadata::from_header(Some(&raw)).is_ok());
    }

    #[test]
    fn titles_and_filenames_are_one_line_of_plain_text() {
        for bad in ["a\u{0}b", "bell\u{7}", "two\nlines", "evil\u{202E}4pm.exe"] {
            for (raw, field) in [
                (format!("title {}", b64(bad)), "title"),
                (
                    format!("title {},filename {}", b64("Fine"), b64(bad)),
                    "filename",
                ),
            ] {
                let error = UploadMetadata::from_header(Some(&raw)).expect_err(bad);
                assert!(
                    matches!(error, ApiError::ValidationFailed { field: ref named, .. } if named == field),
                    "{bad:?}: {error:?}"
                );
            }
        }
    }

    const LIMITS: MetadataLimits = MetadataLimits {
        max_bytes: 100,
        max_keys: 3,
        max_filename_bytes: 10,
    };

    #[test]
    fn metadata_over_a_limit_is_refused_naming_it() {
        let fits = format!("filename {},a,b", b64("0123456789"));
        assert!(check_metadata_limits(&fits, LIMITS).is_ok());
        for (raw, code) in [
            (
                format!("notes {}", b64(&"n".repeat(80))),
                "metadata_too_large",
            ),
            ("a,b,c,d".to_owned(), "metadata_too_many_keys"),
            (
                format!("filename {}", b64("01234567890")),
                "filename_too_long",
            ),
            ("title %%%".to_owned(), "invalid_header"),
        ] {
            let error = check_metadata_limits(&raw, LIMITS).expect_err(&raw);
            assert_eq!(error.code(), code, "{raw}");
        }
    }

    #[test]
    fn playback_policy_is_public_unless_the_metadata_says_signed() {
        let policy = |raw: &str| UploadMetadata::from_header(Some(raw)).map(|m| m.playback_policy);
        assert_eq!(
            policy(&format!("title {}", b64("a"))).ok(),
            Some(PlaybackPolicy::Public)
        );
        assert_eq!(
            policy(&format!("playback_policy {}", b64("signed"))).ok(),
            Some(PlaybackPolicy::Signed)
        );
        assert_eq!(
            policy(&format!("playback_policy {}", b64("public"))).ok(),
            Some(PlaybackPolicy::Public)
        );
        let error = policy(&format!("playback_policy {}", b64("private"))).expect_err("unknown");
        assert!(
            matches!(error, ApiError::ValidationFailed { ref field, .. } if field == "playback_policy")
        );
    }

    #[test]
    fn video_id_must_be_a_uuid() {
        let id = VideoId::new();
        let raw = format!("video_id {}", b64(&id.to_string()));
        let metadata = UploadMetadata::from_header(Some(&raw)).expect("valid");
        assert_eq!(metadata.video_id, Some(id));
        let raw = format!("video_id {}", b64("42"));
        let error = UploadMetadata::from_header(Some(&raw)).expect_err("not a uuid");
        assert!(
            matches!(error, ApiError::ValidationFailed { ref field, .. } if field == "video_id")
        );
    }

    #[test]
    fn bad_metadata_names_the_header() {
        let error = UploadMetadata::from_header(Some("title %%%")).expect_err("invalid");
        assert!(matches!(
            error,
            ApiError::InvalidHeader {
                header: "Upload-Metadata",
                ..
            }
        ));
    }

    #[test]
    fn checksums_name_a_known_algorithm_and_a_digest_of_its_size() {
        let sha1_of_abc = base64::engine::general_purpose::STANDARD
            .encode(ChecksumAlgorithm::Sha1.hasher().finalize_of(b"abc"));
        let parsed = checksum(&headers(&[(
            UPLOAD_CHECKSUM,
            &format!("sha1 {sha1_of_abc}"),
        )]))
        .expect("valid")
        .expect("present");
        assert_eq!(parsed.algorithm, ChecksumAlgorithm::Sha1);
        let error = checksum(&headers(&[(UPLOAD_CHECKSUM, "crc32 AAAAAA==")])).expect_err("crc");
        assert_eq!(error.code(), "checksum_algorithm_unsupported");
        for bad in ["sha1", "sha1 !!!", "sha256 YWJj"] {
            let error = checksum(&headers(&[(UPLOAD_CHECKSUM, bad)])).expect_err(bad);
            assert_eq!(error.code(), "invalid_header", "{bad}");
        }
        assert_eq!(checksum(&HeaderMap::new()).ok(), Some(None));
    }

    #[test]
    fn length_is_known_or_deferred_but_not_both() {
        assert_eq!(
            declared_length(&headers(&[(UPLOAD_LENGTH, "5")])).ok(),
            Some(DeclaredLength::Known(5))
        );
        assert_eq!(
            declared_length(&headers(&[(UPLOAD_DEFER_LENGTH, "1")])).ok(),
            Some(DeclaredLength::Deferred)
        );
        for bad in [
            headers(&[(UPLOAD_DEFER_LENGTH, "yes")]),
            headers(&[(UPLOAD_DEFER_LENGTH, "1"), (UPLOAD_LENGTH, "5")]),
            HeaderMap::new(),
        ] {
            assert!(declared_length(&bad).is_err());
        }
    }

    #[test]
    fn concat_is_partial_or_final_with_upload_urls() {
        assert_eq!(
            concat(&headers(&[(UPLOAD_CONCAT, "partial")])).ok(),
            Some(Some(Concat::Partial))
        );
        let id = SessionId::new();
        let value = format!("final;/v1/uploads/{id} http://h:1/v1/uploads/{id}");
        let Some(Some(Concat::Final(urls))) = concat(&headers(&[(UPLOAD_CONCAT, &value)])).ok()
        else {
            panic!("final concat");
        };
        assert_eq!(urls.len(), 2);
        assert!(urls.iter().all(|url| session_id_from_url(url) == Some(id)));
        assert_eq!(session_id_from_url("http://h/v1/videos/x"), None);
        assert!(concat(&headers(&[(UPLOAD_CONCAT, "final;")])).is_err());
        assert!(concat(&headers(&[(UPLOAD_CONCAT, "whole")])).is_err());
    }

    /// Whether `value` matches `pattern` as the OpenAPI document states it.
    fn documented(pattern: &str, value: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("a valid pattern")
            .is_match(value)
    }

    #[test]
    fn the_documented_checksum_grammar_is_what_the_parser_accepts() {
        let pattern = grammar::checksum();
        let digest_of_abc = |algorithm: ChecksumAlgorithm| {
            base64::engine::general_purpose::STANDARD.encode(algorithm.hasher().finalize_of(b"abc"))
        };
        let mut cases = vec![
            ("crc32 AAAAAA==".to_owned(), false),
            ("sha256 YWJj".to_owned(), false),
            ("sha1".to_owned(), false),
            ("".to_owned(), false),
        ];
        for algorithm in ChecksumAlgorithm::ALL {
            let name = algorithm.name();
            let digest = digest_of_abc(algorithm);
            let unpadded = digest.trim_end_matches('=').to_owned();
            // The last character of a digest whose length is not a multiple of 3 carries
            // unused bits, which must be zero.
            let mut not_canonical = unpadded.clone();
            let last = not_canonical.pop().expect("a digest");
            let flipped = if last == 'B' { 'C' } else { 'B' };
            not_canonical.push(flipped);
            cases.extend([
                (format!("{name} {digest}"), true),
                (format!("{name} {unpadded}"), true),
                (format!("{} {digest}", name.to_uppercase()), false),
                (format!("{name}  {digest}"), false),
                (format!("{name} {not_canonical}"), false),
                (format!("{name} {digest}{digest}"), false),
            ]);
        }
        for (value, valid) in cases {
            let parsed = checksum(&headers(&[(UPLOAD_CHECKSUM, &value)]));
            assert_eq!(parsed.is_ok(), valid, "parser on {value:?}");
            assert_eq!(documented(&pattern, &value), valid, "pattern on {value:?}");
        }
    }

    #[test]
    fn the_documented_metadata_grammar_is_what_the_parser_accepts() {
        let pattern = grammar::metadata(LIMITS.max_keys);
        for (value, valid) in [
            ("", true),
            ("filename YS5tcDQ=", true),
            ("filename YS5tcDQ", true),
            ("is_confidential", true),
            ("a YQ==, b Yg==", true),
            ("a YQ==\t,\tb", true),
            ("a YQ,b Yg,c", true),
            ("a,b,c,d", false),
            ("a  YQ==", false),
            ("a\tb YQ==", false),
            ("clé YQ==", false),
            ("a YQ==,,b", false),
            (",a", false),
            ("a YR", false),
            ("a Y", false),
            ("a YQ== b", false),
            ("a !!!", false),
        ] {
            let accepted = check_metadata_limits(value, LIMITS).is_ok();
            assert_eq!(accepted, valid, "parser on {value:?}");
            assert_eq!(documented(&pattern, value), valid, "pattern on {value:?}");
        }
    }

    #[test]
    fn the_documented_concat_grammar_is_what_the_gateway_accepts() {
        let id = SessionId::new();
        for (value, valid) in [
            ("partial".to_owned(), true),
            (format!("final;/v1/uploads/{id}"), true),
            (
                format!("final;http://h:1/v1/uploads/{id} /v1/uploads/{id}"),
                true,
            ),
            ("final;".to_owned(), false),
            ("whole".to_owned(), false),
            ("Partial".to_owned(), false),
            ("final;http://elsewhere.example/files/abc".to_owned(), false),
            ("final;/v1/uploads/42".to_owned(), false),
        ] {
            let accepted = match concat(&headers(&[(UPLOAD_CONCAT, &value)])) {
                Ok(Some(Concat::Partial)) => true,
                Ok(Some(Concat::Final(urls))) => {
                    urls.iter().all(|url| session_id_from_url(url).is_some())
                }
                Ok(None) | Err(_) => false,
            };
            assert_eq!(accepted, valid, "gateway on {value:?}");
            assert_eq!(
                documented(grammar::CONCAT, &value),
                valid,
                "pattern on {value:?}"
            );
        }
    }

    #[test]
    fn upload_expires_is_an_http_date() {
        let at = DateTime::parse_from_rfc3339("1994-11-06T08:49:37Z")
            .expect("date")
            .with_timezone(&Utc);
        assert_eq!(http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn integer_headers_take_digits_only() {
        let map = headers(&[(UPLOAD_OFFSET, "1024")]);
        assert_eq!(
            required_u64(&map, &UPLOAD_OFFSET, "Upload-Offset").ok(),
            Some(1024)
        );
        for bad in ["-1", "+5", "1.5", "abc", "", "99999999999999999999999"] {
            let map = headers(&[(UPLOAD_OFFSET, bad)]);
            let error = required_u64(&map, &UPLOAD_OFFSET, "Upload-Offset").expect_err(bad);
            assert!(matches!(
                error,
                ApiError::InvalidHeader {
                    header: "Upload-Offset",
                    ..
                }
            ));
        }
        let error =
            required_u64(&HeaderMap::new(), &UPLOAD_LENGTH, "Upload-Length").expect_err("missing");
        assert!(error.to_string().contains("Upload-Length"));
        assert_eq!(
            optional_u64(&HeaderMap::new(), &UPLOAD_LENGTH, "Upload-Length").ok(),
            Some(None)
        );
    }

    #[test]
    fn tus_version_and_content_type_are_checked() {
        assert!(require_tus_resumable(&headers(&[(TUS_RESUMABLE, "1.0.0")])).is_ok());
        assert!(require_tus_resumable(&headers(&[(TUS_RESUMABLE, "0.2.2")])).is_err());
        assert!(require_tus_resumable(&HeaderMap::new()).is_err());
        assert!(has_offset_octet_stream_body(&headers(&[(
            CONTENT_TYPE,
            "Application/Offset+Octet-Stream; charset=binary"
        )])));
        assert!(!has_offset_octet_stream_body(&headers(&[(
            CONTENT_TYPE,
            "application/octet-stream"
        )])));
        assert!(!has_offset_octet_stream_body(&HeaderMap::new()));
    }
}
