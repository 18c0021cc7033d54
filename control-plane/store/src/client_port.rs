//! The client port speaks two protocols, as etcd's does: gRPC (HTTP/2 with prior knowledge)
//! for the v3 API, and HTTP/1.1 for `/version`, `/health` and `/metrics`, which etcd serves on
//! its client URLs too. `curl http://host:2379/version` and `/health` are how etcd's users
//! check a member by hand, Prometheus set-ups scrape etcd's client port, and `etcdctl check
//! perf` and `check datascale` read `/metrics` from the endpoint they test.
//!
//! A connection is told apart by its first bytes: HTTP/2's connection preface begins `PRI `,
//! an HTTP/1 request with its method and a space. Anything else goes to the gRPC server, whose
//! HTTP/2 codec refuses it as before.

use std::time::Duration;

use tokio::net::TcpStream;

/// What a client connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    /// HTTP/2: gRPC, or bytes no protocol here accepts (the HTTP/2 codec answers those).
    Grpc,
    /// An HTTP/1.x request.
    Http1,
}

/// HTTP/2's client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The longest method token taken for HTTP/1 (`OPTIONS`, `CONNECT`).
const LONGEST_METHOD: usize = 7;

/// How long a connection may stay silent before it is handed to the gRPC server as it is: a
/// gRPC client sends its preface at once, so this only bounds a silent connection's wait.
pub const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol `first` (a connection's first bytes) begins, or `None` while it could still be
/// either.
pub fn sniff(first: &[u8]) -> Option<ClientProtocol> {
    if first.is_empty() {
        return None;
    }
    let preface = first.len().min(PREFACE.len());
    if first[..preface] == PREFACE[..preface] {
        // `P`, `PR`, `PRI`: HTTP/2 or `PUT`/`POST`/`PATCH` until the fourth byte.
        return if first.len() >= 4 {
            Some(ClientProtocol::Grpc)
        } else {
            None
        };
    }
    match first.iter().position(|b| *b == b' ') {
        Some(0) => Some(ClientProtocol::Grpc),
        Some(end) if end <= LONGEST_METHOD && first[..end].iter().all(u8::is_ascii_uppercase) => {
            Some(ClientProtocol::Http1)
        }
        Some(_) => Some(ClientProtocol::Grpc),
        None if first.len() <= LONGEST_METHOD && first.iter().all(u8::is_ascii_uppercase) => None,
        None => Some(ClientProtocol::Grpc),
    }
}

/// Waits for enough of `socket`'s first bytes to tell its protocol (without reading them), at
/// most `timeout`; a connection that stays silent or closes is handed to gRPC.
pub async fn classify(socket: &TcpStream, timeout: Duration) -> ClientProtocol {
    let mut first = [0u8; LONGEST_METHOD + 1];
    crate::first_bytes::peek_until(socket, timeout, &mut first, sniff)
        .await
        .unwrap_or(ClientProtocol::Grpc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trickled_method_is_told_once_its_space_arrives() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut socket = TcpStream::connect(addr).await.expect("connect");
            for byte in b"GET /" {
                socket.write_all(&[*byte]).await.expect("send");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            socket
        });
        let (server, _) = listener.accept().await.expect("accept");
        let told = classify(&server, Duration::from_secs(5)).await;
        assert_eq!(told, ClientProtocol::Http1);
        // A silent connection is handed on at the deadline.
        let _client = client.await.expect("client");
        let silent = TcpStream::connect(addr);
        let (silent_server, silent_client) = tokio::join!(listener.accept(), silent);
        let (silent_server, _) = silent_server.expect("accept");
        let _silent_client = silent_client.expect("connect");
        let began = std::time::Instant::now();
        let told = classify(&silent_server, Duration::from_millis(200)).await;
        assert_eq!(told, ClientProtocol::Grpc);
        assert!(began.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn the_http2_preface_is_grpc_once_it_cannot_be_a_method() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"P"), None);
        assert_eq!(sniff(b"PR"), None);
        assert_eq!(sniff(b"PRI"), None);
        assert_eq!(sniff(b"PRI "), Some(ClientProtocol::Grpc));
        assert_eq!(sniff(PREFACE), Some(ClientProtocol::Grpc));
    }

    #[test]
    fn http1_methods_are_http1() {
        for request in [
            &b"GET /version HTTP/1.1\r\n"[..],
            b"HEAD / HTTP/1.0",
            b"POST /v3/kv/range HTTP/1.1",
            b"PUT /",
            b"PATCH /",
            b"OPTIONS * HTTP/1.1",
        ] {
            assert_eq!(sniff(request), Some(ClientProtocol::Http1), "{request:?}");
        }
        // A method still arriving.
        assert_eq!(sniff(b"GE"), None);
        assert_eq!(sniff(b"OPTIONS"), None);
    }

    #[test]
    fn anything_else_goes_to_the_http2_codec_which_refuses_it() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00"[..], // a TLS ClientHello on a plain-text port
            b" GET /",
            b"get /version",
            b"GETTINGLONG /",
            b"LONGERTHANANYMETHOD",
            b"G\0T /",
            b"\xff\xfe",
        ] {
            assert_eq!(sniff(garbage), Some(ClientProtocol::Grpc), "{garbage:?}");
        }
    }
}
