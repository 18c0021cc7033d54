//! A duplex end that counts the writes reaching it: what the tests compare coalesced and
//! plain connections by.

#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use write_coalescing::WriteCoalescing;

/// A duplex end that counts the writes reaching it.
pub struct Counted {
    pub inner: DuplexStream,
    pub writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub fn pair(capacity: usize) -> (WriteCoalescing<Counted>, DuplexStream, Arc<AtomicUsize>) {
    let (ours, theirs) = tokio::io::duplex(capacity);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = Counted {
        inner: ours,
        writes: writes.clone(),
    };
    (WriteCoalescing::new(counted), theirs, writes)
}
