//! Signing secrets and `Vod-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`, one `v1` per secret in force (two during a rotation), the scheme of Stripe
//! and Mux, so that a receiver can reuse their verifying code.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use vod_contracts::webhook::SECRET_PREFIX;

/// A new signing secret: `whsec_` and 256 random bits in hex.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("no randomness for a signing secret: {error}"))?;
    Ok(format!("{SECRET_PREFIX}{}", hex(&bytes)))
}

/// The `Vod-Signature` of `body` sent at `timestamp` (unix seconds), signed by each secret.
pub fn header(secrets: &[String], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&sign(secret, timestamp, body));
    }
    header
}

/// Lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed by the secret's text.
fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts every key length")
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hex() {
        let secret = new_secret().expect("a secret");
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret.len(), "whsec_".len() + 64);
        assert_ne!(secret, new_secret().expect("a second secret"));
    }

    #[test]
    fn a_signature_is_the_hmac_of_the_timestamp_and_body_by_each_secret() {
        // The figures are Python's `hmac.new(secret, b"1700000000." + body, sha256)`.
        let secrets = ["whsec_test".to_owned(), "whsec_old".to_owned()];
        assert_eq!(
            header(&secrets, 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,\
             v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789,\
             v1=b9d801502bb535e960ee9aeee7a294b082bda5089d79c7db610b85116ce6faa6"
        );
    }
}
