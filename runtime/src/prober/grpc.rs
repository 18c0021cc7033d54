//! The gRPC probe: `grpc.health.v1.Health/Check` over HTTP/2, and the few bytes of gRPC and
//! protobuf it needs: one request message with one string field, one response message with
//! one enum field. (A gRPC stack would bring dozens of crates for these two messages.)

use super::*;

/// `grpc.health.v1.Health/Check` over HTTP/2; `SERVING` is success.
pub(super) async fn grpc_health(action: &GrpcAction, target: &Target) -> Outcome {
    let authority = format!("{}:{}", target.pod_ip, action.port);
    let service = action.service.clone().unwrap_or_default();
    match grpc_check(&authority, &service).await {
        Ok(1) => Outcome::Success,
        Ok(status) => Outcome::Failure(format!(
            "service unhealthy (responded with \"{}\")",
            grpc::status_name(status)
        )),
        Err(err) => Outcome::Failure(format!(
            "failed to connect service {authority:?} within the timeout: {err}"
        )),
    }
}

async fn grpc_check(
    authority: &str,
    service: &str,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(authority).await?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::post(format!("http://{authority}{}", grpc::CHECK_PATH))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .body(Full::new(Bytes::from(grpc::frame(&grpc::encode_request(
            service,
        )))))?;
    let response = sender.send_request(request).await?;
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    // A trailers-only response carries grpc-status in the headers.
    let status = trailers
        .get("grpc-status")
        .or(headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0");
    if status != "0" {
        return Err(format!("rpc error: code = {status}").into());
    }
    let body = collected.to_bytes();
    let message = grpc::unframe(&body).ok_or("malformed gRPC response frame")?;
    Ok(grpc::decode_response(message).ok_or("malformed HealthCheckResponse")?)
}

pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckRequest { string service = 1; }`.
pub fn encode_request(service: &str) -> Vec<u8> {
    if service.is_empty() {
        return Vec::new(); // proto3 omits default values
    }
    let mut message = vec![0x0a]; // field 1, wire type 2 (length-delimited)
    put_varint(&mut message, service.len() as u64);
    message.extend_from_slice(service.as_bytes());
    message
}

/// `HealthCheckResponse { ServingStatus status = 1; }`; an empty message is UNKNOWN (0).
pub fn decode_response(mut message: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !message.is_empty() {
        let (key, rest) = get_varint(message)?;
        message = rest;
        match (key >> 3, key & 7) {
            (1, 0) => {
                let (value, rest) = get_varint(message)?;
                status = value;
                message = rest;
            }
            (_, 0) => message = get_varint(message)?.1,
            (_, 2) => {
                let (len, rest) = get_varint(message)?;
                message = rest.get(usize::try_from(len).ok()?..)?;
            }
            _ => return None, // fixed-size fields do not occur in this message
        }
    }
    Some(status)
}

/// A gRPC message frame: uncompressed flag, big-endian length, message.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

pub fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if compressed != 0 {
        return None;
    }
    rest.get(4..4 + len)
}

pub fn status_name(status: u64) -> &'static str {
    match status {
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}
