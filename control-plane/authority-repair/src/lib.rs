//! Repairs the malformed `:authority` that etcd 3.4 clients send, so that an h2 (hyper,
//! tonic) server serves their requests instead of resetting them.
//!
//! etcd 3.4's clientv3 dials a single endpoint — for `etcdctl endpoint status`, `endpoint
//! hashkv`, `defrag`, `move-leader`, `snapshot save` — through grpc-go's passthrough resolver
//! with the endpoint as written, so `--endpoints=http://127.0.0.1:2379` puts
//! `http://127.0.0.1:2379` in the `:authority` pseudo-header. That is not an authority (RFC
//! 3986), and h2 resets such a stream with PROTOCOL_ERROR before the server sees it (etcd
//! itself, on grpc-go, does not look); h2's maintainers decline to relax the check
//! (hyperium/h2#525), and etcd fixed its client only in 3.5 (etcd-io/etcd#13192). Debian ships
//! the 3.4 etcdctl.
//!
//! [`AuthorityRepair`] wraps an accepted connection and rewrites, in the bytes the server
//! reads, the header block that carries such a value: `http://127.0.0.1:2379` becomes
//! `127.0.0.1:2379`. Everything else passes byte for byte; see [`frames`] for the framing and the
//! `block` module for why the HPACK state of both ends stays in step. A connection that does not open
//! with the HTTP/2 preface is not touched at all.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod block;
pub mod frames;

pub use block::repair as repair_header_block;

/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;

pub struct AuthorityRepair<I> {
    inner: I,
    frames: frames::FrameRepair,
    scratch: Box<[u8]>,
    /// Bytes read and not yet taken by the frame pass (an incomplete frame).
    input: Vec<u8>,
    /// Bytes for the server, from `output_from` on.
    output: Vec<u8>,
    output_from: usize,
    eof: bool,
}

impl<I> AuthorityRepair<I> {
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            frames: frames::FrameRepair::default(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            input: Vec::new(),
            output: Vec::new(),
            output_from: 0,
            eof: false,
        }
    }

    /// Header blocks repaired on this connection so far.
    pub fn repaired(&self) -> u64 {
        self.frames.repaired()
    }

    pub fn get_ref(&self) -> &I {
        &self.inner
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for AuthorityRepair<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.output_from < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.output_from);
                buf.put_slice(&this.output[this.output_from..this.output_from + n]);
                this.output_from += n;
                if this.output_from == this.output.len() {
                    this.output.clear();
                    this.output_from = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.frames.is_passthrough() && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let fresh = read.filled();
            if fresh.is_empty() {
                this.eof = true;
                this.frames.end(&this.input, &mut this.output);
                this.input.clear();
                continue;
            }
            if this.input.is_empty() {
                let taken = this.frames.process(fresh, &mut this.output);
                this.input.extend_from_slice(&fresh[taken..]);
            } else {
                this.input.extend_from_slice(fresh);
                let taken = this.frames.process(&this.input, &mut this.output);
                this.input.drain(..taken);
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Lets tonic's `serve_with_incoming` take wrapped connections, with the socket's addresses
/// as the connection info.
#[cfg(feature = "tonic")]
impl<I: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityRepair<I>
{
    type ConnectInfo = I::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;
