//! `GET pods/{name}/log`: a container's log, streamed from the node that runs the pod, as
//! kube-apiserver proxies it to the kubelet's `/containerLogs/{namespace}/{pod}/{container}`
//! (what `kubectl logs [-f] [--previous]` reads).
//!
//! The API server reaches the node at its Node's InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, over TLS, with a client certificate the
//! cluster CA issued it (`kube-apiserver-kubelet-client`, as kubeadm names it), which the node
//! checks against the same CA. The node's serving certificate is not verified — neither does
//! kube-apiserver's without `--kubelet-certificate-authority`; the node's own certificate is
//! self-signed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use tokio::sync::mpsc;

use super::Request;
use super::{read_current, Api, ResourceRequest};
use crate::reply::{Body, Reply};
use crate::request::Verb;
use crate::resources::ResourceInfo;
use crate::status::ApiError;

/// The kubelet's default port, for a Node that does not publish one.
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Log options passed through to the node, as kube-apiserver's `PodLogOptions`.
const PASSED: [&str; 6] = [
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "limitBytes",
    "sinceSeconds",
];

pub(super) async fn logs(
    api: &Arc<Api>,
    target: &ResourceRequest,
    request: &Request,
) -> Result<Reply, ApiError> {
    if target.verb != Verb::Get {
        return Err(ApiError::method_not_allowed("pods/log supports get only"));
    }
    let name = target
        .name
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("pods/log needs a pod name"))?;
    let namespace = target.namespace.as_deref().unwrap_or("default");
    let (pod, _) = read_current(api, target.info, namespace, name).await?;
    let container = container_of(&pod, name, request.query.get("container"))?;
    let (tls, address, port) = node_endpoint(api, &pod, name, "pods/log").await?;
    let mut query = String::new();
    for option in PASSED {
        if let Some(value) = request.query.get(option) {
            query.push(if query.is_empty() { '?' } else { '&' });
            query.push_str(option);
            query.push('=');
            query.push_str(&urlencoding_component(value));
        }
    }
    let path = format!(
        "/containerLogs/{}/{}/{}{query}",
        urlencoding_component(namespace),
        urlencoding_component(name),
        urlencoding_component(&container)
    );
    let receiver = fetch(tls, &address, port, &path).await?;
    Ok(Reply {
        code: 200,
        body: Body::Stream(
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver)),
            "text/plain",
        ),
        headers: Vec::new(),
    })
}

/// How to reach the node that runs `pod` (named `name`): this server's client credential, the
/// node's address and its endpoint's port. `what` names the subresource in the error of a
/// server without a credential for nodes.
pub(super) async fn node_endpoint(
    api: &Arc<Api>,
    pod: &Value,
    name: &str,
    what: &str,
) -> Result<(Arc<rustls::ClientConfig>, String, u16), ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let (node, _) = read_current(api, nodes_info()?, "", node_name).await?;
    let (address, port) = kubelet_address(&node).ok_or_else(|| {
        let mut error = ApiError::unavailable(format!("node {node_name} publishes no InternalIP"));
        error.retry_after = None;
        error
    })?;
    let Some(tls) = api.config.kubelet_tls.clone() else {
        return Err(ApiError::unavailable(format!(
            "this API server has no credential for the nodes ({what} is not served)"
        )));
    };
    Ok((tls, address, port))
}

fn nodes_info() -> Result<&'static ResourceInfo, ApiError> {
    crate::resources::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not a served resource"))
}

/// The container asked for, or the pod's only one; kube-apiserver's messages otherwise.
pub(super) fn container_of(
    pod: &Value,
    name: &str,
    asked: Option<&str>,
) -> Result<String, ApiError> {
    let names: Vec<&str> = ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    match asked {
        Some(asked) if names.contains(&asked) => Ok(asked.to_owned()),
        Some(asked) => Err(ApiError::bad_request(format!(
            "container {asked} is not valid for pod {name}"
        ))),
        None => match pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            Some([only]) => Ok(only
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            ))),
        },
    }
}

/// Where the node's log endpoint is: its InternalIP and published port.
pub fn kubelet_address(node: &Value) -> Option<(String, u16)> {
    let address = node
        .pointer("/status/addresses")?
        .as_array()?
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))?
        .get("address")?
        .as_str()?
        .parse::<std::net::IpAddr>()
        .ok()?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((address.to_string(), port))
}

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters.
pub(super) fn urlencoding_component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

/// An HTTP/1.1 connection to the node's endpoint, over TLS with this server's client
/// certificate.
pub(super) async fn node_connection(
    tls: Arc<rustls::ClientConfig>,
    address: &str,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, ApiError> {
    // No Retry-After: client-go would retry ten times an error that waiting does not fix.
    let unreachable = |what: String| {
        let mut error = ApiError::unavailable(format!("the node at {address}:{port}: {what}"));
        error.retry_after = None;
        error
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((address, port)),
    )
    .await
    .map_err(|_| unreachable("no connection within 5 s".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let server_name = rustls::pki_types::ServerName::try_from(address.to_owned())
        .map_err(|e| unreachable(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(format!("TLS: {e}")))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    // With upgrades: `pods/exec` turns this connection into the command's stream.
    tokio::spawn(connection.with_upgrades());
    Ok(sender)
}

/// GETs `path` from the node and streams the body; an answer other than 200 becomes the
/// error it says.
async fn fetch(
    tls: Arc<rustls::ClientConfig>,
    address: &str,
    port: u16,
    path: &str,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let mut sender = node_connection(tls, address, port).await?;
    let unreachable = |what: String| {
        let mut error = ApiError::unavailable(format!("the node at {address}:{port}: {what}"));
        error.retry_after = None;
        error
    };
    let request = hyper::Request::get(path)
        .header("host", format!("{address}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if response.status().as_u16() != 200 {
        return Err(node_refusal(response).await);
    }
    let mut body = response.into_body();
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                // The client went away: stop reading from the node.
                if sender.send(data).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok(receiver)
}

/// The error a node's answer other than the one asked for says: its text, 404 kept as
/// NotFound (a pod or container the node does not have), anything else a bad request.
pub(super) async fn node_refusal(answer: hyper::Response<hyper::body::Incoming>) -> ApiError {
    let status = answer.status().as_u16();
    let text = answer
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
        .unwrap_or_default();
    let mut error = ApiError::bad_request(text);
    if status == 404 {
        error.code = 404;
        error.reason = "NotFound";
    }
    error
}

/// kube-apiserver's default towards kubelets: their serving certificates are not verified
/// (without `--kubelet-certificate-authority`). The channel is still encrypted and the node
/// still verifies *this* server's client certificate.
#[derive(Debug)]
pub struct UnverifiedKubelet(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UnverifiedKubelet {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS configuration the API server dials nodes with: the client certificate and key
/// (PEM) the cluster CA issued it.
pub fn kubelet_client_tls(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the kubelet client certificate: {e}"))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("the kubelet client key: {e}"))?
        .ok_or("the kubelet client key: no private key in it")?;
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnverifiedKubelet(provider)))
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the kubelet client credential: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_only_container_is_the_default_and_others_are_named() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(container_of(&one, "p", None).ok().as_deref(), Some("web"));
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let error = container_of(&two, "p", None)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(error.contains("choose one of: [a b]"), "{error}");
        assert_eq!(
            container_of(&two, "p", Some("b")).ok().as_deref(),
            Some("b")
        );
        let error = container_of(&two, "p", Some("../../etc"))
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(error.contains("not valid for pod p"), "{error}");
    }

    #[test]
    fn the_node_is_reached_at_its_internal_ip_and_published_port() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"},
            {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}}}});
        assert_eq!(kubelet_address(&node), Some(("10.0.0.7".into(), 10255)));
        let bare =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.8"}]}});
        assert_eq!(kubelet_address(&bare), Some(("10.0.0.8".into(), 10250)));
        let hostile = json!({"status": {"addresses": [{"type": "InternalIP", "address": "evil.example:80/x"}]}});
        assert_eq!(kubelet_address(&hostile), None);
    }

    #[test]
    fn path_parts_are_escaped() {
        assert_eq!(urlencoding_component("a/b?c=d e"), "a%2Fb%3Fc%3Dd%20e");
    }
}
