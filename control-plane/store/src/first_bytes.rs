//! Telling a new connection's protocol from its first bytes without taking them, as both the
//! peer port (links or gRPC) and the client port (gRPC or HTTP/1) do; each decides what the
//! bytes mean, this module only waits for them.

use std::time::Duration;

use tokio::net::TcpStream;

/// Peeks at `socket`'s first bytes (at most `first.len()`) until `decide` tells what they
/// begin, or `timeout` passes: `None` if the connection stays silent, closes, or is still
/// undecided at the deadline.
pub async fn peek_until<T>(
    socket: &TcpStream,
    timeout: Duration,
    first: &mut [u8],
    decide: impl Fn(&[u8]) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    // A preamble, preface or request line comes in one segment; a connection that trickles
    // one is checked ever less often, so it cannot keep a worker waking every millisecond.
    let mut pause = Duration::from_millis(1);
    loop {
        let seen = match tokio::time::timeout_at(deadline, socket.peek(first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        if let Some(told) = decide(&first[..seen]) {
            return Some(told);
        }
        // Fewer bytes than it takes to tell: `peek` would return at once with the same ones
        // (it leaves the socket readable), so wait before looking again.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
