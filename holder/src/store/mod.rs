//! Where presentations are kept: a directory of the local disk (`fs`) or a bucket of an
//! S3-compatible object store (`s3`), chosen by `HOLDER_STORE`.
//!
//! Both are read through one `ObjectStore`, so HTTP serves the same URLs with the same headers
//! from either. FTP ingest writes through the back end of its kind (`crate::ftp`).

mod bucket;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::aws::AmazonS3;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::ObjectStore;

use crate::config::{Config, S3Settings, StoreKind};

pub use bucket::{bucket_store, check_bucket};

/// The store of presentations, shared by HTTP serving and FTP ingest.
#[derive(Clone, Debug)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    place: Place,
    /// The bucket's URL signer and how long a signed URL lasts, when reads are redirected to
    /// the bucket (`HOLDER_S3__PRESIGNED_REDIRECT_SECS`).
    redirects: Option<(Arc<AmazonS3>, Duration)>,
}

/// What the store is, for checks and for the FTP back end.
#[derive(Clone, Debug)]
pub enum Place {
    /// The canonical root directory.
    Directory(PathBuf),
    /// The bucket, with the settings FTP uploads need.
    Bucket(S3Settings),
}

impl Store {
    /// Opens the configured store. The directory is created if missing; the bucket must exist
    /// and take holder's key, or holder does not start.
    pub async fn open(config: &Config) -> anyhow::Result<Store> {
        match config.store {
            StoreKind::Fs => Self::directory(&config.root).await,
            StoreKind::S3 => {
                let bucket = bucket_store(&config.s3)?;
                check_bucket(bucket.as_ref(), &config.s3).await?;
                let redirects = (config.s3.presigned_redirect_secs > 0).then(|| {
                    (
                        bucket.clone(),
                        Duration::from_secs(config.s3.presigned_redirect_secs),
                    )
                });
                Ok(Store {
                    objects: bucket,
                    place: Place::Bucket(config.s3.clone()),
                    redirects,
                })
            }
        }
    }

    async fn directory(root: &FsPath) -> anyhow::Result<Store> {
        tokio::fs::create_dir_all(root)
            .await
            .with_context(|| format!("failed to create root {}", root.display()))?;
        let root = tokio::fs::canonicalize(root)
            .await
            .with_context(|| format!("failed to resolve root {}", root.display()))?;
        let objects = LocalFileSystem::new_with_prefix(&root)
            .with_context(|| format!("failed to open root {}", root.display()))?;
        Ok(Store {
            objects: Arc::new(objects),
            place: Place::Directory(root),
            redirects: None,
        })
    }

    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    pub fn place(&self) -> &Place {
        &self.place
    }

    /// A short description for logs, without secrets.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Directory(root) => format!("fs:{}", root.display()),
            Place::Bucket(s3) => format!("s3:{}/{}", s3.endpoint.trim_end_matches('/'), s3.bucket),
        }
    }

    /// A URL of the bucket that reads `key` for a while, when reads are redirected there; how
    /// long it lasts comes with it.
    pub async fn presigned_get(
        &self,
        key: &ObjectPath,
    ) -> Option<Result<(String, Duration), object_store::Error>> {
        let (signer, lasts) = self.redirects.as_ref()?;
        Some(
            signer
                .signed_url(axum::http::Method::GET, key, *lasts)
                .await
                .map(|url| (url.to_string(), *lasts)),
        )
    }

    /// How long a player is told to wait when the store cannot be reached.
    pub fn retry_after(&self) -> Duration {
        match &self.place {
            Place::Directory(_) => Duration::from_secs(1),
            Place::Bucket(s3) => Duration::from_secs(s3.retry_after_secs.max(1)),
        }
    }

    /// Whether the store can be read now: the root directory is readable, or the bucket
    /// answers a listing.
    pub async fn reachable(&self) -> Result<(), String> {
        match &self.place {
            Place::Directory(root) => tokio::fs::read_dir(root)
                .await
                .map(drop)
                .map_err(|err| format!("root {} is not readable: {err}", root.display())),
            Place::Bucket(s3) => check_bucket(self.objects.as_ref(), s3)
                .await
                .map_err(|err| format!("{err:#}")),
        }
    }
}

/// The key of a published file from its path relative to the store's root, `None` for a path
/// no object can have.
pub fn object_key(relative: &str) -> Option<ObjectPath> {
    ObjectPath::parse(relative)
        .ok()
        .filter(|key| !key.as_ref().is_empty())
}
