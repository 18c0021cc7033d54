//! A real hyper HTTP/2 server, and a client that sends what etcd 3.4's grpc-go client sends
//! for `--endpoints=http://…`: an `:authority` of `http://a:1`, Huffman-coded and added to the
//! HPACK table, then named by table index on the next request. Without the wrapper h2 resets
//! the stream; with it, both requests are served and see `a:1`.

use std::convert::Infallible;

use authority_repair::AuthorityRepair;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `:method GET`, `:scheme http`, `:path /p` (added to the table), `:authority` =
/// "http://a:1" Huffman-coded (added to the table).
fn first_request() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x44, 0x02, b'/', b'p'];
    block.extend([0x41, 0x88, 0x9d, 0x29, 0xae, 0xe3, 0x0c, 0x0e, 0xe0, 0x7f]);
    frame(0x1, 0x5, 1, &block)
}

/// The same request by table index: `:authority` is entry 62, `:path /p` entry 63.
fn second_request() -> Vec<u8> {
    frame(0x1, 0x5, 3, &[0x82, 0x86, 0xbf, 0xbe])
}

fn serve(server_end: DuplexStream, repair: bool) {
    let service = hyper::service::service_fn(|request: hyper::Request<_>| async move {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(authority))))
    });
    let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    if repair {
        let io = TokioIo::new(AuthorityRepair::new(server_end));
        tokio::spawn(async move { server.serve_connection(io, service).await });
    } else {
        let io = TokioIo::new(server_end);
        tokio::spawn(async move { server.serve_connection(io, service).await });
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Body(String),
    Reset(u32),
}

/// Reads the server's frames until `stream` ends: its body, or the error code it was reset
/// with. Acknowledges the server's SETTINGS on the way.
async fn outcome(client: &mut DuplexStream, stream: u32) -> Outcome {
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; 9];
        client.read_exact(&mut header).await.expect("frame header");
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let mut payload = vec![0u8; len];
        client
            .read_exact(&mut payload)
            .await
            .expect("frame payload");
        match kind {
            0x4 if flags & 0x1 == 0 => {
                client
                    .write_all(&frame(0x4, 0x1, 0, &[]))
                    .await
                    .expect("settings ack");
            }
            0x0 if id == stream => {
                body.extend(payload);
                if flags & 0x1 != 0 {
                    return Outcome::Body(String::from_utf8(body).expect("utf-8"));
                }
            }
            0x3 if id == stream => {
                return Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().expect("code")));
            }
            0x7 => panic!("the server ended the connection (GOAWAY {payload:?})"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn etcd_3_4_authority_is_refused_by_h2_alone_and_served_through_the_wrapper() {
    // Without the wrapper: h2 resets the stream with PROTOCOL_ERROR (1).
    let (server_end, mut client) = tokio::io::duplex(1 << 16);
    serve(server_end, false);
    let mut opening = PREFACE.to_vec();
    opening.extend(frame(0x4, 0, 0, &[]));
    opening.extend(first_request());
    client.write_all(&opening).await.expect("write");
    assert_eq!(outcome(&mut client, 1).await, Outcome::Reset(1));

    // Through the wrapper: served, and the indexed second request finds the repaired value.
    let (server_end, mut client) = tokio::io::duplex(1 << 16);
    serve(server_end, true);
    client.write_all(&opening).await.expect("write");
    assert_eq!(outcome(&mut client, 1).await, Outcome::Body("a:1".into()));
    client.write_all(&second_request()).await.expect("write");
    assert_eq!(outcome(&mut client, 3).await, Outcome::Body("a:1".into()));
}

#[tokio::test]
async fn a_hyper_client_through_the_wrapper_is_served_as_before() {
    let (server_end, client_end) = tokio::io::duplex(1 << 16);
    serve(server_end, true);
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(client_end))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    for _ in 0..3 {
        let request = hyper::Request::get("http://127.0.0.1:2379/x")
            .body(Full::new(Bytes::from_static(b"payload")))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        use http_body_util::BodyExt;
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, "127.0.0.1:2379");
    }
}
