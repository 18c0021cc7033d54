use super::{
    grpc::grpc_health,
    http::{http_get, redirect, ProbeUrl},
    *,
};

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
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
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
            let response =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
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
        container: serde_yaml_ng::from_str("{name: app, image: busybox}").expect("a container"),
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
    ) -> Result<hyper::Response<BoxBody<Bytes, std::convert::Infallible>>, hyper::Error> {
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
