//! What holder counts: files served over HTTP by kind and status, their bytes, the files
//! received (or refused) over FTP, and FTP logins (taken, refused, and the addresses locked
//! out). The registry is the server's own, built in `App::build`.

use async_trait::async_trait;
use libunftp::notification::{DataEvent, DataListener, EventMeta, PresenceEvent, PresenceListener};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use vod_infra::metrics::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServedLabels {
    pub kind: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `bad_credentials` or `locked_out`.
    pub reason: &'static str,
}

#[derive(Clone, Debug)]
pub struct HolderMetrics {
    requests: Family<ServedLabels, Counter>,
    bytes_served: Family<KindLabels, Counter>,
    ftp_uploads: Counter,
    ftp_bytes: Counter,
    ftp_refused: Family<ReasonLabels, Counter>,
    ftp_logins: Counter,
    ftp_logins_refused: Family<RefusedLabels, Counter>,
    ftp_lockouts: Counter,
}

impl HolderMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            bytes_served: Family::default(),
            ftp_uploads: Counter::default(),
            ftp_bytes: Counter::default(),
            ftp_refused: Family::default(),
            ftp_logins: Counter::default(),
            ftp_logins_refused: Family::default(),
            ftp_lockouts: Counter::default(),
        };
        registry.register(
            "http_requests",
            "File requests answered, by kind of file and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_bytes_served",
            "Bytes of files sent to players, by kind of file",
            metrics.bytes_served.clone(),
        );
        registry.register(
            "ftp_uploads_received",
            "Files stored over FTP",
            metrics.ftp_uploads.clone(),
        );
        registry.register(
            "ftp_bytes_received",
            "Bytes stored over FTP",
            metrics.ftp_bytes.clone(),
        );
        registry.register(
            "ftp_uploads_refused",
            "Files refused over FTP, by reason (insufficient_storage: the disk is down to its \
             free-space reserve)",
            metrics.ftp_refused.clone(),
        );
        registry.register("ftp_logins", "FTP logins taken", metrics.ftp_logins.clone());
        registry.register(
            "ftp_logins_refused",
            "FTP logins refused, by reason: bad_credentials, or locked_out (any password, while \
             the client's address is locked out)",
            metrics.ftp_logins_refused.clone(),
        );
        registry.register(
            "ftp_lockouts",
            "Client addresses locked out after too many refused FTP logins",
            metrics.ftp_lockouts.clone(),
        );
        metrics
    }

    pub fn ftp_upload_refused(&self, reason: &str) {
        self.ftp_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn ftp_login_refused(&self, reason: &'static str) {
        self.ftp_logins_refused
            .get_or_create(&RefusedLabels { reason })
            .inc();
    }

    pub fn ftp_lockout(&self) {
        self.ftp_lockouts.inc();
    }

    /// Counts a file request; `body_bytes` is what the answer carries.
    pub fn served(&self, path: &str, status: u16, body_bytes: u64) {
        let kind = file_kind(path).to_owned();
        self.requests
            .get_or_create(&ServedLabels {
                kind: kind.clone(),
                status,
            })
            .inc();
        if body_bytes > 0 {
            self.bytes_served
                .get_or_create(&KindLabels { kind })
                .inc_by(body_bytes);
        }
    }

    /// Hands libunftp a listener counting stored files.
    pub fn ftp_listener(&self) -> FtpUploads {
        FtpUploads(self.clone())
    }

    /// Hands libunftp a listener counting logins.
    pub fn ftp_presence_listener(&self) -> FtpLogins {
        FtpLogins(self.clone())
    }
}

/// The kind of a published file, from its extension: a bounded label.
pub fn file_kind(path: &str) -> &'static str {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("m3u8") | Some("mpd") => "playlist",
        Some("m4s") | Some("mp4") | Some("ts") => "segment",
        Some("jpg") | Some("jpeg") => "image",
        Some("vtt") => "subtitles",
        Some("json") => "metadata",
        _ => "other",
    }
}

#[derive(Debug)]
pub struct FtpUploads(HolderMetrics);

#[async_trait]
impl DataListener for FtpUploads {
    async fn receive_data_event(&self, event: DataEvent, _meta: EventMeta) {
        if let DataEvent::Put { bytes, .. } = event {
            self.0.ftp_uploads.inc();
            self.0.ftp_bytes.inc_by(bytes);
        }
    }
}

#[derive(Debug)]
pub struct FtpLogins(HolderMetrics);

#[async_trait]
impl PresenceListener for FtpLogins {
    async fn receive_presence_event(&self, event: PresenceEvent, _meta: EventMeta) {
        if let PresenceEvent::LoggedIn = event {
            self.0.ftp_logins.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_counted_by_kind() {
        assert_eq!(file_kind("/videos/a/b/master.m3u8"), "playlist");
        assert_eq!(file_kind("/videos/a/b/manifest.MPD"), "playlist");
        assert_eq!(file_kind("/videos/a/b/media_0_00001.m4s"), "segment");
        assert_eq!(file_kind("/videos/a/b/poster.jpg"), "image");
        assert_eq!(file_kind("/videos/a/b/noextension"), "other");
        let metrics = HolderMetrics::register(&mut vod_infra::metrics::registry("holder"));
        metrics.served("/v/master.m3u8", 200, 120);
        metrics.served("/v/master.m3u8", 404, 0);
        assert_eq!(
            metrics
                .bytes_served
                .get_or_create(&KindLabels {
                    kind: "playlist".to_owned()
                })
                .get(),
            120
        );
    }
}
