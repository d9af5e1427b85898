//! The bytes of an FTP upload, admitted against the root's free-space reserve as they arrive.
//!
//! Once bytes are refused, the rest of the transfer is read and dropped before the refusal is
//! told: the client finishes sending, then reads the `452` on its control connection, instead
//! of failing on a data connection cut under it with no reason given.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use vod_infra::free_space::LowSpace;

/// Bytes admitted at once, ahead of those read: the reserve is asked once per step, not once
/// per read.
const ADMIT_STEP: u64 = 1024 * 1024;

/// Where the refusal of an upload is kept for the back end, which gave the reader away.
#[derive(Clone, Debug, Default)]
pub struct Refusal(Arc<Mutex<Option<LowSpace>>>);

impl Refusal {
    fn set(&self, low: LowSpace) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(low);
    }

    pub fn take(&self) -> Option<LowSpace> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// Reads `inner`, asking `admit` for the bytes before it passes them on.
pub struct Admitted<R, A> {
    inner: R,
    admit: A,
    /// Bytes admitted and not read yet.
    credit: u64,
    refusal: Refusal,
    refused: bool,
}

impl<R, A> Admitted<R, A>
where
    R: AsyncRead + Unpin,
    A: Fn(u64) -> Result<(), LowSpace> + Unpin,
{
    pub fn new(inner: R, admit: A, refusal: Refusal) -> Self {
        Self {
            inner,
            admit,
            credit: 0,
            refusal,
            refused: false,
        }
    }

    /// Refuses everything from the start (the reserve was reached before the first byte).
    pub fn refuse(&mut self, low: LowSpace) {
        self.refusal.set(low);
        self.refused = true;
    }

    fn admit(&mut self, read: u64) -> Result<(), LowSpace> {
        if read > self.credit {
            let step = (read - self.credit).max(ADMIT_STEP);
            (self.admit)(step)?;
            self.credit += step;
        }
        self.credit -= read;
        Ok(())
    }

    /// Reads the rest of the transfer and drops it; at its end, the refusal is the error.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 8192];
        loop {
            let mut dropped = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut dropped))?;
            if dropped.filled().is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "the upload was refused: holder's disk is down to its free-space reserve",
                )));
            }
        }
    }
}

impl<R, A> AsyncRead for Admitted<R, A>
where
    R: AsyncRead + Unpin,
    A: Fn(u64) -> Result<(), LowSpace> + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refused {
            return this.poll_drain(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = (buf.filled().len() - before) as u64;
        match this.admit(read) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(low) => {
                buf.set_filled(before);
                this.refuse(low);
                this.poll_drain(cx)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::io::AsyncReadExt;

    use super::*;

    fn low(incoming: u64) -> LowSpace {
        LowSpace {
            available: 10,
            incoming,
            min_free: 5,
        }
    }

    #[tokio::test]
    async fn bytes_pass_while_the_reserve_admits_them() {
        let admitted = Cell::new(0u64);
        let source = vec![7u8; 3 * 1024 * 1024 + 5];
        let refusal = Refusal::default();
        let mut reader = Admitted::new(
            &source[..],
            |bytes| {
                admitted.set(admitted.get() + bytes);
                Ok(())
            },
            refusal.clone(),
        );
        let mut read = Vec::new();
        reader
            .read_to_end(&mut read)
            .await
            .expect("every byte read");
        assert_eq!(read, source);
        assert!(admitted.get() >= source.len() as u64);
        assert!(admitted.get() < source.len() as u64 + 2 * ADMIT_STEP);
        assert!(refusal.take().is_none());
    }

    #[tokio::test]
    async fn a_refusal_drains_the_rest_and_passes_on_nothing_more() {
        let source = vec![1u8; 16 * 1024 * 1024];
        let asked = Cell::new(0u32);
        let admitted = Cell::new(0u64);
        let refusal = Refusal::default();
        let mut reader = Admitted::new(
            &source[..],
            |bytes| {
                asked.set(asked.get() + 1);
                if asked.get() > 2 {
                    return Err(low(bytes));
                }
                admitted.set(admitted.get() + bytes);
                Ok(())
            },
            refusal.clone(),
        );
        let mut passed = Vec::new();
        let error = reader
            .read_to_end(&mut passed)
            .await
            .expect_err("the refusal");
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert!(!passed.is_empty());
        assert!(passed.len() as u64 <= admitted.get(), "{}", passed.len());
        assert!((passed.len() as u64) < source.len() as u64);
        assert!(refusal.take().is_some());
        // The whole transfer was read, so the client could finish sending.
        let mut rest = Vec::new();
        let left = reader
            .inner
            .read_to_end(&mut rest)
            .await
            .expect("a slice reads");
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn an_upload_refused_from_the_start_is_read_to_its_end() {
        let source = vec![1u8; 100_000];
        let refusal = Refusal::default();
        let mut reader = Admitted::new(&source[..], |_| Ok(()), refusal.clone());
        reader.refuse(low(0));
        let mut passed = Vec::new();
        assert!(reader.read_to_end(&mut passed).await.is_err());
        assert!(passed.is_empty());
        assert_eq!(reader.inner.len(), 0);
        assert_eq!(refusal.take(), Some(low(0)));
    }
}
