//! The HTTP probe: a GET over HTTP/1.1, plain or TLS (the certificate is not verified, as the
//! kubelet does not), with redirects followed on the probed host.

use super::*;

/// How many redirects an HTTP probe follows (the kubelet's limit).
const MAX_REDIRECTS: usize = 10;

/// Where an HTTP probe's request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ProbeUrl {
    pub(super) https: bool,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) path: String,
}

impl std::fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// GET over HTTP or HTTPS (certificate not verified, as in the kubelet); 200-399 is success.
/// Redirects to the same host are followed; a redirect elsewhere counts as success, as in the
/// kubelet (which then only warns).
pub(super) async fn http_get(action: &HttpGetAction, target: &Target) -> Outcome {
    let Some(port) = target.container.resolve_port(&action.port) else {
        return Outcome::Failure(format!(
            "port {} is not a port of the container",
            action.port
        ));
    };
    let mut url = ProbeUrl {
        https: action.scheme == Scheme::Https,
        host: host_of(&action.host, target),
        port,
        path: action.path.clone().unwrap_or_else(|| "/".into()),
    };
    for _ in 0..=MAX_REDIRECTS {
        let response = match http_request(&url, action).await {
            Ok(response) => response,
            Err(err) => return Outcome::Failure(format!("Get \"{url}\": {err}")),
        };
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("");
            match redirect(&url, location) {
                Some(next) => {
                    url = next;
                    continue;
                }
                None => return Outcome::Success,
            }
        }
        return if (200..400).contains(&status.as_u16()) {
            Outcome::Success
        } else {
            Outcome::Failure(format!(
                "HTTP probe failed with statuscode: {}",
                status.as_u16()
            ))
        };
    }
    Outcome::Failure(format!("stopped after {MAX_REDIRECTS} redirects"))
}

/// Where a redirect leads, if it stays on the probed host (the kubelet follows only those;
/// the scheme and port may change).
pub(super) fn redirect(from: &ProbeUrl, location: &str) -> Option<ProbeUrl> {
    if location.starts_with('/') {
        return Some(ProbeUrl {
            path: location.to_owned(),
            ..from.clone()
        });
    }
    let (https, rest) = match location.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, location.strip_prefix("http://")?),
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, if https { 443 } else { 80 }),
    };
    (host == from.host).then(|| ProbeUrl {
        https,
        host: host.to_owned(),
        port,
        path,
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn http_request(
    url: &ProbeUrl,
    action: &HttpGetAction,
) -> Result<hyper::Response<hyper::body::Incoming>, BoxError> {
    let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
    if url.https {
        let session = crate::tls::connect(&url.host, stream).await?;
        send_get(TokioIo::new(session), url, action).await
    } else {
        send_get(TokioIo::new(stream), url, action).await
    }
}

/// One HTTP/1.1 GET over an open connection (plain or TLS).
async fn send_get<T>(
    io: T,
    url: &ProbeUrl,
    action: &HttpGetAction,
) -> Result<hyper::Response<hyper::body::Incoming>, BoxError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(url.path.as_str())
        .header(hyper::header::HOST, format!("{}:{}", url.host, url.port))
        .header(hyper::header::USER_AGENT, "kube-probe/keel")
        .header(hyper::header::ACCEPT, "*/*");
    for header in &action.http_headers {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    Ok(sender
        .send_request(request.body(Empty::<Bytes>::new())?)
        .await?)
}
