//! What a handler answers, and the representations a client may ask for with `Accept`.

use std::pin::Pin;

use bytes::Bytes;
use serde_json::Value;

use crate::status::ApiError;

pub enum Body {
    Json(Value),
    /// Bytes already encoded, with their content type.
    Raw(Vec<u8>, &'static str),
    /// A stream of chunks (watch, logs), with its content type. The connection polls it
    /// itself: a watch costs no task of its own between the cache and the socket.
    Stream(ByteStream, &'static str),
}

pub type ByteStream = Pin<Box<dyn futures::Stream<Item = Bytes> + Send + Sync>>;

pub struct Reply {
    pub code: u16,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(code: u16, value: Value) -> Self {
        Self {
            code,
            body: Body::Json(value),
            headers: Vec::new(),
        }
    }

    pub fn raw(code: u16, bytes: Vec<u8>, content_type: &'static str) -> Self {
        Self {
            code,
            body: Body::Raw(bytes, content_type),
            headers: Vec::new(),
        }
    }

    pub fn error(error: &ApiError) -> Self {
        let mut reply = Self::json(error.code, error.to_status());
        if let Some(seconds) = error.retry_after {
            reply.headers.push(("Retry-After", seconds.to_string()));
        }
        reply
    }

    /// Adds `Warning: 299 - "…"` headers, as kube-apiserver reports fieldValidation=Warn and
    /// deprecations (kubectl prints them as `Warning: …`).
    pub fn with_warnings(mut self, warnings: &[String]) -> Self {
        for w in warnings {
            // A quoted-string (RFC 9110): quotes and backslashes escaped, which client-go
            // undoes, so kubectl prints the warning as written.
            // Control characters (a field name may hold one) cannot travel in a header.
            let text = w
                .replace(|c: char| c.is_control(), " ")
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            self.headers.push(("Warning", format!("299 - \"{text}\"")));
        }
        self
    }
}

/// The representation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// `meta.k8s.io/v1` Table (server-side printing).
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`: metadata only.
    Metadata,
}

/// Picks the first media type of `Accept` the server can produce. Protobuf is not spoken:
/// clients list JSON after it and get JSON.
pub fn negotiate(accept: Option<&str>) -> Result<Format, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Format::Json);
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut as_kind = None;
        let mut group = None;
        let mut version = None;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                match k.trim() {
                    "as" => as_kind = Some(v.trim().to_owned()),
                    "g" => group = Some(v.trim().to_owned()),
                    "v" => version = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let json_like = matches!(media.as_str(), "application/json" | "*/*" | "application/*");
        let meta_v1 = json_like
            && group.as_deref() == Some("meta.k8s.io")
            && version.as_deref() == Some("v1");
        match as_kind.as_deref() {
            Some("Table") if meta_v1 => return Ok(Format::Table),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") if meta_v1 => {
                return Ok(Format::Metadata)
            }
            Some(_) => {}
            None if json_like => return Ok(Format::Json),
            None if media == "application/yaml" => return Ok(Format::Yaml),
            None => {}
        }
    }
    Err(ApiError::not_acceptable(format!(
        "none of the media types in Accept can be served: {accept} (application/json, application/yaml and meta.k8s.io/v1 Table are)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_what_kubectl_and_clients_ask_for() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)).ok(), Some(Format::Table));
        assert_eq!(
            negotiate(Some(
                "application/vnd.kubernetes.protobuf, application/json"
            ))
            .ok(),
            Some(Format::Json)
        );
        assert_eq!(negotiate(Some("application/yaml")).ok(), Some(Format::Yaml));
        assert_eq!(negotiate(None).ok(), Some(Format::Json));
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            ))
            .ok(),
            Some(Format::Metadata)
        );
        assert_eq!(
            negotiate(Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io"))
                .err()
                .map(|e| e.code),
            Some(406)
        );
        assert_eq!(
            negotiate(Some("text/html")).err().map(|e| e.code),
            Some(406)
        );
    }
}
