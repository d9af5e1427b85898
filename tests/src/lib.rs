//! The test environment of the end-to-end tests.
//!
//! [`TestEnv`] gives a test its own world on the real services: a fresh PostgreSQL database,
//! its own queue names, its own Redis key prefix and its own directories. [`Stack`] starts the
//! whole system in-process on port 0 inside that world: holder, two fflow replicas, two
//! uploaders and the gateway. Tests run in parallel without seeing each other.

pub mod browser;
mod env;
pub mod exposition;
pub mod media;
pub mod receiver;
mod stack;
pub mod tus;

pub use env::TestEnv;
pub use stack::{
    client_with_key, create_key, create_project, HolderStore, Proxied, Proxies, Stack,
    StackOptions, KEY_CACHE_MS, STACK_BUCKET,
};

/// Lowercase hex SHA-256, as fflow records a source's.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Waits by polling, never by a fixed sleep: `check` runs until it returns `Some` or the
/// deadline passes.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
