//! Probes with the kubelet's semantics: one worker per (pod, container, probe kind), started
//! with the container's run and stopped with it. A worker runs its check every period, counts
//! consecutive successes and failures against the thresholds, and reports only when the
//! thresholded result changes (the kubelet's results cache). Running a check (`check`) is
//! kept apart from scheduling it (`worker`).

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_api::{
    pod::{ExecAction, GrpcAction, HttpGetAction, Probe, Scheme, TcpSocketAction},
    Container,
};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// One check's outcome; a failure says why (the kubelet's event message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// What a check needs to know about its container.
#[derive(Clone, Debug)]
pub struct Target {
    pub pod_ip: Ipv4Addr,
    pub container: Container,
    /// For exec probes: the `node-daemon` binary, the container's shim spec and process.
    pub exe: PathBuf,
    pub spec_path: PathBuf,
    pub pid: i32,
}

/// A thresholded result that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    pub container: String,
    /// The container's run (its restart count when it started): results of an earlier run
    /// that arrive late are ignored.
    pub run: u32,
    pub kind: ProbeKind,
    pub success: bool,
    /// The last check's failure, for the `Unhealthy` event.
    pub message: Option<String>,
}

/// Consecutive results against the thresholds; emits only on change.
#[derive(Clone, Debug)]
pub struct Thresholds {
    success: u32,
    failure: u32,
    successes: u32,
    failures: u32,
    current: Option<bool>,
}

impl Thresholds {
    /// `initial` is the result before any check: liveness starts as success (a container is
    /// alive until proven otherwise), readiness and startup as unknown.
    pub fn new(probe: &Probe, initial: Option<bool>) -> Self {
        Self {
            success: probe.success_threshold(),
            failure: probe.failure_threshold(),
            successes: 0,
            failures: 0,
            current: initial,
        }
    }

    /// Records one check; returns the new result if it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = if self.successes >= self.success {
            Some(true)
        } else if self.failures >= self.failure {
            Some(false)
        } else {
            self.current
        };
        (next != self.current).then(|| {
            self.current = next;
            next
        })?
    }
}

/// Runs a probe for one run of one container until the task is aborted (the container
/// exited) or, for a startup probe, until it succeeded. `gate`, for liveness and readiness
/// probes of a container with a startup probe, holds them back until startup succeeded.
#[allow(clippy::too_many_arguments)]
pub async fn worker(
    kind: ProbeKind,
    probe: Probe,
    target: Target,
    run: u32,
    events: mpsc::UnboundedSender<ProbeEvent>,
    gate: Option<watch::Receiver<bool>>,
    jitter: Duration,
) {
    if let Some(mut gate) = gate {
        if gate.wait_for(|started| *started).await.is_err() {
            return;
        }
    }
    tokio::time::sleep(Duration::from_secs(probe.initial_delay().into()) + jitter).await;
    let initial = (kind == ProbeKind::Liveness).then_some(true);
    let mut thresholds = Thresholds::new(&probe, initial);
    let period = Duration::from_secs(probe.period().into());
    loop {
        let outcome = check(&probe, &target).await;
        let ok = outcome == Outcome::Success;
        if let Some(success) = thresholds.observe(ok) {
            let message = match &outcome {
                Outcome::Failure(why) => Some(why.clone()),
                Outcome::Success => None,
            };
            let event = ProbeEvent {
                container: target.container.name.clone(),
                run,
                kind,
                success,
                message,
            };
            if events.send(event).is_err() {
                return;
            }
            if kind == ProbeKind::Startup && success {
                return; // startup probes stop once they succeed
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Runs one check, bounded by the probe's timeout.
pub async fn check(probe: &Probe, target: &Target) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout().into());
    let run = async {
        if let Some(http) = &probe.http_get {
            http_get(http, target).await
        } else if let Some(tcp) = &probe.tcp_socket {
            tcp_socket(tcp, target).await
        } else if let Some(exec) = &probe.exec {
            exec_in_container(exec, target).await
        } else if let Some(grpc) = &probe.grpc {
            grpc_health(grpc, target).await
        } else {
            Outcome::Failure("the probe has no handler".into())
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failure(format!("probe timed out after {}s", timeout.as_secs())),
    }
}

fn host_of(host: &Option<String>, target: &Target) -> String {
    host.clone().unwrap_or_else(|| target.pod_ip.to_string())
}

async fn tcp_socket(action: &TcpSocketAction, target: &Target) -> Outcome {
    let Some(port) = target.container.resolve_port(&action.port) else {
        return Outcome::Failure(format!(
            "port {} is not a port of the container",
            action.port
        ));
    };
    let host = host_of(&action.host, target);
    match TcpStream::connect((host.as_str(), port)).await {
        Ok(_) => Outcome::Success,
        Err(err) => Outcome::Failure(format!("dial tcp {host}:{port}: {err}")),
    }
}

/// How many redirects an HTTP probe follows (the kubelet's limit).
const MAX_REDIRECTS: usize = 10;

/// Where an HTTP probe's request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProbeUrl {
    https: bool,
    host: String,
    port: u16,
    path: String,
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
async fn http_get(action: &HttpGetAction, target: &Target) -> Outcome {
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
fn redirect(from: &ProbeUrl, location: &str) -> Option<ProbeUrl> {
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
        let session = super::tls::connect(&url.host, stream).await?;
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

/// Runs the command in the container through `node-daemon nsexec`; exit 0 is success. The
/// helper is killed (and the command with it) if the probe times out.
async fn exec_in_container(action: &ExecAction, target: &Target) -> Outcome {
    let output = tokio::process::Command::new(&target.exe)
        .arg("nsexec")
        .arg("--spec")
        .arg(&target.spec_path)
        .arg("--pid")
        .arg(target.pid.to_string())
        .arg("--")
        .args(&action.command)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => Outcome::Success,
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let code = output
                .status
                .code()
                .map_or("a signal".into(), |c| c.to_string());
            Outcome::Failure(format!(
                "command {:?} exited with {code}: {}",
                action.command,
                text.trim()
            ))
        }
        Err(err) => Outcome::Failure(format!("cannot run the exec probe: {err}")),
    }
}

/// `grpc.health.v1.Health/Check` over HTTP/2; `SERVING` is success.
async fn grpc_health(action: &GrpcAction, target: &Target) -> Outcome {
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

/// The few bytes of gRPC and protobuf the health check needs: one request message with one
/// string field, one response message with one enum field. (A gRPC stack would bring dozens
/// of crates for these two messages.)
pub mod grpc {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: u32, failure: u32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_emit_only_on_change() {
        // Readiness: unknown until the first success; three failures to flip back.
        let mut readiness = Thresholds::new(&probe(1, 3), None);
        let seen: Vec<Option<bool>> = [true, true, false, false, false, false, true]
            .into_iter()
            .map(|ok| readiness.observe(ok))
            .collect();
        assert_eq!(
            seen,
            [Some(true), None, None, None, Some(false), None, Some(true)]
        );
        // Two successes needed: one is not enough.
        let mut strict = Thresholds::new(&probe(2, 1), Some(false));
        assert_eq!(strict.observe(true), None);
        assert_eq!(strict.observe(true), Some(true));
        // Liveness starts alive: successes say nothing new.
        let mut liveness = Thresholds::new(&probe(1, 2), Some(true));
        assert_eq!(liveness.observe(true), None);
        assert_eq!(liveness.observe(false), None);
        assert_eq!(liveness.observe(false), Some(false));
    }

    #[test]
    fn redirects_are_followed_only_on_the_same_host() {
        let from = ProbeUrl {
            https: false,
            host: "10.0.0.1".into(),
            port: 8080,
            path: "/healthz".into(),
        };
        let to = |https, port, path: &str| ProbeUrl {
            https,
            host: "10.0.0.1".into(),
            port,
            path: path.into(),
        };
        assert_eq!(redirect(&from, "/next"), Some(to(false, 8080, "/next")));
        assert_eq!(
            redirect(&from, "http://10.0.0.1:8080/x"),
            Some(to(false, 8080, "/x"))
        );
        // The same host over TLS, on its default port: followed, as the kubelet does.
        assert_eq!(
            redirect(&from, "https://10.0.0.1/secure"),
            Some(to(true, 443, "/secure"))
        );
        assert_eq!(redirect(&from, "http://10.0.0.1"), Some(to(false, 80, "/")));
        assert_eq!(redirect(&from, "http://elsewhere:8080/x"), None);
        assert_eq!(redirect(&from, "ftp://10.0.0.1/x"), None);
        assert_eq!(redirect(&from, "http://10.0.0.1:http/x"), None, "bad port");
        assert_eq!(to(true, 443, "/a").to_string(), "https://10.0.0.1:443/a");
    }

    #[test]
    fn grpc_messages_match_the_wire_format() {
        // protoc --encode=grpc.health.v1.HealthCheckRequest: service "web".
        assert_eq!(grpc::encode_request("web"), [0x0a, 0x03, b'w', b'e', b'b']);
        assert_eq!(grpc::encode_request(""), Vec::<u8>::new());
        assert_eq!(grpc::frame(&[0x08, 0x01]), [0, 0, 0, 0, 2, 0x08, 0x01]);
        assert_eq!(
            grpc::unframe(&[0, 0, 0, 0, 2, 0x08, 0x01]),
            Some(&[0x08, 0x01][..])
        );
        assert_eq!(grpc::decode_response(&[0x08, 0x01]), Some(1));
        assert_eq!(grpc::decode_response(&[]), Some(0), "empty means UNKNOWN");
        // An unknown field before the status is skipped.
        assert_eq!(
            grpc::decode_response(&[0x12, 0x01, b'x', 0x08, 0x02]),
            Some(2)
        );
        assert_eq!(grpc::decode_response(&[0x08]), None, "truncated");
        assert_eq!(
            grpc::unframe(&[1, 0, 0, 0, 0]),
            None,
            "compressed frames are refused"
        );
    }

    /// A TLS server on loopback answering every request with `status`. Its certificate is
    /// self-signed for a name that is not the address dialled, as a pod's usually is.
    async fn tls_server(status: u16) -> u16 {
        let certified = rcgen::generate_simple_self_signed(vec!["web.default.svc".to_owned()])
            .expect("a self-signed certificate");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        serve_loopback(move |stream| {
            let acceptor = acceptor.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut session) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = [0u8; 1024];
                let _ = session.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = session.write_all(response.as_bytes()).await;
                let _ = session.shutdown().await;
            }
        })
        .await
    }

    /// Listens on a loopback port and hands every connection to `serve`, on a task of its own.
    async fn serve_loopback<F, Fut>(serve: F) -> u16
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        port
    }

    fn http_action(port: u16, scheme: Scheme) -> HttpGetAction {
        HttpGetAction {
            path: Some("/healthz".into()),
            port: keel_api::IntOrString::Int(port.try_into().expect("a port above 0")),
            host: None,
            scheme,
            http_headers: Vec::new(),
        }
    }

    /// A container whose pod IP is loopback, where the tests' servers listen.
    fn loopback_target() -> Target {
        Target {
            pod_ip: Ipv4Addr::LOCALHOST,
            container: serde_yaml::from_str("{name: app, image: busybox}").expect("a container"),
            exe: PathBuf::new(),
            spec_path: PathBuf::new(),
            pid: 0,
        }
    }

    #[tokio::test]
    async fn https_probes_speak_tls_without_verifying_the_certificate() {
        let healthy = tls_server(200).await;
        let target = loopback_target();
        let action = http_action(healthy, Scheme::Https);
        assert_eq!(http_get(&action, &target).await, Outcome::Success);

        let failing = tls_server(503).await;
        let action = http_action(failing, Scheme::Https);
        assert_eq!(
            http_get(&action, &target).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );

        // Plain HTTP to a TLS server, and TLS to a port that does not speak it, both fail.
        let action = http_action(healthy, Scheme::Http);
        assert!(matches!(
            http_get(&action, &target).await,
            Outcome::Failure(_)
        ));
        let plain_port = serve_loopback(|mut stream| async move {
            use tokio::io::AsyncWriteExt;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        })
        .await;
        let action = http_action(plain_port, Scheme::Https);
        match http_get(&action, &target).await {
            Outcome::Failure(why) => assert!(why.starts_with("Get \"https://127.0.0.1:"), "{why}"),
            Outcome::Success => panic!("TLS to a plain HTTP server succeeded"),
        }
    }

    /// A gRPC health server on loopback, speaking HTTP/2 through hyper's server: the whole
    /// server is SERVING, service "web" NOT_SERVING, and any other service is answered with
    /// a trailers-only NOT_FOUND, as grpc-go's health server does.
    async fn grpc_health_server() -> u16 {
        use http_body_util::{combinators::BoxBody, StreamBody};
        use hyper::body::Frame;

        async fn answer(
            request: hyper::Request<hyper::body::Incoming>,
        ) -> Result<hyper::Response<BoxBody<Bytes, std::convert::Infallible>>, hyper::Error>
        {
            assert_eq!(request.uri().path(), grpc::CHECK_PATH);
            assert_eq!(
                request.headers()[hyper::header::CONTENT_TYPE],
                "application/grpc"
            );
            let body = request.into_body().collect().await?.to_bytes();
            let message = grpc::unframe(&body).expect("one framed request").to_vec();
            let status = if message.is_empty() {
                1
            } else if message == grpc::encode_request("web") {
                2
            } else {
                let response = hyper::Response::builder()
                    .header(hyper::header::CONTENT_TYPE, "application/grpc")
                    .header("grpc-status", "5")
                    .body(BoxBody::new(Empty::new().map_err(|never| match never {})))
                    .expect("a response");
                return Ok(response);
            };
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            let frames = futures::stream::iter([
                Ok(Frame::data(Bytes::from(grpc::frame(&[0x08, status])))),
                Ok(Frame::trailers(trailers)),
            ]);
            Ok(hyper::Response::builder()
                .header(hyper::header::CONTENT_TYPE, "application/grpc")
                .body(BoxBody::new(StreamBody::new(frames)))
                .expect("a response"))
        }

        serve_loopback(|stream| async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .await;
        })
        .await
    }

    #[tokio::test]
    async fn grpc_probes_read_the_health_service_over_http2() {
        let port = grpc_health_server().await;
        let target = loopback_target();
        let probe = |service: Option<&str>| GrpcAction {
            port: port.try_into().expect("a port above 0"),
            service: service.map(str::to_owned),
        };
        assert_eq!(grpc_health(&probe(None), &target).await, Outcome::Success);
        assert_eq!(
            grpc_health(&probe(Some("web")), &target).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        match grpc_health(&probe(Some("elsewhere")), &target).await {
            Outcome::Failure(why) => assert!(why.contains("rpc error: code = 5"), "{why}"),
            Outcome::Success => panic!("an unknown service passed"),
        }
        // Nobody listening: a failure that names the address.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let closed_port = closed.local_addr().expect("address").port();
        drop(closed);
        let nobody = GrpcAction {
            port: closed_port.try_into().expect("a port above 0"),
            service: None,
        };
        match grpc_health(&nobody, &target).await {
            Outcome::Failure(why) => {
                assert!(why.contains(&format!("127.0.0.1:{closed_port}")), "{why}")
            }
            Outcome::Success => panic!("a closed port passed"),
        }
    }
}
