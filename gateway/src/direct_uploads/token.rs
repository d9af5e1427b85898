//! The secret of a direct upload's URL: 32 bytes from the operating system's CSPRNG in
//! unpadded base64url. Only its SHA-256 is stored, as for API keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::auth::key::sha256;

const TOKEN_BYTES: usize = 32;
/// Unpadded base64 of [`TOKEN_BYTES`].
const TOKEN_LEN: usize = 43;

/// A token just made: the text to put in the URL once, and what is stored of it.
pub struct NewToken {
    pub token: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").finish_non_exhaustive()
    }
}

impl NewToken {
    pub fn generate() -> anyhow::Result<NewToken> {
        let mut secret = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut secret)
            .map_err(|err| anyhow::anyhow!("no random bytes for an upload URL: {err}"))?;
        let token = URL_SAFE_NO_PAD.encode(secret);
        Ok(NewToken {
            sha256: sha256(token.as_bytes()),
            token,
        })
    }

    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The SHA-256 of a token as presented in a URL; `None` for anything not of its form.
pub fn presented_sha256(token: &str) -> Option<[u8; 32]> {
    if token.len() != TOKEN_LEN {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD.decode(token).ok()?;
    (decoded.len() == TOKEN_BYTES).then(|| sha256(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_reads_back_to_its_hash_and_no_two_are_alike() {
        let first = NewToken::generate().expect("random bytes");
        let second = NewToken::generate().expect("random bytes");
        assert_eq!(first.token.len(), TOKEN_LEN);
        assert_eq!(presented_sha256(&first.token), Some(first.sha256));
        assert_ne!(first.sha256, second.sha256);
        assert!(!format!("{first:?}").contains(&first.token));
        assert_eq!(first.sha256_hex().len(), 64);
    }

    #[test]
    fn anything_else_is_no_token() {
        let good = NewToken::generate().expect("random bytes").token;
        for bad in [
            "",
            &good[..TOKEN_LEN - 1],
            &format!("{good}A"),
            &"!".repeat(TOKEN_LEN),
            &"é".repeat(21),
        ] {
            assert!(presented_sha256(bad).is_none(), "{bad:?} read as a token");
        }
    }
}
