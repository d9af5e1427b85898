//! The source of a concatenated upload: its parts' bytes, in order, fetched from the replica
//! that holds each one (this one, or another over HTTP at the address this replica's own
//! configuration gives its id), then the parts are dropped.

use std::fmt::Display;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures_util::Stream;
use secrecy::SecretString;
use tokio_util::io::ReaderStream;
use vod_contracts::fflow::{session_path, source_path, PartSource};

use crate::auth::authorize;
use crate::config::Config;
use crate::peers::Peers;
use crate::session::{Session, SessionError, Sessions};

/// Where the parts of a concatenated upload are: this replica's own sessions, or the configured
/// peers over HTTP.
pub struct PartSources {
    /// This replica's id: a part on it is read from the spool.
    pub replica_id: String,
    pub peers: Peers,
    /// Sent to the peers, whose source route is internal.
    pub token: SecretString,
    pub sessions: Arc<Sessions>,
    pub http: reqwest::Client,
}

/// Where one part is read from.
enum Location {
    Spool,
    /// `{base_url}/{replica_id}/`, the holding replica's address.
    Peer(String),
}

impl PartSources {
    pub fn new(config: &Config, sessions: Arc<Sessions>, http: reqwest::Client) -> Self {
        Self {
            replica_id: config.replica_id.clone(),
            peers: config.peers.clone(),
            token: config.internal_token.clone(),
            sessions,
            http,
        }
    }

    /// The first part on a replica this one cannot reach: neither itself nor a peer.
    pub fn first_unknown<'a>(&self, parts: &'a [PartSource]) -> Option<&'a PartSource> {
        parts.iter().find(|part| self.locate(part).is_none())
    }

    fn locate(&self, part: &PartSource) -> Option<Location> {
        if part.replica_id == self.replica_id {
            return Some(Location::Spool);
        }
        self.peers
            .base_url(&part.replica_id)
            .map(|base| Location::Peer(format!("{base}/{}/", part.replica_id)))
    }
}

/// Appends every part to the session's source and moves the session on to encoding. The error
/// is the reason a user reads.
pub async fn join_parts(state: &PartSources, session: &Session) -> Result<(), String> {
    let parts = session.parts().await;
    let mut offset = 0u64;
    for part in &parts {
        tracing::info!(part = %part.session_id, replica = %part.replica_id, len = part.len, "joining part");
        let location = state.locate(part).ok_or_else(|| {
            format!(
                "partial upload {} is on replica {}, which is not configured",
                part.session_id, part.replica_id
            )
        })?;
        let written = if let Location::Peer(address) = location {
            let url = format!("{address}{}", source_path(part.session_id));
            let response = authorize(state.http.get(&url), &state.token)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|err| {
                    format!(
                        "partial upload {} could not be fetched: {err}",
                        part.session_id
                    )
                })?;
            append(session, offset, part, response.bytes_stream()).await
        } else {
            let path = state
                .sessions
                .get(part.session_id)
                .map(|local| local.source_path())
                .ok_or_else(|| format!("partial upload {} is gone", part.session_id))?;
            let file = tokio::fs::File::open(&path).await.map_err(|err| {
                format!("partial upload {} is unreadable: {err}", part.session_id)
            })?;
            append(session, offset, part, ReaderStream::new(file)).await
        }?;
        offset = written;
    }
    session
        .joined()
        .await
        .map_err(|err| format!("the joined upload is not whole: {err}"))?;
    for part in &parts {
        drop_part(state, part).await;
    }
    Ok(())
}

async fn append<S, E>(
    session: &Session,
    offset: u64,
    part: &PartSource,
    body: S,
) -> Result<u64, String>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let written = session
        .write_part(offset, part.len, body)
        .await
        .map_err(|err| match err {
            SessionError::Unexpected(err) => {
                tracing::error!(error = %format!("{err:#}"), "failed to join a part");
                "the encoder failed while joining the upload".to_owned()
            }
            other => format!(
                "partial upload {} could not be joined: {other}",
                part.session_id
            ),
        })?;
    if written != offset + part.len {
        return Err(format!(
            "partial upload {} holds {} bytes, {} were expected",
            part.session_id,
            written - offset,
            part.len
        ));
    }
    Ok(written)
}

/// The part's bytes are in the joined source now; its own spool goes. Best effort: a part left
/// behind expires with its upload session.
async fn drop_part(state: &PartSources, part: &PartSource) {
    let Some(location) = state.locate(part) else {
        return;
    };
    let Location::Peer(address) = location else {
        if let Some(local) = state.sessions.remove(part.session_id) {
            if let Err(err) = local.remove_spool().await {
                tracing::warn!(part = %part.session_id, error = %err, "part spool not removed");
            }
        }
        return;
    };
    let url = format!("{address}{}", session_path(part.session_id));
    let deleted = authorize(state.http.delete(&url), &state.token)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("failed to drop the part");
    if let Err(err) = deleted {
        tracing::warn!(part = %part.session_id, error = %format!("{err:#}"), "part not dropped");
    }
}
