//! The browser origin a direct upload allows: `scheme://host[:port]`, as browsers send it in
//! `Origin`, kept lowercase.

/// The longest origin accepted.
pub const MAX_ORIGIN_LEN: usize = 2048;

/// The origin in the form browsers send it, or why it is not one.
pub fn normalize(origin: &str) -> Result<String, &'static str> {
    if origin.len() > MAX_ORIGIN_LEN {
        return Err("cors_origin must be at most 2048 characters");
    }
    let lower = origin.to_ascii_lowercase();
    let host = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or("cors_origin must start with https:// or http://")?;
    let valid_host = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    if !valid_host {
        return Err("cors_origin must be scheme://host[:port], without a path");
    }
    Ok(lower)
}

/// True when a request's `Origin` is the allowed one.
pub fn allows(allowed: Option<&str>, presented: &[u8]) -> bool {
    allowed.is_some_and(|allowed| allowed.as_bytes().eq_ignore_ascii_case(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            normalize("https://App.Example:8443").as_deref(),
            Ok("https://app.example:8443")
        );
        assert_eq!(
            normalize("http://[::1]:3000").as_deref(),
            Ok("http://[::1]:3000")
        );
        for bad in [
            "",
            "*",
            "app.example",
            "ftp://app.example",
            "https://",
            "https://app.example/",
            "https://app.example/path",
            "https://app.example?x",
            "https://app example",
            "https://user@app.example",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_the_allowed_origin_is_allowed() {
        assert!(allows(Some("https://app.example"), b"https://APP.example"));
        assert!(!allows(
            Some("https://app.example"),
            b"https://evil.example"
        ));
        assert!(!allows(Some("https://app.example"), b"null"));
        assert!(!allows(None, b"https://app.example"));
    }
}
