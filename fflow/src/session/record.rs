//! `session.json`: what a restarted replica needs to take a session up again.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use vod_contracts::fflow::{replica_id_of_address, EncodeTarget, PartSource};
use vod_contracts::{FlowId, SessionId, VideoId};

const RECORD_FILE: &str = "session.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: SessionId,
    #[serde(default)]
    pub target: Option<EncodeTarget>,
    /// Written by earlier versions, before partial uploads had no target.
    #[serde(default, skip_serializing)]
    video_id: Option<VideoId>,
    #[serde(default, skip_serializing)]
    flow_id: Option<FlowId>,
    #[serde(default)]
    pub total_bytes: Option<u64>,
    /// The encode was started; a restarted replica starts it again.
    #[serde(default)]
    pub finished: bool,
    /// Parts being joined into the source; a restarted replica joins them again.
    #[serde(default, deserialize_with = "parts_of_any_version")]
    pub parts: Vec<PartSource>,
    /// The highest writer epoch a chunk came with: a restarted replica still refuses older
    /// writers.
    #[serde(default)]
    pub epoch: u64,
}

/// A part as any version wrote it.
#[derive(Deserialize)]
struct StoredPart {
    #[serde(default)]
    replica_id: Option<String>,
    /// Written by earlier versions, which named the replica by its address: only the id in it
    /// is kept, the address called is the configured one.
    #[serde(default)]
    address: Option<String>,
    session_id: SessionId,
    len: u64,
}

fn parts_of_any_version<'de, D>(deserializer: D) -> Result<Vec<PartSource>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let stored = Vec::<StoredPart>::deserialize(deserializer)?;
    stored
        .into_iter()
        .map(|part| {
            let replica_id = part
                .replica_id
                .or_else(|| {
                    part.address
                        .as_deref()
                        .and_then(replica_id_of_address)
                        .map(str::to_owned)
                })
                .ok_or_else(|| serde::de::Error::custom("a part names no replica"))?;
            Ok(PartSource {
                replica_id,
                session_id: part.session_id,
                len: part.len,
            })
        })
        .collect()
}

impl SessionRecord {
    pub fn new(
        session_id: SessionId,
        target: Option<EncodeTarget>,
        total_bytes: Option<u64>,
        finished: bool,
        parts: Vec<PartSource>,
        epoch: u64,
    ) -> Self {
        Self {
            session_id,
            target,
            video_id: None,
            flow_id: None,
            total_bytes,
            finished,
            parts,
            epoch,
        }
    }

    /// The target, also from a record of an earlier version.
    pub fn target(&self) -> Option<EncodeTarget> {
        self.target.or(match (self.video_id, self.flow_id) {
            (Some(video_id), Some(flow_id)) => Some(EncodeTarget {
                video_id,
                flow_id,
                mp4_support: Default::default(),
            }),
            _ => None,
        })
    }

    pub async fn read(dir: &Path) -> anyhow::Result<Self> {
        let text = tokio::fs::read(dir.join(RECORD_FILE))
            .await
            .context("failed to read session.json")?;
        serde_json::from_slice(&text).context("failed to parse session.json")
    }

    /// Replaces the record in `dir` at once, on disk before it returns: a crash of the process
    /// or of the machine leaves the old one or the new one.
    pub async fn write(&self, dir: &Path) -> anyhow::Result<()> {
        self.replace(dir, Durability::Synced).await
    }

    /// Replaces the record in `dir` at once for a restart of the process, not of the machine.
    /// What only needs to last as long as the spooled bytes themselves, which are not synced
    /// chunk by chunk either, is written so: a writer's epoch, which rises with every request.
    pub async fn write_for_restart(&self, dir: &Path) -> anyhow::Result<()> {
        self.replace(dir, Durability::UntilRestart).await
    }

    async fn replace(&self, dir: &Path, durability: Durability) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("failed to encode session.json")?;
        let temporary = dir.join(format!(".{RECORD_FILE}.tmp"));
        let mut file = tokio::fs::File::create(&temporary)
            .await
            .context("failed to create session.json")?;
        file.write_all(&json)
            .await
            .context("failed to write session.json")?;
        if durability == Durability::Synced {
            file.sync_all()
                .await
                .context("failed to write session.json")?;
        }
        drop(file);
        tokio::fs::rename(&temporary, dir.join(RECORD_FILE))
            .await
            .context("failed to write session.json")?;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    Synced,
    UntilRestart,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_survives_the_disk_and_an_older_one_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let target = EncodeTarget {
            video_id: VideoId::new(),
            flow_id: FlowId::new(),
            mp4_support: Default::default(),
        };
        let record = SessionRecord::new(SessionId::new(), Some(target), Some(9), true, vec![], 4);
        record.write(dir.path()).await.unwrap();
        assert_eq!(SessionRecord::read(dir.path()).await.unwrap(), record);

        let older = serde_json::json!({
            "session_id": record.session_id,
            "video_id": target.video_id,
            "flow_id": target.flow_id,
            "total_bytes": 9,
        });
        let older: SessionRecord = serde_json::from_value(older).unwrap();
        assert_eq!(older.target(), Some(target));
        assert_eq!((older.epoch, older.finished), (0, false));
    }

    #[test]
    fn a_part_recorded_with_its_replica_address_keeps_only_the_replica_id() {
        let part = SessionId::new();
        let older = serde_json::json!({
            "session_id": SessionId::new(),
            "finished": true,
            "parts": [{ "address": "http://fflow:4050/r2/", "session_id": part, "len": 7 }],
        });
        let older: SessionRecord = serde_json::from_value(older).unwrap();
        assert_eq!(
            older.parts,
            vec![PartSource {
                replica_id: "r2".to_owned(),
                session_id: part,
                len: 7,
            }]
        );
        let current = SessionRecord::new(SessionId::new(), None, Some(7), true, older.parts, 0);
        let json = serde_json::to_value(&current).unwrap();
        assert_eq!(
            serde_json::from_value::<SessionRecord>(json).unwrap(),
            current
        );
    }
}
