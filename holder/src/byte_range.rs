//! The `Range` header of a request for one file (RFC 9110 §14), as holder answers it: one range
//! of bytes, or the whole file.

use std::ops::Range;

/// What a `Range` header asks of a file of a known size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// These bytes (end excluded), all within the file.
    Bytes(Range<u64>),
    /// A range starting past the end of the file: 416.
    Unsatisfiable,
    /// A header holder does not honour (another unit, several ranges, bad syntax): the whole
    /// file is sent, as RFC 9110 allows.
    Whole,
}

/// Reads a `Range` header value against a file of `size` bytes.
pub fn parse(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match number(last) {
            None => RangeRequest::Whole,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(length) => RangeRequest::Bytes(size.saturating_sub(length)..size),
        },
        // `A-`: from A to the end.
        (false, true) => match number(first) {
            None => RangeRequest::Whole,
            Some(start) if start >= size => RangeRequest::Unsatisfiable,
            Some(start) => RangeRequest::Bytes(start..size),
        },
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Bytes(start..end.saturating_add(1).min(size))
                }
            }
            _ => RangeRequest::Whole,
        },
        (true, true) => RangeRequest::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_within_the_file_are_clamped_to_it() {
        assert_eq!(
            parse("bytes=100-1099", 10_000),
            RangeRequest::Bytes(100..1100)
        );
        assert_eq!(
            parse("bytes=9990-", 10_000),
            RangeRequest::Bytes(9990..10_000)
        );
        assert_eq!(
            parse("bytes=9990-20000", 10_000),
            RangeRequest::Bytes(9990..10_000)
        );
        assert_eq!(
            parse("bytes=-10", 10_000),
            RangeRequest::Bytes(9990..10_000)
        );
        assert_eq!(
            parse("bytes=-20000", 10_000),
            RangeRequest::Bytes(0..10_000)
        );
        assert_eq!(parse("bytes=0-0", 1), RangeRequest::Bytes(0..1));
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        assert_eq!(
            parse("bytes=20000-30000", 10_000),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse("bytes=10000-", 10_000), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10_000), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn headers_holder_does_not_honour_ask_for_the_whole_file() {
        for header in [
            "items=0-10",
            "bytes=0-10, 20-30",
            "bytes=10-5",
            "bytes=a-b",
            "bytes=-",
            "bytes=5",
            "bytes=+5-10",
        ] {
            assert_eq!(parse(header, 100), RangeRequest::Whole, "{header}");
        }
    }
}
