//! The replies of the node's HTTPS endpoint (logs and exec), shared by its handlers.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::Response;

/// The body of every reply of the endpoint.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A plain-text reply with `code`.
pub fn text(code: u16, message: impl Into<String>) -> Response<Body> {
    let body = Full::new(Bytes::from(message.into()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or_default();
    response
}
