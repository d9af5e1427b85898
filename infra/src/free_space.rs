//! A reserve of free disk space that a writer keeps: before it takes bytes, it asks whether the
//! disk holding its directory still has `min_free_bytes` free once they are written, and
//! refuses them otherwise. A full disk fails every writer on it at once (a half-written file,
//! a record that cannot be saved, an encode that cannot write its output); a reserve refuses
//! new bytes while those already taken, and the work they are for, still fit.
//!
//! The free space is what `statvfs` says an unprivileged process may still use. A reading is
//! reused for [`READING_MAX_AGE`], less the bytes admitted since, so that the write path does
//! not make a system call per chunk. A refusal is never made on a reused reading: the disk is
//! read again first, so space freed (or a reserve lowered) counts at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a reading of the free space is reused for admitting bytes.
pub const READING_MAX_AGE: Duration = Duration::from_millis(500);

/// Bytes refused because the disk would keep less than the reserve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{available} bytes are free on the disk; {incoming} more would leave less than the \
     reserve of {min_free} bytes"
)]
pub struct LowSpace {
    pub available: u64,
    pub incoming: u64,
    pub min_free: u64,
}

/// The reserve of one directory's disk, shared by every writer to it (cheap to clone).
#[derive(Clone, Debug)]
pub struct FreeSpaceReserve {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    min_free: AtomicU64,
    reading: Mutex<Option<Reading>>,
}

/// What the disk had free when read, and what was admitted since.
#[derive(Clone, Copy, Debug)]
struct Reading {
    taken: Instant,
    available: u64,
    admitted: u64,
}

impl Reading {
    fn new(available: u64) -> Self {
        Self {
            taken: Instant::now(),
            available,
            admitted: 0,
        }
    }

    /// Whether `incoming` more bytes leave at least `min_free` of what was free, once the bytes
    /// admitted since the reading are written too.
    fn fits(&self, incoming: u64, min_free: u64) -> bool {
        self.available
            .saturating_sub(self.admitted)
            .checked_sub(incoming)
            .is_some_and(|left| left >= min_free)
    }

    fn admit(&mut self, incoming: u64) {
        self.admitted = self.admitted.saturating_add(incoming);
    }
}

impl FreeSpaceReserve {
    /// The reserve of the disk holding `dir`; `min_free_bytes` 0 turns the check off.
    pub fn new(dir: impl Into<PathBuf>, min_free_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.into(),
                min_free: AtomicU64::new(min_free_bytes),
                reading: Mutex::new(None),
            }),
        }
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.inner.min_free.load(Ordering::Relaxed)
    }

    /// Changes the reserve of a running service; it counts from the next bytes admitted.
    pub fn set_min_free_bytes(&self, min_free_bytes: u64) {
        self.inner.min_free.store(min_free_bytes, Ordering::Relaxed);
    }

    /// Admits `incoming` bytes about to be written, or refuses them when the disk would keep
    /// less than the reserve. A disk whose free space cannot be read admits them: the write
    /// itself then tells what is wrong.
    pub fn admit(&self, incoming: u64) -> Result<(), LowSpace> {
        let min_free = self.min_free_bytes();
        if min_free == 0 {
            return Ok(());
        }
        let mut reading = self
            .inner
            .reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(recent) = reading
            .as_mut()
            .filter(|recent| recent.taken.elapsed() < READING_MAX_AGE)
        {
            if recent.fits(incoming, min_free) {
                recent.admit(incoming);
                return Ok(());
            }
        }
        let available = match available_bytes(&self.inner.dir) {
            Ok(available) => available,
            Err(error) => {
                tracing::warn!(dir = %self.inner.dir.display(), error = %error, "free disk space not readable, bytes admitted");
                *reading = None;
                return Ok(());
            }
        };
        let fresh = reading.insert(Reading::new(available));
        if fresh.fits(incoming, min_free) {
            fresh.admit(incoming);
            Ok(())
        } else {
            Err(LowSpace {
                available,
                incoming,
                min_free,
            })
        }
    }
}

/// Bytes an unprivileged process may still write on the disk holding `dir`.
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_counts_the_bytes_admitted_since() {
        let mut reading = Reading::new(1_000);
        assert!(reading.fits(600, 400));
        assert!(!reading.fits(601, 400));
        reading.admit(500);
        assert!(reading.fits(100, 400));
        assert!(!reading.fits(101, 400));
        reading.admit(600);
        assert!(!reading.fits(0, 1));
        assert!(reading.fits(0, 0));
    }

    #[test]
    fn no_reserve_reads_nothing_and_admits_everything() {
        let reserve = FreeSpaceReserve::new("/no/such/directory", 0);
        assert_eq!(reserve.admit(u64::MAX), Ok(()));
    }

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_a_lowered_one_admits_at_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let reserve = FreeSpaceReserve::new(dir.path(), u64::MAX);
        let refused = reserve
            .admit(1)
            .expect_err("nothing fits above the whole disk");
        assert!(refused.available > 0, "{refused}");
        assert_eq!((refused.incoming, refused.min_free), (1, u64::MAX));
        assert!(refused.to_string().contains("reserve"), "{refused}");
        reserve.set_min_free_bytes(1);
        assert_eq!(reserve.admit(1), Ok(()));
    }

    #[test]
    fn bytes_beyond_what_is_free_are_refused_even_on_a_recent_reading() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let reserve = FreeSpaceReserve::new(dir.path(), 1);
        assert_eq!(reserve.admit(0), Ok(()));
        let refused = reserve.admit(u64::MAX).expect_err("more than the disk");
        assert_eq!(refused.incoming, u64::MAX);
    }
}
