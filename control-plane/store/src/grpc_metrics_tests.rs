use std::convert::Infallible;
use std::future::{ready, Ready};
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, StreamBody};

use super::*;

/// The labels of a request path (`/etcdserverpb.KV/Put`), when keel serves that method.
fn call_labels(path: &str) -> Option<CallLabels> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    METHODS
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map(|&(grpc_service, grpc_method, grpc_type)| CallLabels {
            grpc_type,
            grpc_service,
            grpc_method,
        })
}

/// The methods `rpc.proto` declares, as (service, method, type).
fn declared_methods() -> Vec<(String, String, &'static str)> {
    let mut methods = Vec::new();
    let mut service = None;
    for line in include_str!("../proto/rpc.proto").lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("service ") {
            let name = rest.trim_end_matches('{').trim();
            service = Some(format!("etcdserverpb.{name}"));
        } else if let Some(rest) = line.strip_prefix("rpc ") {
            let (name, signature) = rest.split_once('(').expect("an rpc line has a request");
            let (request, response) = signature
                .split_once("returns")
                .expect("an rpc line has a response");
            let kind = match (request.contains("stream "), response.contains("stream ")) {
                (false, false) => UNARY,
                (false, true) => SERVER_STREAM,
                (true, true) => BIDI_STREAM,
                (true, false) => "client_stream",
            };
            let service = service.clone().expect("an rpc inside a service");
            methods.push((service, name.trim().to_owned(), kind));
        }
    }
    methods
}

#[test]
fn every_method_keel_serves_is_labelled_with_its_type() {
    let mut declared = declared_methods();
    let mut labelled: Vec<(String, String, &'static str)> = METHODS
        .iter()
        .map(|(s, m, t)| (s.to_string(), m.to_string(), *t))
        .collect();
    declared.sort();
    labelled.sort();
    assert!(declared.len() > 20, "rpc.proto was not read: {declared:?}");
    assert_eq!(declared, labelled);
}

#[test]
fn only_paths_of_served_methods_are_counted() {
    let metrics = GrpcMetrics::default();
    assert!(metrics.start(&request("/etcdserverpb.KV/Put")).is_some());
    assert!(metrics
        .start(&request("/etcdserverpb.Watch/Watch?x=1"))
        .is_some());
    // As long as a URI may be (`http` refuses 64 KiB and more).
    let long = format!("/etcdserverpb.KV/{}", "P".repeat(60_000));
    for hostile in [
        "/",
        "//",
        "/etcdserverpb.KV",
        "/etcdserverpb.KV/",
        "/etcdserverpb.KV/Nope",
        "/etcdserverpb.KV/Put/more",
        "/etcdserverpb.kv/put",
        "/keel.raft.Peer/AppendEntries",
        long.as_str(),
    ] {
        assert!(metrics.start(&request(hostile)).is_none(), "{hostile:.60}");
    }
}

#[test]
fn a_served_method_is_labelled_by_its_path() {
    let put = call_labels("/etcdserverpb.KV/Put").expect("Put is served");
    assert_eq!(
        (put.grpc_type, put.grpc_service, put.grpc_method),
        ("unary", "etcdserverpb.KV", "Put")
    );
    let watch = call_labels("/etcdserverpb.Watch/Watch").expect("Watch is served");
    assert_eq!(watch.grpc_type, "bidi_stream");
    assert_eq!(call_labels("/etcdserverpb.KV/Nope"), None);
}

fn code_name(status: &[u8]) -> &'static str {
    CODES[code_of(Some(status))]
}

#[test]
fn status_codes_are_named_as_go_grpc_names_them() {
    assert_eq!(code_name(b"0"), "OK");
    assert_eq!(code_name(b"1"), "Canceled");
    assert_eq!(code_name(b"11"), "OutOfRange");
    assert_eq!(code_name(b"14"), "Unavailable");
    assert_eq!(code_name(b"16"), "Unauthenticated");
    assert_eq!(code_name(b"04"), "DeadlineExceeded");
    for unknown in [
        &b"2"[..],
        b"17",
        b"99",
        b"255",
        b"014",
        b"-1",
        b"+5",
        b" 5",
        b"5 ",
        b"",
        b"OK",
        b"\xff\xfe",
    ] {
        assert_eq!(code_name(unknown), "Unknown", "{unknown:?}");
    }
    assert_eq!(CODES[code_of(None)], "Unknown");
}

#[test]
fn a_grpc_timeout_is_read_as_grpc_writes_it() {
    assert_eq!(grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
    assert_eq!(grpc_timeout(b"5S"), Some(Duration::from_secs(5)));
    assert_eq!(grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
    assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
    assert_eq!(grpc_timeout(b"7u"), Some(Duration::from_micros(7)));
    assert_eq!(
        grpc_timeout(b"99999999n"),
        Some(Duration::from_nanos(99_999_999))
    );
    for malformed in [
        &b""[..],
        b"m",
        b"100",
        b"100x",
        b"-1m",
        b"+1m",
        b"1 m",
        b"123456789m",
        b"\xffm",
    ] {
        assert_eq!(grpc_timeout(malformed), None, "{malformed:?}");
    }
}

type TestBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A service that answers every request with the same status header, data frames and
/// trailers.
#[derive(Clone)]
struct Answer {
    status_header: Option<&'static str>,
    data: Vec<&'static [u8]>,
    trailer_status: Option<&'static str>,
}

impl Answer {
    /// A trailers-only response: the status in the headers, no body.
    fn error_at_once(status: &'static str) -> Self {
        Self {
            status_header: Some(status),
            data: Vec::new(),
            trailer_status: None,
        }
    }
}

impl Service<http::Request<()>> for Answer {
    type Response = http::Response<TestBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = self
            .data
            .iter()
            .map(|d| Ok(Frame::data(Bytes::from_static(d))))
            .collect();
        if let Some(status) = self.trailer_status {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static(status));
            frames.push(Ok(Frame::trailers(trailers)));
        }
        let mut response = http::Response::new(StreamBody::new(stream::iter(frames)));
        if let Some(status) = self.status_header {
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static(status));
        }
        ready(Ok(response))
    }
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(format!("http://keel{path}"))
        .body(())
        .expect("a request")
}

/// The series as a scrape reads them.
fn exposition(metrics: &GrpcMetrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
    text
}

fn labels(path: &str) -> CallLabels {
    call_labels(path).expect("a served method")
}

#[tokio::test]
async fn a_call_counts_once_with_the_code_of_its_trailers() {
    let metrics = GrpcMetrics::default();
    let mut service = metrics.layer().layer(Answer {
        status_header: None,
        data: vec![b"x"],
        trailer_status: Some("0"),
    });
    let response = service
        .call(request("/etcdserverpb.KV/Put"))
        .await
        .expect("answered");
    let put = labels("/etcdserverpb.KV/Put");
    assert_eq!(metrics.started.get_or_create(&put).get(), 1);
    assert_eq!(
        metrics.handled_count(put, "OK"),
        0,
        "counted before the response ended"
    );
    let body = response.into_body().collect().await.expect("the body");
    assert!(body.trailers().is_some());
    assert_eq!(metrics.handled_count(put, "OK"), 1);
    assert_eq!(metrics.handled_count(put, "Canceled"), 0, "counted twice");
    let text = exposition(&metrics);
    let timed = "grpc_server_handling_seconds_count{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\"} 1";
    assert!(text.contains(timed), "{text}");

    let mut failing = metrics.layer().layer(Answer {
        status_header: None,
        data: Vec::new(),
        trailer_status: Some("11"),
    });
    let range = labels("/etcdserverpb.KV/Range");
    let response = failing
        .call(request("/etcdserverpb.KV/Range"))
        .await
        .expect("answered");
    response.into_body().collect().await.expect("the body");
    assert_eq!(metrics.handled_count(range, "OutOfRange"), 1);
}

#[tokio::test]
async fn an_error_answered_at_once_counts_with_the_code_of_its_headers() {
    let metrics = GrpcMetrics::default();
    let mut service = metrics.layer().layer(Answer::error_at_once("14"));
    let txn = labels("/etcdserverpb.KV/Txn");
    // Read to its (empty) end.
    let response = service
        .call(request("/etcdserverpb.KV/Txn"))
        .await
        .expect("answered");
    response.into_body().collect().await.expect("the body");
    assert_eq!(metrics.handled_count(txn, "Unavailable"), 1);
    // Never polled (a server may see the empty body's end without asking).
    drop(
        service
            .call(request("/etcdserverpb.KV/Txn"))
            .await
            .expect("answered"),
    );
    assert_eq!(metrics.handled_count(txn, "Unavailable"), 2);
    assert_eq!(metrics.handled_count(txn, "Canceled"), 0);
}

#[tokio::test]
async fn a_stream_the_client_left_counts_as_canceled() {
    let metrics = GrpcMetrics::default();
    let mut service = metrics.layer().layer(Answer {
        status_header: None,
        data: vec![b"event", b"event"],
        trailer_status: Some("0"),
    });
    let watch = labels("/etcdserverpb.Watch/Watch");
    let response = service
        .call(request("/etcdserverpb.Watch/Watch"))
        .await
        .expect("answered");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert!(first.is_data());
    // Open: started, not handled (the dashboard's open watch streams).
    assert_eq!(metrics.started.get_or_create(&watch).get(), 1);
    assert_eq!(metrics.handled_count(watch, "Canceled"), 0);
    drop(body);
    assert_eq!(metrics.handled_count(watch, "Canceled"), 1);
    assert_eq!(metrics.handled_count(watch, "OK"), 0);
}

#[tokio::test]
async fn a_path_keel_does_not_serve_makes_no_series() {
    let metrics = GrpcMetrics::default();
    let mut service = metrics.layer().layer(Answer::error_at_once("12"));
    for path in ["/etcdserverpb.KV/Nope", "/attacker.Service/Method", "/"] {
        let response = service.call(request(path)).await.expect("answered");
        response.into_body().collect().await.expect("the body");
    }
    let text = exposition(&metrics);
    for unserved in [
        "Nope",
        "Method",
        "grpc_service=\"attacker",
        "grpc_method=\"\"",
    ] {
        assert!(!text.contains(unserved), "{unserved} in {text}");
    }
    // Every served method has its series, at zero, with every code.
    let zero = "grpc_server_handled_total{grpc_type=\"bidi_stream\",grpc_service=\"etcdserverpb.Watch\",grpc_method=\"Watch\",grpc_code=\"DataLoss\"} 0";
    assert!(text.contains(zero), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
        .count();
    assert_eq!(series, METHODS.len() * CODES.len());
}

/// A service whose answer never comes.
#[derive(Clone)]
struct Never;

impl Service<http::Request<()>> for Never {
    type Response = http::Response<TestBody>;
    type Error = Infallible;
    type Future = std::future::Pending<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::pending()
    }
}

#[tokio::test]
async fn a_call_given_up_before_its_answer_counts_as_canceled_or_past_its_deadline() {
    let metrics = GrpcMetrics::default();
    let mut service = metrics.layer().layer(Never);
    let put = labels("/etcdserverpb.KV/Put");
    // The client reset the stream (hyper drops the handler's future).
    let waiting = service.call(request("/etcdserverpb.KV/Put"));
    let gave_up = tokio::time::timeout(Duration::from_millis(5), waiting).await;
    assert!(gave_up.is_err());
    assert_eq!(metrics.handled_count(put, "Canceled"), 1);
    // Its deadline ran out (tonic's timeout drops the future and answers for it).
    let mut timed = request("/etcdserverpb.KV/Put");
    timed
        .headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("1m"));
    let waiting = service.call(timed);
    let gave_up = tokio::time::timeout(Duration::from_millis(20), waiting).await;
    assert!(gave_up.is_err());
    assert_eq!(metrics.handled_count(put, "DeadlineExceeded"), 1);
    assert_eq!(metrics.handled_count(put, "Canceled"), 1);
    assert_eq!(metrics.started.get_or_create(&put).get(), 2);
}

/// The `_sum` of a method's handling time in `text`.
fn handling_sum(text: &str, method: &str) -> f64 {
    text.lines()
        .find(|l| {
            l.starts_with("grpc_server_handling_seconds_sum{")
                && l.contains(&format!("grpc_method=\"{method}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no handling time of {method} in {text}"))
}

#[tokio::test]
async fn a_unary_call_is_timed_to_its_answer_and_a_stream_to_its_end() {
    let metrics = GrpcMetrics::default();
    let mut service = metrics.layer().layer(Answer {
        status_header: None,
        data: vec![b"x"],
        trailer_status: Some("0"),
    });
    let slow_reader = Duration::from_millis(60);
    for path in ["/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch"] {
        let response = service.call(request(path)).await.expect("answered");
        // A client slow to read the answer.
        tokio::time::sleep(slow_reader).await;
        response.into_body().collect().await.expect("the body");
    }
    let text = exposition(&metrics);
    let range = handling_sum(&text, "Range");
    let watch = handling_sum(&text, "Watch");
    assert!(range < slow_reader.as_secs_f64(), "Range took {range}");
    assert!(watch >= slow_reader.as_secs_f64(), "Watch took {watch}");
}
