//! Conditional requests (RFC 9110 §13) against the validators holder gives a file: an `ETag`
//! made of its modification time and size (as nginx makes it) and its `Last-Modified`.
//!
//! Both come from what every back end reports the same way, so every replica over one bucket
//! gives a file the same validators, and a file that is published again gets new ones.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue};

/// The validators of one stored file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators {
    /// Quoted, strong.
    pub etag: String,
    /// Whole seconds, as HTTP dates carry them.
    pub last_modified: SystemTime,
}

impl Validators {
    pub fn new(modified: SystemTime, size: u64) -> Self {
        let seconds = modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self {
            etag: format!("\"{seconds:x}-{size:x}\""),
            last_modified: UNIX_EPOCH + Duration::from_secs(seconds),
        }
    }

    pub fn etag_header(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.etag).ok()
    }

    pub fn last_modified_header(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&httpdate::fmt_http_date(self.last_modified)).ok()
    }
}

/// What the preconditions of a GET or HEAD say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: the file is not the one the client meant.
    Failed,
}

/// Whether the request carries a precondition or a range, which need the file's validators
/// before its bytes.
pub fn is_conditional(headers: &HeaderMap) -> bool {
    [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::RANGE,
    ]
    .iter()
    .any(|name| headers.contains_key(name))
}

/// Evaluates the preconditions of a GET or HEAD in RFC 9110's order (§13.2.2).
pub fn evaluate(headers: &HeaderMap, file: &Validators) -> Precondition {
    if let Some(if_match) = text(headers, &header::IF_MATCH) {
        if !matches_any(if_match, &file.etag, Comparison::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(since) = date(headers, &header::IF_UNMODIFIED_SINCE) {
        if file.last_modified > since {
            return Precondition::Failed;
        }
    }
    if let Some(if_none_match) = text(headers, &header::IF_NONE_MATCH) {
        if matches_any(if_none_match, &file.etag, Comparison::Weak) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = date(headers, &header::IF_MODIFIED_SINCE) {
        if file.last_modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether a `Range` is to be honoured: without `If-Range`, or with one naming this version.
pub fn range_applies(headers: &HeaderMap, file: &Validators) -> bool {
    let Some(if_range) = text(headers, &header::IF_RANGE) else {
        return true;
    };
    let if_range = if_range.trim();
    if if_range.starts_with('"') {
        return if_range == file.etag;
    }
    httpdate::parse_http_date(if_range).is_ok_and(|date| date == file.last_modified)
}

#[derive(Clone, Copy)]
enum Comparison {
    Strong,
    Weak,
}

fn matches_any(list: &str, etag: &str, comparison: Comparison) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        if candidate == "*" {
            return true;
        }
        match comparison {
            Comparison::Strong => candidate == etag,
            Comparison::Weak => candidate.strip_prefix("W/").unwrap_or(candidate) == etag,
        }
    })
}

fn text<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn date(headers: &HeaderMap, name: &header::HeaderName) -> Option<SystemTime> {
    text(headers, name).and_then(|value| httpdate::parse_http_date(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Validators {
        Validators::new(UNIX_EPOCH + Duration::from_millis(1_700_000_000_700), 1234)
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name, HeaderValue::from_str(value).expect("a header value"));
        }
        map
    }

    #[test]
    fn the_etag_names_the_time_in_seconds_and_the_size() {
        let file = file();
        assert_eq!(file.etag, format!("\"{:x}-{:x}\"", 1_700_000_000u64, 1234));
        assert_eq!(
            file.last_modified,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }

    #[test]
    fn a_current_copy_is_not_modified() {
        let file = file();
        let date = httpdate::fmt_http_date(file.last_modified);
        for request in [
            headers(&[(header::IF_NONE_MATCH, &file.etag)]),
            headers(&[(header::IF_NONE_MATCH, &format!("\"x\", W/{}", file.etag))]),
            headers(&[(header::IF_NONE_MATCH, "*")]),
            headers(&[(header::IF_MODIFIED_SINCE, &date)]),
        ] {
            assert_eq!(
                evaluate(&request, &file),
                Precondition::NotModified,
                "{request:?}"
            );
        }
    }

    #[test]
    fn an_older_or_other_copy_gets_the_file() {
        let file = file();
        let earlier = httpdate::fmt_http_date(file.last_modified - Duration::from_secs(1));
        for request in [
            HeaderMap::new(),
            headers(&[(header::IF_NONE_MATCH, "\"other\"")]),
            headers(&[(header::IF_MODIFIED_SINCE, &earlier)]),
            // If-None-Match wins over If-Modified-Since.
            headers(&[
                (header::IF_NONE_MATCH, "\"other\""),
                (
                    header::IF_MODIFIED_SINCE,
                    &httpdate::fmt_http_date(file.last_modified),
                ),
            ]),
        ] {
            assert_eq!(
                evaluate(&request, &file),
                Precondition::Proceed,
                "{request:?}"
            );
        }
    }

    #[test]
    fn a_failed_precondition_is_412() {
        let file = file();
        let earlier = httpdate::fmt_http_date(file.last_modified - Duration::from_secs(1));
        assert_eq!(
            evaluate(&headers(&[(header::IF_MATCH, "\"other\"")]), &file),
            Precondition::Failed
        );
        assert_eq!(
            evaluate(
                &headers(&[(header::IF_MATCH, &format!("W/{}", file.etag))]),
                &file
            ),
            Precondition::Failed,
            "If-Match compares strongly"
        );
        assert_eq!(
            evaluate(&headers(&[(header::IF_UNMODIFIED_SINCE, &earlier)]), &file),
            Precondition::Failed
        );
        assert_eq!(
            evaluate(&headers(&[(header::IF_MATCH, &file.etag)]), &file),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_range_keeps_the_range_only_for_this_version() {
        let file = file();
        assert!(range_applies(&HeaderMap::new(), &file));
        assert!(range_applies(
            &headers(&[(header::IF_RANGE, &file.etag)]),
            &file
        ));
        assert!(range_applies(
            &headers(&[(
                header::IF_RANGE,
                &httpdate::fmt_http_date(file.last_modified)
            )]),
            &file
        ));
        assert!(!range_applies(
            &headers(&[(header::IF_RANGE, "\"old\"")]),
            &file
        ));
        assert!(!range_applies(
            &headers(&[(header::IF_RANGE, "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &file
        ));
    }
}
