//! `pods/{name}/exec`: a command run in a container, its stdin, stdout and stderr carried over
//! one WebSocket (`v5.channel.k8s.io` or `v4.channel.k8s.io`, as `kubectl exec` speaks since
//! 1.30), proxied to the node that runs the pod as kube-apiserver proxies it to the kubelet's
//! `/exec/{namespace}/{pod}/{container}`.
//!
//! The API server only checks, authorizes (`create` on `pods/exec`, as kube-apiserver
//! authorizes a WebSocket GET since AuthorizePodWebsocketUpgradeCreatePermission) and splices:
//! the WebSocket handshake is the node's, and once it answers `101 Switching Protocols` the
//! client's connection and the node's are copied into each other until either closes. SPDY,
//! which kubectl falls back to, is not served.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::HeaderMap;
use hyper::upgrade::OnUpgrade;
use serde_json::Value;

use super::pod_logs::{container_of, node_connection, node_endpoint, node_refusal};
use super::{read_current, Api, Request, ResourceRequest};
use crate::reply::{Body, Reply};
use crate::status::ApiError;

/// The request headers that negotiate a WebSocket, passed to the node as the client sent them.
const NEGOTIATION: [&str; 3] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
];
/// The node's answer headers the client needs to finish the handshake.
const ANSWER: [&str; 2] = ["sec-websocket-accept", "sec-websocket-protocol"];
/// The exec options passed to the node (`command` repeats).
const OPTIONS: [&str; 5] = ["command", "stdin", "stdout", "stderr", "tty"];

/// A client's request to turn its connection into a WebSocket.
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    /// The negotiation headers, by name.
    headers: Vec<(&'static str, String)>,
    /// The query as sent: options such as `command` repeat, which the parsed query drops.
    raw_query: String,
}

impl Upgrade {
    /// The upgrade of a `pods/exec` request that asks for a WebSocket; None for any other.
    pub fn asked(
        subresource: Option<&str>,
        headers: &HeaderMap,
        raw_query: &str,
        on_upgrade: Option<OnUpgrade>,
    ) -> Option<Self> {
        if subresource != Some("exec") {
            return None;
        }
        let websocket = headers
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
        if !websocket {
            return None;
        }
        let headers = NEGOTIATION
            .iter()
            .filter_map(|name| {
                let values: Vec<&str> = headers
                    .get_all(*name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                (!values.is_empty()).then(|| (*name, values.join(", ")))
            })
            .collect();
        Some(Self {
            on_upgrade: on_upgrade?,
            headers,
            raw_query: raw_query.to_owned(),
        })
    }
}

/// The exec options of `raw_query`, re-encoded for the node, and the commands among them.
fn options(raw_query: &str) -> (String, Vec<String>) {
    let mut passed = form_urlencoded::Serializer::new(String::new());
    let mut commands = Vec::new();
    for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        if OPTIONS.contains(&key.as_ref()) {
            passed.append_pair(&key, &value);
            if key == "command" {
                commands.push(value.into_owned());
            }
        }
    }
    (passed.finish(), commands)
}

fn flag(raw_query: &str, name: &str) -> bool {
    form_urlencoded::parse(raw_query.as_bytes())
        .any(|(key, value)| key == name && matches!(value.as_ref(), "true" | "1"))
}

pub(super) async fn exec(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: Request,
) -> Result<Reply, ApiError> {
    let name = target
        .name
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("pods/exec needs a pod name"))?;
    let namespace = target.namespace.as_deref().unwrap_or("default");
    let Some(upgrade) = request.upgrade else {
        return Err(ApiError::bad_request(
            "pods/exec is served over WebSocket only (v5.channel.k8s.io, v4.channel.k8s.io: kubectl 1.30 and later); SPDY is not served",
        ));
    };
    let (query, commands) = options(&upgrade.raw_query);
    // kube-apiserver's checks and words (`ExecOptions` validation).
    if commands.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    if !["stdin", "stdout", "stderr"]
        .iter()
        .any(|stream| flag(&upgrade.raw_query, stream))
    {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    let (pod, _) = read_current(api, target.info, namespace, name).await?;
    let container = container_of(&pod, name, request.query.get("container"))?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if let Some(phase @ ("Succeeded" | "Failed")) = phase {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let (tls, address, port) = node_endpoint(api, &pod, name, "pods/exec").await?;
    let path = format!(
        "/exec/{}/{}/{}?{query}",
        super::pod_logs::urlencoding_component(namespace),
        super::pod_logs::urlencoding_component(name),
        super::pod_logs::urlencoding_component(&container)
    );
    let mut sender = node_connection(tls, &address, port).await?;
    let mut asked = hyper::Request::get(&path)
        .header("host", format!("{address}:{port}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket");
    for (header, value) in &upgrade.headers {
        asked = asked.header(*header, value);
    }
    let asked = asked
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut answer = sender.send_request(asked).await.map_err(|e| {
        let mut error = ApiError::unavailable(format!("the node at {address}:{port}: {e}"));
        error.retry_after = None;
        error
    })?;
    if answer.status().as_u16() != 101 {
        return Err(node_refusal(answer).await);
    }
    let mut headers = vec![
        ("upgrade", "websocket".to_owned()),
        ("connection", "Upgrade".to_owned()),
    ];
    for name in ANSWER {
        if let Some(value) = answer.headers().get(name).and_then(|v| v.to_str().ok()) {
            headers.push((name, value.to_owned()));
        }
    }
    let node_upgrade = hyper::upgrade::on(&mut answer);
    let client_upgrade = upgrade.on_upgrade;
    let pod_ref = format!("{namespace}/{name}");
    tokio::spawn(async move {
        let (client, node) = match tokio::join!(client_upgrade, node_upgrade) {
            (Ok(client), Ok(node)) => (client, node),
            (client, node) => {
                tracing::debug!(
                    pod = pod_ref,
                    client_ok = client.is_ok(),
                    node_ok = node.is_ok(),
                    "exec: an upgrade failed"
                );
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut node = hyper_util::rt::TokioIo::new(node);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut node).await {
            tracing::debug!(pod = pod_ref, %error, "exec stream ended");
        }
    });
    Ok(Reply {
        code: 101,
        body: Body::Raw(Vec::new(), "application/octet-stream"),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_every_command_and_drop_the_rest() {
        let (query, commands) = options(
            "command=sh&command=-c&command=echo%20a%26b&container=app&stdout=true&stderr=true&timeoutSeconds=9&evil=%0d%0a",
        );
        assert_eq!(commands, ["sh", "-c", "echo a&b"]);
        assert_eq!(
            query,
            "command=sh&command=-c&command=echo+a%26b&stdout=true&stderr=true"
        );
        assert!(flag("stdout=true", "stdout"));
        assert!(!flag("stdout=false&stdin=1", "stdout"));
        assert!(flag("stdout=false&stdin=1", "stdin"));
    }

    #[test]
    fn only_a_websocket_exec_is_an_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", "SPDY/3.1".parse().expect("a header"));
        assert!(Upgrade::asked(Some("exec"), &headers, "", None).is_none());
        headers.insert("upgrade", "websocket".parse().expect("a header"));
        // No connection to hand over (HTTP/2, or no upgrade requested of hyper).
        assert!(Upgrade::asked(Some("exec"), &headers, "", None).is_none());
        assert!(Upgrade::asked(Some("log"), &headers, "", None).is_none());
    }
}
