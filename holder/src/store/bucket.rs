//! The `s3` store: a bucket of an S3-compatible object store, through `object_store`'s client
//! (request signing, multipart uploads, retries).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use secrecy::ExposeSecret;

use crate::config::S3Settings;

/// A key no presentation has: listing under it proves the bucket exists and takes our key,
/// and lists nothing.
const CHECK_PREFIX: &str = ".holder-check";

/// The client of the configured bucket. Nothing is sent yet.
pub fn bucket_store(s3: &S3Settings) -> anyhow::Result<Arc<AmazonS3>> {
    let endpoint = s3.endpoint.trim().trim_end_matches('/');
    let client = ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_millis(s3.connect_timeout_ms))
        .with_timeout(Duration::from_millis(s3.request_timeout_ms))
        // Shorter than any server's idle timeout, so a pooled connection is never found closed.
        .with_pool_idle_timeout(Duration::from_secs(20));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: s3.max_retries,
        retry_timeout: Duration::from_millis(s3.retry_timeout_ms),
    };
    let bucket = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_region(s3.region.trim())
        .with_bucket_name(s3.bucket.trim())
        .with_access_key_id(&s3.access_key_id)
        .with_secret_access_key(s3.secret_access_key.expose_secret())
        .with_virtual_hosted_style_request(!s3.path_style)
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .with_context(|| format!("invalid settings of the bucket {}", s3.bucket))?;
    Ok(Arc::new(bucket))
}

/// Lists under a key no presentation has: fails when the endpoint cannot be reached, the bucket
/// does not exist or refuses holder's key.
pub async fn check_bucket(objects: &dyn ObjectStore, s3: &S3Settings) -> anyhow::Result<()> {
    objects
        .list_with_delimiter(Some(&ObjectPath::from(CHECK_PREFIX)))
        .await
        .map(drop)
        .map_err(|err| {
            let hint = if refuses_the_key(&err) {
                " (check HOLDER_S3__ACCESS_KEY_ID and HOLDER_S3__SECRET_ACCESS_KEY)"
            } else {
                ""
            };
            anyhow::anyhow!(
                "the bucket {bucket} at {endpoint} cannot be used{hint}: {err}",
                bucket = s3.bucket,
                endpoint = s3.endpoint,
            )
        })
}

/// Whether the bucket refused holder's key: `object_store` tells so for some requests and
/// reports the status (401, 403) for others, listings among them.
fn refuses_the_key(err: &object_store::Error) -> bool {
    match err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => true,
        err => {
            let text = err.to_string();
            ["401 Unauthorized", "403 Forbidden"]
                .iter()
                .any(|status| text.contains(status))
        }
    }
}
