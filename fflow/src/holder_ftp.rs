//! fflow's one FTP client of holder: it connects, switches to TLS when configured, logs in and
//! sets binary mode, and gives every call a deadline, since suppaftp's data connections have
//! none. Publishing ([`crate::ftp`]), removal ([`crate::unpublish`]) and the readiness check
//! ([`crate::holder_check`]) all go through it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpResult, Status};
use tokio::io::AsyncRead;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::config::HolderSettings;

#[derive(Debug, thiserror::Error)]
pub enum FtpCallError {
    #[error("holder did not answer while {0}")]
    TimedOut(&'static str),
    #[error("holder answered {status}{} while {doing}: {text}", meaning(*status))]
    Answered {
        doing: &'static str,
        status: u32,
        text: String,
    },
    #[error("{0}")]
    Failed(FtpError),
    #[error("holder's CA certificates in {file} cannot be used: {reason}")]
    TlsSetup { file: String, reason: String },
}

/// What holder means by a reply whose own text is generic: libunftp answers every failure of
/// holder's store, its disk or its bucket, with "451 Local error".
fn meaning(status: u32) -> &'static str {
    match status {
        451 => " (its storage, disk or bucket, failed the request)",
        452 => " (its storage is full)",
        _ => "",
    }
}

impl FtpCallError {
    /// holder's 550: the path is missing, or holder refused to act on it.
    pub fn is_file_unavailable(&self) -> bool {
        matches!(self, Self::Answered { status, .. } if *status == Status::FileUnavailable.code())
    }
}

/// A logged-in FTP session on holder, in binary mode.
pub struct HolderFtp {
    ftp: AsyncRustlsFtpStream,
    /// The deadline of every call, a whole file transfer included.
    limit: Duration,
}

/// Connects to holder and reads its greeting, without logging in: whether holder's FTP server
/// answers at all.
pub async fn greets(settings: &HolderSettings) -> bool {
    let limit = Duration::from_millis(settings.timeout_ms);
    match within(
        limit,
        "connecting",
        AsyncRustlsFtpStream::connect(settings.addr.as_str()),
    )
    .await
    {
        Ok(ftp) => {
            HolderFtp { ftp, limit }.quit().await;
            true
        }
        Err(_) => false,
    }
}

impl HolderFtp {
    pub async fn connect(settings: &HolderSettings) -> Result<Self, FtpCallError> {
        let limit = Duration::from_millis(settings.timeout_ms);
        let tls = match settings.tls_ca_file() {
            Some(ca_file) => Some(tls_connector(ca_file).await?),
            None => None,
        };
        let ftp = within(
            limit,
            "connecting",
            AsyncRustlsFtpStream::connect(settings.addr.as_str()),
        )
        .await?;
        let ftp = match tls {
            Some(tls) => {
                within(
                    limit,
                    "switching to tls",
                    ftp.into_secure(tls, settings.tls_domain()),
                )
                .await?
            }
            None => ftp,
        };
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

/// A TLS client trusting the certificates of `ca_file` only. Read at each connection, so
/// replacing the file takes effect without a restart.
async fn tls_connector(ca_file: &Path) -> Result<AsyncRustlsConnector, FtpCallError> {
    let refused = |reason: String| FtpCallError::TlsSetup {
        file: ca_file.display().to_string(),
        reason,
    };
    let pem = tokio::fs::read(ca_file)
        .await
        .map_err(|error| refused(error.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|error| refused(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| refused(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(refused("no certificate in it".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| refused(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(AsyncRustlsConnector::from(
        tokio_rustls::TlsConnector::from(Arc::new(config)),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_on_holder_is_named_as_such() {
        let answered = |status| FtpCallError::Answered {
            doing: "uploading",
            status,
            text: format!("{status} Local error"),
        };
        assert_eq!(
            answered(451).to_string(),
            "holder answered 451 (its storage, disk or bucket, failed the request) while \
             uploading: 451 Local error"
        );
        assert!(answered(452).to_string().contains("its storage is full"));
        assert_eq!(
            answered(550).to_string(),
            "holder answered 550 while uploading: 550 Local error"
        );
    }
}
