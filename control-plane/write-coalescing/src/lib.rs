//! Write coalescing for HTTP/2 server connections: the frames that many streams queue during
//! one turn of the scheduler leave in one write.
//!
//! hyper (and so tonic) polls each HTTP/2 response body in a task of its own. When a watch event fans out to
//! a thousand watchers sharing sixteen connections, every stream's task queues its frame and
//! wakes its connection's task, and tokio runs a task it just woke next (its LIFO slot): so the
//! connection writes and flushes after every stream, one `writev` per event per watcher, the
//! same count of system calls as a thousand HTTP/1.1 connections would cost. Measured on 2
//! cores, 1,000 watchers on 16 connections at 100 events/s: 197,000 `writev` for 200,000
//! deliveries, and the kernel's TCP path at 45% of the server's CPU. With this wrapper: 1,600
//! writes, half the CPU, and delivery p99 from 33 ms to 8 ms. etcd-style gRPC watches over
//! tonic showed the same one write per delivery.
//!
//! This wrapper holds written bytes and answers a flush of them with "not yet", having woken its
//! own task: tokio puts a task that woke itself at the back of the run queue, so the connection
//! writes once the streams woken with it have queued theirs. It yields again while each turn
//! brought more bytes, and writes after the first turn that brought none (or after
//! [`MAX_YIELDS`] turns): one turn was not enough when a fan-out reaches a few hundred streams.
//! Tokio's local run queue holds 256 tasks and sends the rest to its global queue, which a worker
//! reads only now and then, and the other worker steals half a queue at a time, so the streams of
//! one connection run in several turns of its task. With one turn, a member serving a third of
//! 1,000 watchers on 16 connections made about 9 writes per connection per event (145 per
//! event). A lone response costs the same as before: its turn brings nothing new, so the second
//! flush writes it.
//!
//! Only connections that open with the HTTP/2 preface coalesce: an HTTP/1.1 connection carries
//! one response at a time, so there is nothing to gather and its bytes pass straight through
//! (upgraded exec and port-forward streams included).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The start of the HTTP/2 client connection preface (RFC 9113 §3.4), enough to tell it from
/// any HTTP/1.1 method.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Bytes held before a write waits for the socket: bounds the memory one connection's
/// coalescing may take, and keeps a stalled reader's backpressure reaching the streams.
const HELD_LIMIT: usize = 256 * 1024;

/// Turns of the scheduler one flush may wait for more bytes: bounds the delay a connection whose
/// streams never go quiet adds to its first frame.
pub const MAX_YIELDS: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Too few bytes read to tell the protocol.
    Undecided,
    /// HTTP/1.1 (or anything not HTTP/2): writes go straight to the socket.
    Direct,
    /// HTTP/2: writes are held until the flush after a turn of the scheduler.
    Coalescing,
}

pub struct WriteCoalescing<I> {
    inner: I,
    mode: Mode,
    /// The first bytes read, compared with the HTTP/2 preface until the mode is decided.
    opening: Vec<u8>,
    /// Bytes accepted from the writer and not yet written to `inner`, from `held_from` on.
    held: Vec<u8>,
    held_from: usize,
    /// Turns the flush of the bytes held has yielded so far.
    yields: u8,
    /// Bytes were accepted since the last yield: the streams may not be done.
    fresh: bool,
}

impl<I> WriteCoalescing<I> {
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            mode: Mode::Undecided,
            opening: Vec::new(),
            held: Vec::new(),
            held_from: 0,
            yields: 0,
            fresh: false,
        }
    }

    /// Decides the mode from the first bytes read.
    fn observe_read(&mut self, read: &[u8]) {
        if self.mode != Mode::Undecided || read.is_empty() {
            return;
        }
        let wanted = HTTP2_PREFACE.len() - self.opening.len();
        self.opening
            .extend_from_slice(&read[..read.len().min(wanted)]);
        if !HTTP2_PREFACE.starts_with(&self.opening) {
            self.mode = Mode::Direct;
        } else if self.opening.len() == HTTP2_PREFACE.len() {
            self.mode = Mode::Coalescing;
        } else {
            return;
        }
        self.opening = Vec::new();
    }

    fn held_len(&self) -> usize {
        self.held.len() - self.held_from
    }
}

impl<I: AsyncWrite + Unpin> WriteCoalescing<I> {
    /// Writes held bytes to `inner` until none are left or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.held_from < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.held_from..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held_from += n;
        }
        self.held.clear();
        self.held_from = 0;
        Poll::Ready(Ok(()))
    }

    /// Room for more held bytes, waiting on the socket past the limit.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held_len() >= HELD_LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteCoalescing<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.observe_read(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteCoalescing<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.mode != Mode::Coalescing {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        ready!(self.poll_room(cx))?;
        self.held.extend_from_slice(buf);
        self.fresh = true;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.mode != Mode::Coalescing {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        ready!(self.poll_room(cx))?;
        let mut total = 0;
        for slice in bufs {
            self.held.extend_from_slice(slice);
            total += slice.len();
        }
        self.fresh |= total > 0;
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        // Held writes take every slice; direct ones go to a socket that takes them too. The
        // caller asks once, before the protocol is known, so the answer must suit both.
        self.mode != Mode::Direct || self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held_len() > 0 {
            if self.fresh && self.yields < MAX_YIELDS && self.held_len() < HELD_LIMIT {
                // Back of the run queue: the streams woken with this connection queue their
                // frames first, and a flush after a turn that brought nothing writes them all.
                self.yields += 1;
                self.fresh = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(self.poll_drain(cx))?;
        }
        self.yields = 0;
        self.fresh = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The accepted connection's own information (its addresses), as tonic's server hands it to
/// requests.
#[cfg(feature = "tonic")]
impl<I: tonic::transport::server::Connected> tonic::transport::server::Connected
    for WriteCoalescing<I>
{
    type ConnectInfo = I::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
