//! fflow's one FTP client of holder: it connects, logs in and sets binary mode, and gives every
//! call a deadline, since suppaftp's data connections have none. Publishing ([`crate::ftp`])
//! and removal ([`crate::unpublish`]) both go through it.

use std::future::Future;
use std::time::Duration;

use secrecy::ExposeSecret;
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpResult, Status};
use tokio::io::AsyncRead;

use crate::config::HolderSettings;

#[derive(Debug, thiserror::Error)]
pub enum FtpCallError {
    #[error("holder did not answer while {0}")]
    TimedOut(&'static str),
    #[error("holder answered {status} while {doing}: {text}")]
    Answered {
        doing: &'static str,
        status: u32,
        text: String,
    },
    #[error("{0}")]
    Failed(FtpError),
}

impl FtpCallError {
    /// holder's 550: the path is missing, or holder refused to act on it.
    pub fn is_file_unavailable(&self) -> bool {
        matches!(self, Self::Answered { status, .. } if *status == Status::FileUnavailable.code())
    }
}

/// A logged-in FTP session on holder, in binary mode.
pub struct HolderFtp {
    ftp: AsyncFtpStream,
    /// The deadline of every call, a whole file transfer included.
    limit: Duration,
}

impl HolderFtp {
    pub async fn connect(settings: &HolderSettings) -> Result<Self, FtpCallError> {
        let limit = Duration::from_millis(settings.timeout_ms);
        let ftp = within(
            limit,
            "connecting",
            AsyncFtpStream::connect(settings.addr.as_str()),
        )
        .await?;
        let mut holder = Self { ftp, limit };
        let ready = async {
            within(
                limit,
                "logging in",
                holder
                    .ftp
                    .login(settings.user.as_str(), settings.password.expose_secret()),
            )
            .await?;
            within(
                limit,
                "setting binary mode",
                holder.ftp.transfer_type(FileType::Binary),
            )
            .await
        }
        .await;
        match ready {
            Ok(()) => Ok(holder),
            Err(err) => {
                holder.quit().await;
                Err(err)
            }
        }
    }

    pub async fn mkdir(&mut self, path: &str) -> Result<(), FtpCallError> {
        within(self.limit, "creating a directory", self.ftp.mkdir(path)).await
    }

    /// Uploads `file` to `path`; returns the bytes sent.
    pub async fn put_file<R>(&mut self, path: &str, file: &mut R) -> Result<u64, FtpCallError>
    where
        R: AsyncRead + Unpin,
    {
        within(self.limit, "uploading", self.ftp.put_file(path, file)).await
    }

    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), FtpCallError> {
        within(self.limit, "renaming", self.ftp.rename(from, to)).await
    }

    pub async fn rm(&mut self, path: &str) -> Result<(), FtpCallError> {
        within(self.limit, "deleting a file", self.ftp.rm(path)).await
    }

    pub async fn rmdir(&mut self, path: &str) -> Result<(), FtpCallError> {
        within(self.limit, "removing a directory", self.ftp.rmdir(path)).await
    }

    /// `MLSD`: the facts of every entry of `dir`.
    pub async fn mlsd(&mut self, dir: &str) -> Result<Vec<String>, FtpCallError> {
        within(self.limit, "listing", self.ftp.mlsd(Some(dir))).await
    }

    /// `MLST`: the facts of `path` itself.
    pub async fn mlst(&mut self, path: &str) -> Result<String, FtpCallError> {
        within(self.limit, "looking up a path", self.ftp.mlst(Some(path))).await
    }

    /// Ends the session; a holder that does not answer is left to close it.
    pub async fn quit(mut self) {
        let _ = within(self.limit, "quitting", self.ftp.quit()).await;
    }
}

async fn within<T>(
    limit: Duration,
    doing: &'static str,
    call: impl Future<Output = FtpResult<T>>,
) -> Result<T, FtpCallError> {
    match tokio::time::timeout(limit, call).await {
        Err(_) => Err(FtpCallError::TimedOut(doing)),
        Ok(Err(FtpError::UnexpectedResponse(response))) => Err(FtpCallError::Answered {
            doing,
            status: response.status.code(),
            text: String::from_utf8_lossy(&response.body).trim().to_owned(),
        }),
        Ok(Err(err)) => Err(FtpCallError::Failed(err)),
        Ok(Ok(value)) => Ok(value),
    }
}
