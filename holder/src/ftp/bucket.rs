//! The bucket back end of an FTP session: what fflow sends is written to the `s3` store.
//!
//! S3 has no rename, no append and no directories. fflow uploads each file under a hidden
//! temporary name (`dir/.name.part`) and renames it once complete; here the temporary name
//! *is* the final key (`dir/name`): the upload goes straight to it, as one request up to the
//! part size and as a multipart upload beyond, which the bucket shows only once complete, so a
//! reader never finds half an object. The rename that follows has nothing left to do. Files
//! are therefore published in the order fflow sends them: segments first, then media
//! playlists and the MPD, the master playlist last. A failed upload is aborted and leaves
//! nothing.
//!
//! Directories exist as the prefixes of keys: making or removing one changes nothing, and a
//! path is a directory when keys lie under it.

use std::fmt::Debug;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_util::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio_util::io::StreamReader;
use tracing::warn;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Metadata, Result};

use crate::config::S3Settings;

/// The back end of one session, over the store's client (shared by every session).
#[derive(Clone)]
pub struct BucketStorage {
    objects: Arc<dyn ObjectStore>,
    part_size: usize,
    concurrency: usize,
}

impl Debug for BucketStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStorage")
            .field("objects", &self.objects.to_string())
            .finish()
    }
}

/// What is at a path of the bucket.
#[derive(Clone, Debug)]
pub struct ObjectMetadata {
    len: u64,
    is_dir: bool,
    modified: SystemTime,
}

impl Metadata for ObjectMetadata {
    fn len(&self) -> u64 {
        self.len
    }

    fn is_dir(&self) -> bool {
        self.is_dir
    }

    fn is_file(&self) -> bool {
        !self.is_dir
    }

    fn is_symlink(&self) -> bool {
        false
    }

    fn modified(&self) -> Result<SystemTime> {
        Ok(self.modified)
    }

    fn gid(&self) -> u32 {
        0
    }

    fn uid(&self) -> u32 {
        0
    }
}

impl ObjectMetadata {
    fn directory() -> Self {
        Self {
            len: 0,
            is_dir: true,
            modified: SystemTime::UNIX_EPOCH,
        }
    }
}

impl BucketStorage {
    pub fn new(objects: Arc<dyn ObjectStore>, s3: &S3Settings) -> Self {
        Self {
            objects,
            part_size: s3.part_size_bytes,
            concurrency: s3.upload_concurrency,
        }
    }

    /// What is at `path`: a directory, the object of that name, or, for the temporary name of
    /// an upload, the object it was written to.
    pub async fn metadata(&self, path: &Path) -> Result<ObjectMetadata> {
        let key = literal_key_of(path)?;
        if key.as_ref().is_empty() || self.has_children(&key).await? {
            return Ok(ObjectMetadata::directory());
        }
        let meta = match self.objects.head(&key).await {
            Err(object_store::Error::NotFound { .. }) if key != key_of(path)? => {
                self.objects.head(&key_of(path)?).await
            }
            found => found,
        }
        .map_err(storage_error)?;
        Ok(ObjectMetadata {
            len: meta.size,
            is_dir: false,
            modified: meta.last_modified.into(),
        })
    }

    async fn has_children(&self, key: &ObjectPath) -> Result<bool> {
        let listed = self
            .objects
            .list_with_delimiter(Some(key))
            .await
            .map_err(storage_error)?;
        Ok(!listed.objects.is_empty() || !listed.common_prefixes.is_empty())
    }

    /// The files and directories right under `path` (an empty list for a path with nothing
    /// under it, as for an empty directory).
    pub async fn list(&self, path: &Path) -> Result<Vec<Fileinfo<PathBuf, ObjectMetadata>>> {
        let key = literal_key_of(path)?;
        let prefix = (!key.as_ref().is_empty()).then_some(&key);
        let listed = self
            .objects
            .list_with_delimiter(prefix)
            .await
            .map_err(storage_error)?;
        let directories = listed.common_prefixes.into_iter().filter_map(|prefix| {
            Some(Fileinfo {
                path: PathBuf::from(prefix.filename()?),
                metadata: ObjectMetadata::directory(),
            })
        });
        let files = listed.objects.into_iter().filter_map(|object| {
            Some(Fileinfo {
                path: PathBuf::from(object.location.filename()?),
                metadata: ObjectMetadata {
                    len: object.size,
                    is_dir: false,
                    modified: object.last_modified.into(),
                },
            })
        });
        Ok(directories.chain(files).collect())
    }

    pub async fn get(
        &self,
        path: &Path,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let key = key_of(path)?;
        let options = GetOptions {
            range: (start_pos > 0).then_some(GetRange::Offset(start_pos)),
            ..GetOptions::default()
        };
        let read = self
            .objects
            .get_opts(&key, options)
            .await
            .map_err(storage_error)?;
        let stream = read.into_stream().map_err(io::Error::other);
        Ok(Box::new(SyncReader(Mutex::new(StreamReader::new(stream)))))
    }

    /// Stores the upload under its final key (see the module's comment); returns its size.
    pub async fn put<R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        mut input: R,
        path: &Path,
        start_pos: u64,
    ) -> Result<u64> {
        if start_pos != 0 {
            // A bucket cannot append; fflow always sends whole files.
            return Err(Error::from(ErrorKind::CommandNotImplemented));
        }
        let key = key_of(path)?;
        let mut writer =
            BufWriter::with_capacity(self.objects.clone(), key.clone(), self.part_size)
                .with_max_concurrency(self.concurrency);
        let copied = tokio::io::copy(&mut input, &mut writer).await;
        let bytes = match copied {
            Ok(bytes) => bytes,
            Err(err) => {
                if let Err(abort) = writer.abort().await {
                    warn!(key = %key, error = %abort, "failed to abort an interrupted upload");
                }
                warn!(key = %key, error = %err, "upload to the bucket failed");
                return Err(Error::new(ErrorKind::LocalError, err));
            }
        };
        writer.shutdown().await.map_err(|err| {
            warn!(key = %key, error = %err, "upload to the bucket failed");
            Error::new(ErrorKind::LocalError, err)
        })?;
        Ok(bytes)
    }

    /// Removes the object of that very name (what a listing shows; holder itself never stores
    /// one under a temporary name). Removing what is not there succeeds, as S3 does.
    pub async fn del(&self, path: &Path) -> Result<()> {
        let key = literal_key_of(path)?;
        match self.objects.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(storage_error(err)),
        }
    }

    /// The upload already went to the final key when `from` is its temporary name; any other
    /// rename copies within the bucket, then removes the original.
    pub async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (from, to) = (key_of(from)?, key_of(to)?);
        if from == to {
            return Ok(());
        }
        self.objects.copy(&from, &to).await.map_err(storage_error)?;
        self.objects.delete(&from).await.map_err(storage_error)
    }
}

/// The key a path of an FTP session writes to. The hidden temporary name of an upload,
/// `.name.part`, names the key of `name`.
fn key_of(path: &Path) -> Result<ObjectPath> {
    key_from(path, true)
}

/// The key of exactly the name a path gives.
fn literal_key_of(path: &Path) -> Result<ObjectPath> {
    key_from(path, false)
}

fn key_from(path: &Path, temporary_is_final: bool) -> Result<ObjectPath> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(part) => {
                let part = part
                    .to_str()
                    .ok_or_else(|| Error::from(ErrorKind::FileNameNotAllowedError))?;
                parts.push(part);
            }
        }
    }
    if let Some(last) = parts.last_mut().filter(|_| temporary_is_final) {
        if let Some(name) = last
            .strip_prefix('.')
            .and_then(|rest| rest.strip_suffix(".part"))
            .filter(|name| !name.is_empty())
        {
            *last = name;
        }
    }
    ObjectPath::parse(parts.join("/"))
        .map_err(|err| Error::new(ErrorKind::FileNameNotAllowedError, err))
}

/// A missing object is 550; anything else (the bucket unreachable, holder's key refused) is a
/// local error, 451, which fflow retries.
fn storage_error(err: object_store::Error) -> Error {
    match err {
        object_store::Error::NotFound { .. } => {
            Error::new(ErrorKind::PermanentFileNotAvailable, err)
        }
        err => {
            warn!(error = %err, "the bucket failed a request");
            Error::new(ErrorKind::LocalError, err)
        }
    }
}

/// libunftp wants a reader that is `Sync`; the stream of an object is not. The reader is
/// only ever used through `&mut`, so the mutex is never contended.
struct SyncReader<R>(Mutex<R>);

impl<R: AsyncRead + Unpin> AsyncRead for SyncReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        Pin::new(inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> String {
        key_of(Path::new(path))
            .map(|key| key.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn the_temporary_name_of_an_upload_is_its_final_key() {
        assert_eq!(
            key("/videos/v/f/.master.m3u8.part"),
            "videos/v/f/master.m3u8"
        );
        assert_eq!(key("/videos/v/f/master.m3u8"), "videos/v/f/master.m3u8");
        assert_eq!(key("videos/.seg-1.m4s.part"), "videos/seg-1.m4s");
    }

    #[test]
    fn a_temporary_name_taken_literally_is_its_own_key() {
        let literal = |path: &str| literal_key_of(Path::new(path)).map(|key| key.to_string());
        assert_eq!(
            literal("/videos/v/f/.master.m3u8.part").ok().as_deref(),
            Some("videos/v/f/.master.m3u8.part")
        );
    }

    #[test]
    fn other_names_are_kept_as_they_are() {
        assert_eq!(key("/videos/v/.part"), "videos/v/.part");
        assert_eq!(key("/videos/v/..part"), "videos/v/..part");
        assert_eq!(key("/videos/v/a.part"), "videos/v/a.part");
        assert_eq!(key("/"), "");
        assert_eq!(key("/videos/../v/x"), "v/x");
    }
}
