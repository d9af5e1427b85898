//! Removes a video's directory from holder over FTP: every presentation of the video, and
//! whatever an interrupted upload left there, hidden temporaries included.
//!
//! Removal is idempotent. A path that is already gone counts as removed, so a removal retried
//! after a lost answer, or two removals of one video at once, both succeed. holder answers 550
//! for a missing path and for a refusal alike, so a 550 counts as "already gone" only once
//! holder confirms (`MLST`) that the path no longer exists.

use vod_contracts::layout;
use vod_contracts::VideoId;

use crate::config::HolderSettings;
use crate::holder_ftp::{FtpCallError, HolderFtp};

/// Listings of one directory refused while it still exists before the removal gives up. Only a
/// concurrent removal makes holder refuse a listing, and each refusal means it took an entry
/// away, so a few attempts are enough.
const LIST_ATTEMPTS: u32 = 10;

/// What a removal took away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub files: usize,
    pub directories: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpublishError {
    /// Connecting, logging in or a call timed out or broke: holder may be down.
    #[error("holder could not be reached: {0}")]
    Unreachable(String),
    /// holder answered but did not do what was asked.
    #[error("holder did not remove {path}: {reason}")]
    NotRemoved { path: String, reason: String },
}

/// Removes `videos/{video_id}` and everything under it from holder.
pub async fn remove_video(
    settings: &HolderSettings,
    video_id: VideoId,
) -> Result<Removed, UnpublishError> {
    let mut holder = HolderFtp::connect(settings)
        .await
        .map_err(|err| UnpublishError::Unreachable(err.to_string()))?;
    let result = Tree { ftp: &mut holder }
        .remove(&layout::video_dir(video_id))
        .await;
    holder.quit().await;
    result
}

struct Tree<'a> {
    ftp: &'a mut HolderFtp,
}

impl Tree<'_> {
    /// Deletes the files of the tree at `root` while walking it, then its directories, deepest
    /// first.
    async fn remove(&mut self, root: &str) -> Result<Removed, UnpublishError> {
        let mut removed = Removed::default();
        match self.kind_of(root).await? {
            None => return Ok(removed),
            Some(EntryKind::File) => {
                self.remove_file(root, &mut removed).await?;
                return Ok(removed);
            }
            Some(EntryKind::Directory) | Some(EntryKind::Listed) => {}
        }
        let mut pending = vec![root.to_owned()];
        // Parents before their children: removed in reverse.
        let mut directories = Vec::new();
        while let Some(dir) = pending.pop() {
            let Some(lines) = self.list(&dir).await? else {
                continue;
            };
            for line in &lines {
                let Some((kind, name)) = parse_mlsd_line(line) else {
                    return Err(UnpublishError::NotRemoved {
                        path: dir,
                        reason: format!("unreadable listing line {line:?}"),
                    });
                };
                let path = format!("{dir}/{name}");
                match kind {
                    EntryKind::Directory => pending.push(path),
                    EntryKind::File => self.remove_file(&path, &mut removed).await?,
                    EntryKind::Listed => {}
                }
            }
            directories.push(dir);
        }
        for dir in directories.iter().rev() {
            match self.ftp.rmdir(dir).await {
                Ok(()) => removed.directories += 1,
                Err(err) if err.is_file_unavailable() && self.kind_of(dir).await?.is_none() => {}
                Err(err) => return Err(classify(dir, err)),
            }
        }
        Ok(removed)
    }

    /// The listing of `dir`, or `None` when it is gone.
    ///
    /// holder lists a directory by reading each entry's metadata, and fails the whole listing
    /// with 550 when an entry vanishes meanwhile: another removal of the same video is under
    /// way. Listing again sees fewer entries each time.
    async fn list(&mut self, dir: &str) -> Result<Option<Vec<String>>, UnpublishError> {
        let mut attempt = 1;
        loop {
            match self.ftp.mlsd(dir).await {
                Ok(lines) => return Ok(Some(lines)),
                Err(err) if err.is_file_unavailable() => {
                    if self.kind_of(dir).await?.is_none() {
                        return Ok(None);
                    }
                    if attempt >= LIST_ATTEMPTS {
                        return Err(classify(dir, err));
                    }
                    attempt += 1;
                }
                Err(err) => return Err(classify(dir, err)),
            }
        }
    }

    async fn remove_file(
        &mut self,
        path: &str,
        removed: &mut Removed,
    ) -> Result<(), UnpublishError> {
        match self.ftp.rm(path).await {
            Ok(()) => removed.files += 1,
            Err(err) if err.is_file_unavailable() && self.kind_of(path).await?.is_none() => {}
            Err(err) => return Err(classify(path, err)),
        }
        Ok(())
    }

    /// What is at `path`, or `None` when nothing is.
    async fn kind_of(&mut self, path: &str) -> Result<Option<EntryKind>, UnpublishError> {
        match self.ftp.mlst(path).await {
            // ` facts path`: the path is the one asked for, only the facts matter.
            Ok(line) => Ok(Some(kind_from_facts(
                line.trim_start()
                    .split_once(' ')
                    .map_or("", |(facts, _)| facts),
            ))),
            Err(err) if err.is_file_unavailable() => Ok(None),
            Err(err) => Err(classify(path, err)),
        }
    }
}

fn classify(path: &str, err: FtpCallError) -> UnpublishError {
    match err {
        FtpCallError::Answered { .. } => UnpublishError::NotRemoved {
            path: path.to_owned(),
            reason: err.to_string(),
        },
        // A CA file that cannot be read is fixed by an operator: until then holder cannot be
        // reached, and the removal is asked for again.
        FtpCallError::TimedOut(_) | FtpCallError::Failed(_) | FtpCallError::TlsSetup { .. } => {
            UnpublishError::Unreachable(err.to_string())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKind {
    Directory,
    /// Anything removed with `DELE`: a file, a symbolic link (never followed), a device.
    File,
    /// The listed directory itself or its parent (`type=cdir`, `type=pdir`).
    Listed,
}

/// An `MLSD` (or `MLST`) line, `fact=value;fact=value; name` (RFC 3659): the entry's kind and
/// name. `None` for a line without facts or with a name that is no single path component.
fn parse_mlsd_line(line: &str) -> Option<(EntryKind, &str)> {
    let line = line.trim_start().trim_end_matches(['\r', '\n']);
    let (facts, name) = line.split_once(' ')?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return None;
    }
    Some((kind_from_facts(facts), name))
}

/// The kind an entry's `type` fact names; an entry without one is removed as a file.
fn kind_from_facts(facts: &str) -> EntryKind {
    let kind = facts
        .split(';')
        .filter_map(|fact| fact.split_once('='))
        .find(|(key, _)| key.eq_ignore_ascii_case("type"))
        .map(|(_, value)| value.to_ascii_lowercase());
    match kind.as_deref() {
        Some("dir") => EntryKind::Directory,
        Some("cdir") | Some("pdir") => EntryKind::Listed,
        _ => EntryKind::File,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlsd_lines_give_kind_and_name() {
        assert_eq!(
            parse_mlsd_line("type=dir;size=4096;modify=20240101000000; 0190c1e3-flow"),
            Some((EntryKind::Directory, "0190c1e3-flow"))
        );
        assert_eq!(
            parse_mlsd_line("type=file;size=12; .chunk-stream0-00001.m4s.part\r\n"),
            Some((EntryKind::File, ".chunk-stream0-00001.m4s.part"))
        );
        assert_eq!(
            parse_mlsd_line("Type=OS.unix=symlink; link"),
            Some((EntryKind::File, "link"))
        );
        assert_eq!(
            parse_mlsd_line("type=cdir; videos"),
            Some((EntryKind::Listed, "videos"))
        );
        assert_eq!(
            parse_mlsd_line("type=file; name with spaces"),
            Some((EntryKind::File, "name with spaces"))
        );
    }

    #[test]
    fn kind_comes_from_the_type_fact() {
        assert_eq!(kind_from_facts("size=0;TYPE=Dir;"), EntryKind::Directory);
        assert_eq!(kind_from_facts("type=pdir;"), EntryKind::Listed);
        assert_eq!(kind_from_facts("size=3;"), EntryKind::File);
        // A listing line naming a path rather than a name is refused.
        assert_eq!(parse_mlsd_line(" type=dir;size=0; videos/v"), None);
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        for line in [
            "type=file; ..",
            "type=dir; .",
            "type=file; a/b",
            "type=file;",
            "nofacts",
        ] {
            assert_eq!(parse_mlsd_line(line), None, "{line:?}");
        }
    }
}
