//! The back end of an FTP session, of the store's kind: the root directory or the bucket.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Fileinfo, Metadata, Result, StorageBackend};
use unftp_sbe_fs::Meta;
use vod_infra::free_space::FreeSpaceReserve;

use super::bucket::{BucketStorage, ObjectMetadata};
use super::storage::RootStorage;
use crate::metrics::HolderMetrics;
use crate::store::{Place, Store};

#[derive(Debug)]
pub enum SessionStorage {
    Directory(RootStorage),
    Bucket(BucketStorage),
}

impl SessionStorage {
    pub fn open(store: &Store, space: FreeSpaceReserve, metrics: HolderMetrics) -> Self {
        match store.place() {
            Place::Directory(root) => Self::Directory(RootStorage::open(root, space, metrics)),
            Place::Bucket(s3) => Self::Bucket(BucketStorage::new(store.objects().clone(), s3)),
        }
    }
}

#[derive(Debug)]
pub enum SessionMeta {
    Directory(Meta),
    Bucket(ObjectMetadata),
}

impl Metadata for SessionMeta {
    fn len(&self) -> u64 {
        match self {
            Self::Directory(meta) => meta.len(),
            Self::Bucket(meta) => meta.len(),
        }
    }

    fn is_dir(&self) -> bool {
        match self {
            Self::Directory(meta) => meta.is_dir(),
            Self::Bucket(meta) => meta.is_dir(),
        }
    }

    fn is_file(&self) -> bool {
        match self {
            Self::Directory(meta) => meta.is_file(),
            Self::Bucket(meta) => meta.is_file(),
        }
    }

    fn is_symlink(&self) -> bool {
        match self {
            Self::Directory(meta) => meta.is_symlink(),
            Self::Bucket(meta) => meta.is_symlink(),
        }
    }

    fn modified(&self) -> Result<SystemTime> {
        match self {
            Self::Directory(meta) => meta.modified(),
            Self::Bucket(meta) => meta.modified(),
        }
    }

    fn gid(&self) -> u32 {
        match self {
            Self::Directory(meta) => meta.gid(),
            Self::Bucket(meta) => meta.gid(),
        }
    }

    fn uid(&self) -> u32 {
        match self {
            Self::Directory(meta) => meta.uid(),
            Self::Bucket(meta) => meta.uid(),
        }
    }

    fn links(&self) -> u64 {
        match self {
            Self::Directory(meta) => meta.links(),
            Self::Bucket(meta) => meta.links(),
        }
    }
}

fn relabel<M>(
    listed: Vec<Fileinfo<PathBuf, M>>,
    wrap: fn(M) -> SessionMeta,
) -> Vec<Fileinfo<PathBuf, SessionMeta>>
where
    M: Metadata,
{
    listed
        .into_iter()
        .map(|info| Fileinfo {
            path: info.path,
            metadata: wrap(info.metadata),
        })
        .collect()
}

#[async_trait]
impl<User: UserDetail> StorageBackend<User> for SessionStorage {
    type Metadata = SessionMeta;

    fn enter(&mut self, user: &User) -> io::Result<()> {
        match self {
            Self::Directory(storage) => StorageBackend::<User>::enter(storage, user),
            Self::Bucket(_) => Ok(()),
        }
    }

    fn supported_features(&self) -> u32 {
        match self {
            Self::Directory(storage) => StorageBackend::<User>::supported_features(storage),
            Self::Bucket(_) => 0,
        }
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> Result<SessionMeta> {
        match self {
            Self::Directory(storage) => storage
                .metadata(user, path)
                .await
                .map(SessionMeta::Directory),
            Self::Bucket(storage) => storage
                .metadata(path.as_ref())
                .await
                .map(SessionMeta::Bucket),
        }
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, SessionMeta>>> {
        match self {
            Self::Directory(storage) => Ok(relabel(
                storage.list(user, path).await?,
                SessionMeta::Directory,
            )),
            Self::Bucket(storage) => Ok(relabel(
                storage.list(path.as_ref()).await?,
                SessionMeta::Bucket,
            )),
        }
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        match self {
            Self::Directory(storage) => storage.get(user, path, start_pos).await,
            Self::Bucket(storage) => storage.get(path.as_ref(), start_pos).await,
        }
    }

    async fn put<
        P: AsRef<Path> + Send + Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &User,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        match self {
            Self::Directory(storage) => storage.put(user, input, path, start_pos).await,
            Self::Bucket(storage) => storage.put(input, path.as_ref(), start_pos).await,
        }
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        match self {
            Self::Directory(storage) => storage.del(user, path).await,
            Self::Bucket(storage) => storage.del(path.as_ref()).await,
        }
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        match self {
            Self::Directory(storage) => storage.mkd(user, path).await,
            // Directories are the prefixes of keys.
            Self::Bucket(_) => Ok(()),
        }
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        from: P,
        to: P,
    ) -> Result<()> {
        match self {
            Self::Directory(storage) => storage.rename(user, from, to).await,
            Self::Bucket(storage) => storage.rename(from.as_ref(), to.as_ref()).await,
        }
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        match self {
            Self::Directory(storage) => storage.rmd(user, path).await,
            // A prefix goes with its last key.
            Self::Bucket(_) => Ok(()),
        }
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        match self {
            Self::Directory(storage) => storage.cwd(user, path).await,
            // Every prefix is a directory, with keys under it or not yet.
            Self::Bucket(_) => Ok(()),
        }
    }
}
