use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tracing::{error, warn};
use unftp_core::auth::UserDetail;
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Metadata, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};
use vod_infra::free_space::{FreeSpaceReserve, LowSpace};

use super::admitted::{Admitted, Refusal};
use crate::metrics::HolderMetrics;

/// The filesystem back end of one FTP session, confined to holder's root.
///
/// libunftp builds a back end per session through an infallible factory, while opening the root
/// can fail (it was removed or its permissions changed). Such a session answers every command
/// with "451 local error" instead of taking the server down.
///
/// Uploads keep the root's free-space reserve: one that would leave less free is answered
/// "452 insufficient storage space" once the client sent it all, and what was written of it
/// is removed.
#[derive(Debug)]
pub struct RootStorage {
    filesystem: Option<Filesystem>,
    space: FreeSpaceReserve,
    metrics: HolderMetrics,
}

impl RootStorage {
    pub fn open(root: &Path, space: FreeSpaceReserve, metrics: HolderMetrics) -> Self {
        let filesystem = Filesystem::new(root)
            .inspect_err(|err| {
                error!(root = %root.display(), error = %err, "failed to open ftp root");
            })
            .ok();
        Self {
            filesystem,
            space,
            metrics,
        }
    }

    fn refused(&self, path: &Path, low: LowSpace) -> Error {
        warn!(path = %path.display(), reason = %low, "ftp upload refused, the disk is down to its reserve");
        self.metrics.ftp_upload_refused("insufficient_storage");
        Error::new(ErrorKind::InsufficientStorageSpaceError, low)
    }

    fn filesystem(&self) -> Result<&Filesystem> {
        self.filesystem
            .as_ref()
            .ok_or_else(|| Error::from(ErrorKind::LocalError))
    }
}

#[async_trait]
impl<User: UserDetail> StorageBackend<User> for RootStorage {
    type Metadata = Meta;

    fn enter(&mut self, user: &User) -> io::Result<()> {
        match self.filesystem.as_mut() {
            Some(filesystem) => StorageBackend::<User>::enter(filesystem, user),
            // Refusing here would look like a wrong password; commands fail with 451 instead.
            None => Ok(()),
        }
    }

    fn supported_features(&self) -> u32 {
        self.filesystem
            .as_ref()
            .map_or(0, StorageBackend::<User>::supported_features)
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<Meta> {
        self.filesystem()?.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
        self.filesystem()?.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        self.filesystem()?.get(user, path, start_pos).await
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
        let filesystem = self.filesystem()?;
        let path = path.as_ref().to_path_buf();
        let refusal = Refusal::default();
        let space = self.space.clone();
        let mut input = Admitted::new(input, move |bytes| space.admit(bytes), refusal.clone());
        if let Err(low) = self.space.admit(0) {
            // Nothing is created; the transfer is read to its end so that the client hears why.
            input.refuse(low.clone());
            let _ = tokio::io::copy(&mut input, &mut tokio::io::sink()).await;
            return Err(self.refused(&path, low));
        }
        let stored = filesystem.put(user, input, path.clone(), start_pos).await;
        let Some(low) = refusal.take() else {
            return stored;
        };
        // A file written from its start is removed; an append or a resumed transfer keeps what
        // it had, as after any interrupted one.
        if start_pos == 0 {
            if let Err(err) = filesystem.del(user, path.clone()).await {
                warn!(path = %path.display(), error = %err, "refused upload not removed");
            }
        }
        Err(self.refused(&path, low))
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        self.filesystem()?.del(user, path).await
    }

    /// A directory that already exists counts as made: fflow makes every level of a
    /// presentation's path on each publish, and a refusal would be logged as a failure.
    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        let filesystem = self.filesystem()?;
        match filesystem.mkd(user, path.as_ref()).await {
            Ok(()) => Ok(()),
            Err(error) => match filesystem.metadata(user, path.as_ref()).await {
                Ok(existing) if existing.is_dir() => Ok(()),
                _ => Err(error),
            },
        }
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        from: P,
        to: P,
    ) -> Result<()> {
        self.filesystem()?.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        self.filesystem()?.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        self.filesystem()?.cwd(user, path).await
    }
}
