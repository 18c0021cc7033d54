//! The wrapper's behaviour through its public interface: what passes straight through, what
//! waits for a turn, backpressure, shutdown.

mod counted;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;

use counted::{pair, Counted};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use write_coalescing::WriteCoalescing;

/// The start of the HTTP/2 client connection preface.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// The wrapper's bound on held bytes.
const HELD_LIMIT: usize = 256 * 1024;

/// Whether a write reaches the socket without a flush: true for a connection passed straight
/// through, false for one that coalesces.
async fn writes_through(io: &mut WriteCoalescing<Counted>, writes: &AtomicUsize) -> bool {
    let before = writes.load(Ordering::Relaxed);
    io.write_all(b"probe").await.unwrap();
    writes.load(Ordering::Relaxed) > before
}

async fn open_with(io: &mut WriteCoalescing<Counted>, peer: &mut DuplexStream, bytes: &[u8]) {
    peer.write_all(bytes).await.unwrap();
    let mut got = vec![0; bytes.len()];
    io.read_exact(&mut got).await.unwrap();
    assert_eq!(got, bytes);
}

#[tokio::test]
async fn http1_bytes_pass_straight_through() {
    let (mut io, mut peer, writes) = pair(1 << 16);
    open_with(&mut io, &mut peer, b"GET / HTTP/1.1\r\n\r\n").await;
    io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    // No flush: the bytes are already on the other side.
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    let mut got = [0; 17];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"HTTP/1.1 200 OK\r\n");
}

#[tokio::test]
async fn http2_writes_wait_for_one_turn_and_leave_together() {
    let (mut io, mut peer, writes) = pair(1 << 16);
    open_with(&mut io, &mut peer, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    for frame in [&b"one "[..], b"two ", b"three"] {
        io.write_all(frame).await.unwrap();
    }
    assert_eq!(
        writes.load(Ordering::Relaxed),
        0,
        "nothing written before a flush"
    );
    // The first flush yields (and wakes itself); the second writes everything at once.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
    assert_eq!(writes.load(Ordering::Relaxed), 0);
    io.flush().await.unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    let mut got = [0; 13];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"one two three");
    // A flush with nothing held does not yield.
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
}

#[tokio::test]
async fn a_flush_waits_while_each_turn_brings_more_bytes() {
    let (mut io, mut peer, writes) = pair(1 << 16);
    open_with(&mut io, &mut peer, HTTP2_PREFACE).await;
    let mut cx = Context::from_waker(std::task::Waker::noop());
    io.write_all(b"a").await.unwrap();
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
    // Streams that ran during the turn queued more: another turn.
    io.write_all(b"b").await.unwrap();
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
    io.write_all(b"c").await.unwrap();
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
    assert_eq!(writes.load(Ordering::Relaxed), 0);
    // A turn that brought nothing: everything leaves in one write.
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    let mut got = [0; 3];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"abc");
}

#[tokio::test]
async fn streams_that_never_go_quiet_wait_a_bounded_number_of_turns() {
    let (mut io, mut peer, writes) = pair(1 << 16);
    open_with(&mut io, &mut peer, HTTP2_PREFACE).await;
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut pending = 0;
    loop {
        io.write_all(b"x").await.unwrap();
        if Pin::new(&mut io).poll_flush(&mut cx).is_ready() {
            break;
        }
        pending += 1;
        assert!(pending <= 64, "the flush never wrote");
    }
    assert_eq!(pending, usize::from(write_coalescing::MAX_YIELDS));
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    let mut got = vec![0; pending + 1];
    peer.read_exact(&mut got).await.unwrap();
    assert!(got.iter().all(|&b| b == b'x'));
    // The count starts again with the next bytes.
    io.write_all(b"y").await.unwrap();
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
}

#[tokio::test]
async fn a_preface_arriving_a_byte_at_a_time_is_still_recognised() {
    let (mut io, mut peer, writes) = pair(1 << 16);
    for byte in HTTP2_PREFACE {
        open_with(&mut io, &mut peer, &[*byte]).await;
    }
    assert!(!writes_through(&mut io, &writes).await, "not coalescing");
}

#[tokio::test]
async fn a_near_miss_of_the_preface_is_http1() {
    let (mut io, mut peer, writes) = pair(1 << 16);
    open_with(&mut io, &mut peer, b"PRI * HTTP/1.1").await;
    assert!(writes_through(&mut io, &writes).await, "coalescing");
    let (mut io, mut peer, writes) = pair(1 << 16);
    open_with(&mut io, &mut peer, b"POST").await;
    assert!(writes_through(&mut io, &writes).await, "coalescing");
}

#[tokio::test]
async fn a_reader_that_stops_holds_back_the_writer_at_the_limit() {
    // The socket takes 1 KiB and nobody reads it.
    let (mut io, mut peer, _) = pair(1024);
    open_with(&mut io, &mut peer, HTTP2_PREFACE).await;
    let chunk = vec![7u8; 16 * 1024];
    let mut accepted = 0;
    let filled = async {
        loop {
            io.write_all(&chunk).await.unwrap();
            accepted += chunk.len();
        }
    };
    let stalled = tokio::time::timeout(std::time::Duration::from_millis(200), filled).await;
    assert!(stalled.is_err(), "the writer never waited");
    assert!(
        accepted <= HELD_LIMIT + chunk.len(),
        "held {accepted} bytes past the limit"
    );
    // Once the reader drains, everything held arrives, in order and whole.
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        all
    });
    io.shutdown().await.unwrap();
    drop(io);
    let all = reader.await.unwrap();
    assert_eq!(all.len(), accepted);
    assert!(all.iter().all(|&b| b == 7));
}

#[tokio::test]
async fn shutdown_writes_what_is_held() {
    let (mut io, mut peer, _) = pair(1 << 16);
    open_with(&mut io, &mut peer, HTTP2_PREFACE).await;
    io.write_all(b"last frame").await.unwrap();
    io.shutdown().await.unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last frame");
}
