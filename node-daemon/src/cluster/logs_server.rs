//! The node's kubelet-like HTTPS endpoint: `GET /containerLogs/{namespace}/{pod}/{container}`
//! (`follow`, `previous`, `timestamps`), which the API server's `pods/log` proxies to — so
//! `kubectl logs [-f] [--previous]` reads logs of pods on this node.
//!
//! Only the API server may ask: the client must present a certificate the cluster CA signed
//! (the CA of the node's kubeconfig) naming `kube-apiserver-kubelet-client` or the group
//! `system:masters`; another node's credential is refused. The serving certificate is made
//! at start-up, self-signed (the API server does not verify it, as kube-apiserver does not
//! without `--kubelet-certificate-authority`).

use std::{
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::{body::Frame, Request, Response};
use tokio::sync::{mpsc, watch};

use super::endpoint_reply::{text, Body};

/// The kubelet's port, which the Node publishes as `daemonEndpoints.kubeletEndpoint.Port`.
pub const DEFAULT_PORT: u16 = 10250;
/// Who may read logs: the API server's credential, or a cluster admin's.
const ALLOWED_USER: &str = "kube-apiserver-kubelet-client";
const ALLOWED_GROUP: &str = "system:masters";

/// Serves until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    ca_pem: &str,
    names: Vec<String>,
    state_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let tls = tls_config(ca_pem, names)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the log endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let state_dir = Arc::new(state_dir);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => return,
            };
            let Ok((tcp, peer)) = accepted else { continue };
            let acceptor = acceptor.clone();
            let state_dir = state_dir.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "log endpoint: TLS handshake failed");
                        return;
                    }
                };
                let allowed = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .is_some_and(|cert| may_read_logs(cert.as_ref()));
                let service = hyper::service::service_fn(move |request| {
                    let state_dir = state_dir.clone();
                    async move { Ok::<_, Infallible>(answer(request, &state_dir, allowed)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(%peer, %error, "log endpoint: connection");
                }
            });
        }
    });
    Ok((bound, task))
}

fn tls_config(ca_pem: &str, names: Vec<String>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots
            .add(cert.context("the cluster CA in the kubeconfig")?)
            .context("the cluster CA in the kubeconfig")?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("the client certificate verifier")?;
    let issued = rcgen::generate_simple_self_signed(names).context("the serving certificate")?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(issued.key_pair.serialize_der())
        .map_err(|e| anyhow::anyhow!("the serving key: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![issued.cert.der().clone()], key)?;
    Ok(Arc::new(config))
}

/// Whether a (CA-verified) client certificate is the API server's or an admin's: CN
/// `kube-apiserver-kubelet-client`, or O `system:masters`.
fn may_read_logs(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    let admin = subject
        .iter_organization()
        .any(|o| o.as_str().ok() == Some(ALLOWED_GROUP));
    user == Some(ALLOWED_USER) || admin
}

/// What the request asks for: `(namespace, pod, container)`; names are Kubernetes object
/// names, so anything else (a `..`, a `/`, an escape) is refused rather than decoded.
fn parse_path<'a>(prefix: &str, path: &'a str) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = path.strip_prefix(prefix)?;
    let mut parts = rest.split('/');
    let (namespace, pod, container) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !name.starts_with('.')
    };
    (parts.next().is_none() && valid(namespace) && valid(pod) && valid(container))
        .then_some((namespace, pod, container))
}

fn flag(query: &str, name: &str) -> bool {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(key, value)| key == name && value == "true")
}

fn answer(
    request: Request<hyper::body::Incoming>,
    state_dir: &Path,
    allowed: bool,
) -> Response<Body> {
    if !allowed {
        return text(
            403,
            "forbidden: only the API server reads logs and runs commands here\n",
        );
    }
    if request.method() != hyper::Method::GET {
        return text(405, "only GET\n");
    }
    let path = request.uri().path().to_owned();
    if let Some(target) = parse_path("/exec/", &path) {
        return super::exec_server::answer(request, state_dir, target);
    }
    let Some((namespace, pod, container)) = parse_path("/containerLogs/", request.uri().path())
    else {
        return text(
            404,
            "not found: expected /containerLogs/{namespace}/{pod}/{container}\n",
        );
    };
    let query = request.uri().query().unwrap_or("");
    let (follow, previous, timestamps) = (
        flag(query, "follow"),
        flag(query, "previous"),
        flag(query, "timestamps"),
    );
    let file =
        match keel_runtime::cli::log_file(state_dir, namespace, pod, Some(container), previous) {
            Ok(file) => file,
            Err(error) => return text(404, format!("{error:#}\n")),
        };
    let (sender, receiver) = mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            sender,
            buffer: Vec::new(),
        };
        if let Err(error) = keel_runtime::cli::copy_logs(&file, &mut out, follow, timestamps) {
            tracing::debug!(%error, "log stream ended");
        }
    });
    let frames = futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(chunk)), receiver))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// A blocking writer into the response: buffered, sent on flush; a closed receiver (the
/// reader went away) is an error, which ends a followed log.
struct ChannelWriter {
    sender: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= 32 << 10 {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.sender.is_closed() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.sender
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_make_a_path() {
        assert_eq!(
            parse_path("/containerLogs/", "/containerLogs/default/web-1/httpd"),
            Some(("default", "web-1", "httpd"))
        );
        for hostile in [
            "/containerLogs/default/web/../../etc",
            "/containerLogs/default/web/httpd/extra",
            "/containerLogs/default/%2e%2e/httpd",
            "/containerLogs/default/.hidden/httpd",
            "/containerLogs//web/httpd",
            "/containerLogs/default/Web/httpd",
            "/logs/default/web/httpd",
        ] {
            assert_eq!(parse_path("/containerLogs/", hostile), None, "{hostile}");
        }
    }

    fn certificate(user: &str, group: Option<&str>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, user);
        if let Some(group) = group {
            name.push(rcgen::DnType::OrganizationName, group);
        }
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().expect("a key");
        params
            .self_signed(&key)
            .expect("a certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn only_the_api_server_and_admins_read_logs() {
        assert!(may_read_logs(&certificate(ALLOWED_USER, None)));
        assert!(may_read_logs(&certificate("alice", Some(ALLOWED_GROUP))));
        assert!(!may_read_logs(&certificate(
            "system:node:n2",
            Some("system:nodes")
        )));
        assert!(!may_read_logs(&certificate(
            "kube-apiserver-kubelet-client-x",
            None
        )));
        assert!(!may_read_logs(b"not a certificate"));
    }

    #[test]
    fn flags_are_true_only_when_said() {
        assert!(flag("follow=true&previous=false", "follow"));
        assert!(!flag("follow=true&previous=false", "previous"));
        assert!(!flag("follow", "follow"));
        assert!(!flag("", "timestamps"));
    }
}
