//! The uploads this machine started and did not finish, by the fingerprint of their file, so
//! that running `vod upload` again resumes instead of starting over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfinished {
    pub location: String,
    pub video_id: Option<String>,
    pub file: PathBuf,
    pub size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    uploads: BTreeMap<String, Unfinished>,
}

/// The state file: `--state-file`, else `$VOD_STATE_FILE`, else
/// `$XDG_STATE_HOME/vod/uploads.json`, else `~/.local/state/vod/uploads.json`.
pub fn default_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("vod/uploads.json");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/vod/uploads.json"),
        None => PathBuf::from(".vod-uploads.json"),
    }
}

/// Identifies one version of one file for one server: its absolute path, size and
/// modification time, like tus clients do. A changed file is a new upload.
pub fn fingerprint(file: &Path, server: &str) -> anyhow::Result<String> {
    let absolute =
        std::fs::canonicalize(file).with_context(|| format!("cannot read {}", file.display()))?;
    let metadata = std::fs::metadata(&absolute)?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    let mut hasher = Sha256::new();
    hasher.update(absolute.to_string_lossy().as_bytes());
    hasher.update([0]);
    hasher.update(metadata.len().to_be_bytes());
    hasher.update(modified.to_be_bytes());
    hasher.update(server.trim_end_matches('/').as_bytes());
    Ok(format!("{:x}", hasher.finalize()))
}

impl State {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("the state file {} is not valid", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes to a temporary file and renames it, so a killed process leaves the old state
    /// or the new one, never half of one.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn get(&self, fingerprint: &str) -> Option<&Unfinished> {
        self.uploads.get(fingerprint)
    }

    pub fn remember(&mut self, fingerprint: String, upload: Unfinished) {
        self.uploads.insert(fingerprint, upload);
    }

    pub fn forget(&mut self, fingerprint: &str) {
        self.uploads.remove(fingerprint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_fingerprints_follow_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("clip.mp4");
        std::fs::write(&file, b"first").expect("write");
        let first = fingerprint(&file, "http://a").expect("fingerprint");
        assert_eq!(first, fingerprint(&file, "http://a/").expect("fingerprint"));
        assert_ne!(first, fingerprint(&file, "http://b").expect("fingerprint"));

        let path = dir.path().join("state/uploads.json");
        let mut state = State::load(&path).expect("no state yet");
        let upload = Unfinished {
            location: "http://a/v1/uploads/1".to_owned(),
            video_id: None,
            file: file.clone(),
            size: 5,
        };
        state.remember(first.clone(), upload.clone());
        state.save(&path).expect("save");
        let loaded = State::load(&path).expect("load");
        assert_eq!(loaded.get(&first), Some(&upload));

        std::fs::write(&file, b"second version").expect("write");
        assert_ne!(first, fingerprint(&file, "http://a").expect("fingerprint"));
    }
}
