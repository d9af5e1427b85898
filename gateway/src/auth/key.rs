//! The form of an API key: `vod_<id>_<secret>`, the id as 32 hex digits, the secret 32 bytes
//! from the operating system's CSPRNG in unpadded base64url. Only the SHA-256 of the secret is
//! stored: a secret of 256 random bits needs no slow hash to resist guessing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use vod_contracts::ApiKeyId;

const PREFIX: &str = "vod_";
const ID_LEN: usize = 32;
const SECRET_BYTES: usize = 32;
/// Unpadded base64 of [`SECRET_BYTES`].
const SECRET_LEN: usize = 43;
/// The whole key's length.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// A key as presented: its id, and the hash of the secret it came with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey {
    pub id: ApiKeyId,
    pub secret_sha256: [u8; 32],
}

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PresentedKey {
    /// Reads a key; `None` for anything not of its form.
    pub fn parse(key: &str) -> Option<PresentedKey> {
        if key.len() != KEY_LEN || !key.is_ascii() {
            return None;
        }
        let rest = key.strip_prefix(PREFIX)?;
        let (id, rest) = rest.split_at(ID_LEN);
        let secret = rest.strip_prefix('_')?;
        if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let id = Uuid::try_parse(id).ok()?;
        let decoded = URL_SAFE_NO_PAD.decode(secret).ok()?;
        if decoded.len() != SECRET_BYTES {
            return None;
        }
        Some(PresentedKey {
            id: ApiKeyId(id),
            secret_sha256: sha256(secret.as_bytes()),
        })
    }

    /// True when the secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(self.secret_sha256.ct_eq(stored))
    }
}

/// A key just made: the whole key to hand out once, and what is stored of it.
pub struct NewKey {
    pub id: ApiKeyId,
    pub key: String,
    pub secret_sha256: [u8; 32],
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    pub fn generate() -> anyhow::Result<NewKey> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret)
            .map_err(|err| anyhow::anyhow!("no random bytes for a key: {err}"))?;
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let id = ApiKeyId::new();
        Ok(NewKey {
            key: format!("{PREFIX}{}_{secret}", id.0.simple()),
            secret_sha256: sha256(secret.as_bytes()),
            id,
        })
    }

    pub fn secret_sha256_hex(&self) -> String {
        self.secret_sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_to_its_id_and_hash() {
        let new = NewKey::generate().expect("random bytes");
        assert_eq!(new.key.len(), KEY_LEN);
        let presented = PresentedKey::parse(&new.key).expect("a key of the right form");
        assert_eq!(presented.id, new.id);
        assert!(presented.matches(&new.secret_sha256));
        assert!(!format!("{new:?}{presented:?}").contains(&new.key[KEY_LEN - SECRET_LEN..]));
    }

    #[test]
    fn two_keys_share_no_secret() {
        let (a, b) = (
            NewKey::generate().expect("random bytes"),
            NewKey::generate().expect("random bytes"),
        );
        assert_ne!(a.secret_sha256, b.secret_sha256);
    }

    #[test]
    fn anything_else_is_no_key() {
        let good = NewKey::generate().expect("random bytes").key;
        // Another last character than the key's (a random one is 'A' once in 64 keys).
        let mut wrong_secret = good.clone();
        let other = if good.ends_with('A') { "B" } else { "A" };
        wrong_secret.replace_range(KEY_LEN - 1.., other);
        for bad in [
            "",
            "vod_",
            &good[..KEY_LEN - 1],
            &format!("{good}A"),
            &good.replacen("vod_", "vid_", 1),
            &good.replacen('_', "-", 1),
            &format!("vod_{}_{}", "G".repeat(32), &good[KEY_LEN - SECRET_LEN..]),
            &format!("vod_{}_{}", "a".repeat(32), "!".repeat(43)),
            &format!("vod_{}_{}", "é".repeat(16), &good[KEY_LEN - SECRET_LEN..]),
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad:?} parsed");
        }
        let parsed = PresentedKey::parse(&wrong_secret);
        let original = PresentedKey::parse(&good).expect("a key");
        assert_ne!(wrong_secret, good);
        assert!(parsed.is_none_or(|p| p.secret_sha256 != original.secret_sha256));
    }
}
