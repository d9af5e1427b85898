//! The sessions of this replica, by id: created, reloaded from the spool at start, found,
//! swept when idle, removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vod_contracts::fflow::CreateProcess;
use vod_contracts::SessionId;
use vod_infra::free_space::FreeSpaceReserve;

use super::machine::{Machine, Start};
use super::record::SessionRecord;
use super::{Phase, Session, SessionError, SOURCE_FILE};

pub struct Sessions {
    root: PathBuf,
    /// New sessions may be encoded while they upload.
    streaming: bool,
    by_id: Mutex<HashMap<SessionId, Arc<Session>>>,
    creating: tokio::sync::Mutex<()>,
    stopping: CancellationToken,
    /// The free space the spool's disk keeps: new sessions and their bytes are refused below it.
    space: FreeSpaceReserve,
}

pub enum Created {
    New(Arc<Session>),
    Existing(Arc<Session>),
}

impl Sessions {
    /// Loads the sessions spooled under `root` (`{spool_dir}/{replica_id}`) by an earlier run,
    /// with no free-space reserve.
    #[cfg(test)]
    pub async fn load(
        root: PathBuf,
        streaming: bool,
        stopping: CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::load_keeping_free(root, streaming, 0, stopping).await
    }

    /// As [`Sessions::load`], refusing new sessions and bytes that would leave the spool's disk
    /// with less than `min_free_bytes` free.
    pub async fn load_keeping_free(
        root: PathBuf,
        streaming: bool,
        min_free_bytes: u64,
        stopping: CancellationToken,
    ) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(&root)
            .await
            .with_context(|| format!("failed to create spool directory {}", root.display()))?;
        let sessions = Self {
            space: FreeSpaceReserve::new(&root, min_free_bytes),
            root,
            streaming,
            by_id: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            stopping,
        };
        let mut entries = tokio::fs::read_dir(&sessions.root)
            .await
            .context("failed to list the spool directory")?;
        while let Some(entry) = entries.next_entry().await? {
            let dir = entry.path();
            if !entry.file_type().await?.is_dir() {
                continue;
            }
            match sessions.reload(&dir).await {
                Ok(session) => {
                    tracing::info!(
                        session_id = %session.session_id,
                        "session reloaded from spool"
                    );
                    sessions.insert(session);
                }
                Err(err) => {
                    // A directory whose creation never completed: nobody was told about it.
                    tracing::warn!(dir = %dir.display(), error = %format!("{err:#}"), "unusable spool directory removed");
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                }
            }
        }
        Ok(sessions)
    }

    fn start(&self, record: &SessionRecord) -> Start {
        Start {
            encodable: record.target().is_some(),
            streaming_allowed: self.streaming,
            total_bytes: record.total_bytes,
            epoch: record.epoch,
        }
    }

    async fn reload(&self, dir: &Path) -> anyhow::Result<Arc<Session>> {
        let record = SessionRecord::read(dir).await?;
        let on_disk = match tokio::fs::metadata(dir.join(SOURCE_FILE)).await {
            Ok(metadata) => metadata.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => return Err(err).context("failed to read the source size"),
        };
        let machine = Machine::reloaded(
            self.start(&record),
            on_disk,
            record.finished,
            !record.parts.is_empty(),
        );
        Ok(self.session(&record, dir.to_path_buf(), machine))
    }

    fn session(&self, record: &SessionRecord, dir: PathBuf, machine: Machine) -> Arc<Session> {
        Arc::new(Session::new(
            record,
            dir,
            machine,
            self.stopping.child_token(),
            self.space.clone(),
        ))
    }

    /// The spool's free-space reserve.
    pub fn free_space(&self) -> &FreeSpaceReserve {
        &self.space
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.by_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, session: Arc<Session>) {
        self.map().insert(session.session_id, session);
    }

    pub fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        self.map().get(&id).cloned()
    }

    /// Sessions reloaded in the middle of their encode.
    pub async fn encoding(&self) -> Vec<Arc<Session>> {
        let all: Vec<Arc<Session>> = self.map().values().cloned().collect();
        let mut encoding = Vec::new();
        for session in all {
            if matches!(session.phase().await, Phase::Joining | Phase::Encoding) {
                encoding.push(session);
            }
        }
        encoding
    }

    /// Creates the session, or returns the one with the same ids and size. A new one is refused
    /// while the spool's disk is below its free-space reserve.
    pub async fn create(&self, request: &CreateProcess) -> Result<Created, SessionError> {
        let _creating = self.creating.lock().await;
        if let Some(existing) = self.get(request.session_id) {
            let same = existing.target == request.target
                && existing.total_bytes().await == request.total_bytes;
            return if same {
                Ok(Created::Existing(existing))
            } else {
                Err(SessionError::Conflict(request.session_id))
            };
        }
        // A replica whose spool is down to its reserve takes no new upload; the caller tries
        // another one.
        self.space.admit(0)?;
        let record = SessionRecord::new(
            request.session_id,
            request.target,
            request.total_bytes,
            false,
            Vec::new(),
            0,
        );
        let dir = self.root.join(request.session_id.to_string());
        // Left over by a session deleted while its encode was still writing.
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir_all(&dir)
            .await
            .context("failed to create the session directory")?;
        record.write(&dir).await?;
        let session = self.session(&record, dir, Machine::new(self.start(&record)));
        self.insert(session.clone());
        Ok(Created::New(session))
    }

    /// Sessions nobody wrote to for `ttl` that are still receiving (an upload abandoned, or
    /// moved to another replica while this one was away) or done (kept only so that a
    /// repeated `finish` is answered): nothing will ask for them any more. Sessions being
    /// joined or encoded are never idle.
    pub async fn idle(&self, ttl: Duration) -> Vec<Arc<Session>> {
        let all: Vec<Arc<Session>> = self.map().values().cloned().collect();
        let mut idle = Vec::new();
        for session in all {
            if session.untouched_for() >= ttl
                && matches!(session.phase().await, Phase::Receiving | Phase::Done)
            {
                idle.push(session);
            }
        }
        idle
    }

    /// Forgets the session and stops its encode; the caller removes the spool.
    pub fn remove(&self, id: SessionId) -> Option<Arc<Session>> {
        let session = self.map().remove(&id)?;
        session.mark_deleted();
        session.cancel.cancel();
        Some(session)
    }
}

/// Creates the spool directory `dir` when missing and checks that it takes files.
pub async fn check_writable(dir: &Path) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("failed to create spool directory {}", dir.display()))?;
    let probe = dir.join(".writable");
    tokio::fs::write(&probe, b"ok")
        .await
        .with_context(|| format!("spool directory {} is not writable", dir.display()))?;
    let _ = tokio::fs::remove_file(&probe).await;
    Ok(())
}
