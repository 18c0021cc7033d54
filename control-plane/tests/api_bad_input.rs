//! Hostile and malformed requests to the API server, over raw HTTP: each gets a clear
//! `metav1.Status` (the right code, reason and field), nothing refused is stored, the server
//! stays healthy, and its metrics count what happened under kube-apiserver's names.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use support::api::{ApiServer, Backend};

struct Response {
    code: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One HTTP/1.1 request on its own connection. `body` is sent with Content-Length, or chunked
/// when `chunked` (a client that does not say its size up front).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    chunked: bool,
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\nContent-Type: {content_type}\r\n");
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    // The server may answer (413) and close before the whole body is sent: ignore write errors.
    let _ = stream.write_all(head.as_bytes());
    if chunked {
        for chunk in body.chunks(64 * 1024) {
            if stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || stream.write_all(chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
    } else {
        let _ = stream.write_all(body);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        code,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 || data.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[(end + 4 + size).min(data.len())..];
    }
    out
}

fn json_request(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Response {
    request(
        addr,
        method,
        path,
        "application/json",
        body.to_string().as_bytes(),
        false,
    )
}

fn expect(response: &Response, code: u16, reason: &str, words: &str) {
    let status = response.status();
    assert_eq!(response.code, code, "{status}");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    assert_eq!(status["code"], code, "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{message:?} should say {words:?}");
}

const MAPS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn hostile_requests_get_statuses_and_change_nothing() {
    let server = ApiServer::start(Backend::Keel, &["--max-requests-inflight", "1"]);
    let addr = server.api;
    // The server made `default` at start, as kube-apiserver does.
    let created = json_request(
        addr,
        "POST",
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "default"}}),
    );
    assert_eq!(created.code, 409);
    let ok = json_request(
        addr,
        "POST",
        MAPS,
        &json!({"metadata": {"name": "kept"}, "data": {"a": "b"}}),
    );
    assert_eq!(ok.code, 201, "{}", String::from_utf8_lossy(&ok.body));
    let kept_rv = ok.status()["metadata"]["resourceVersion"].clone();

    // Size, nesting, encoding, shape.
    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(4 << 20)
    );
    expect(
        &request(
            addr,
            "POST",
            MAPS,
            "application/json",
            big.as_bytes(),
            false,
        ),
        413,
        "RequestEntityTooLarge",
        "limit is 3145728",
    );
    expect(
        &request(addr, "POST", MAPS, "application/json", big.as_bytes(), true),
        413,
        "RequestEntityTooLarge",
        "limit is",
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    expect(
        &request(
            addr,
            "POST",
            MAPS,
            "application/json",
            deep.as_bytes(),
            false,
        ),
        400,
        "BadRequest",
        "recursion limit",
    );
    let bad_utf8 = b"{\"metadata\":{\"name\":\"u\"},\"data\":{\"a\":\"\xff\xfe\"}}";
    expect(
        &request(addr, "POST", MAPS, "application/json", bad_utf8, false),
        400,
        "BadRequest",
        "could not be decoded",
    );
    expect(
        &json_request(addr, "POST", MAPS, &json!([1, 2])),
        400,
        "BadRequest",
        "must be a JSON object",
    );
    expect(
        &json_request(
            addr,
            "POST",
            MAPS,
            &json!({"kind": "Secret", "metadata": {"name": "s"}}),
        ),
        400,
        "BadRequest",
        "does not match the expected kind",
    );
    expect(
        &json_request(
            addr,
            "POST",
            MAPS,
            &json!({"apiVersion": "v2", "metadata": {"name": "s"}}),
        ),
        400,
        "BadRequest",
        "API version in the data (v2)",
    );
    expect(
        &json_request(
            addr,
            "POST",
            MAPS,
            &json!({"metadata": {"name": "t"}, "data": {"a": 1}}),
        ),
        400,
        "BadRequest",
        "at data.a",
    );
    expect(
        &request(
            addr,
            "POST",
            MAPS,
            "application/vnd.kubernetes.protobuf",
            b"k8s\0junk",
            false,
        ),
        400,
        "BadRequest",
        "the protobuf body could not be decoded",
    );
    expect(
        &request(addr, "POST", MAPS, "application/cbor", b"\xa0", false),
        415,
        "UnsupportedMediaType",
        "application/cbor",
    );

    // fieldValidation: refused with the field under Strict, a Warning header under Warn.
    let unknown = json!({"metadata": {"name": "w", "bogus": 1}, "zzz": true});
    let strict = json_request(
        addr,
        "POST",
        &format!("{MAPS}?fieldValidation=Strict"),
        &unknown,
    );
    expect(
        &strict,
        400,
        "BadRequest",
        "unknown field \"metadata.bogus\"",
    );
    assert_eq!(
        strict.status()["details"]["causes"][0]["field"],
        "metadata.bogus"
    );
    let duplicate = br#"{"metadata":{"name":"d","name":"e"}}"#;
    expect(
        &request(
            addr,
            "POST",
            &format!("{MAPS}?fieldValidation=Strict"),
            "application/json",
            duplicate,
            false,
        ),
        400,
        "BadRequest",
        "duplicate field \"metadata.name\"",
    );
    let warned = json_request(
        addr,
        "POST",
        &format!("{MAPS}?fieldValidation=Warn"),
        &unknown,
    );
    assert_eq!(warned.code, 201);
    assert!(
        warned
            .header("warning")
            .iter()
            .any(|w| w.contains("unknown field \\\"zzz\\\"") || w.contains("unknown field 'zzz'")),
        "{:?}",
        warned.headers
    );
    expect(
        &json_request(
            addr,
            "POST",
            &format!("{MAPS}?fieldValidation=Loud"),
            &unknown,
        ),
        400,
        "BadRequest",
        "fieldValidation parameter unsupported",
    );

    // Hostile names on every kind that has a name rule: refused at metadata.name.
    for (path, name) in [
        (MAPS.to_owned(), "a\"b"),
        (
            "/api/v1/namespaces/default/services".to_owned(),
            "x\n-j ACCEPT",
        ),
        ("/api/v1/namespaces".to_owned(), "UPPER"),
        (
            "/apis/apps/v1/namespaces/default/deployments".to_owned(),
            &*"d".repeat(300),
        ),
        ("/api/v1/namespaces/default/pods".to_owned(), "pod/../x"),
    ] {
        let response = json_request(addr, "POST", &path, &json!({"metadata": {"name": name}}));
        expect(&response, 422, "Invalid", "metadata.name");
        assert_eq!(
            response.status()["details"]["causes"][0]["field"],
            "metadata.name",
            "{path}"
        );
    }

    // Specs Kubernetes refuses: refused with every field named.
    let podless = json_request(
        addr,
        "POST",
        "/api/v1/namespaces/default/pods",
        &json!({"metadata": {"name": "p"}, "spec": {"containers": []}}),
    );
    expect(&podless, 422, "Invalid", "spec.containers: Required value");
    let astray = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 0}]}]}}}});
    let response = json_request(
        addr,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        &astray,
    );
    expect(
        &response,
        422,
        "Invalid",
        "`selector` does not match template `labels`",
    );
    let fields: Vec<String> = response.status()["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["field"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        fields,
        [
            "spec.template.metadata.labels",
            "spec.template.spec.containers[0].ports[0].containerPort"
        ]
    );

    // Query parameters, paths, methods.
    expect(
        &request(
            addr,
            "GET",
            &format!("{MAPS}?limit=abc"),
            "application/json",
            b"",
            false,
        ),
        400,
        "BadRequest",
        "limit",
    );
    expect(
        &request(
            addr,
            "GET",
            &format!("{MAPS}?labelSelector=a%20in%20("),
            "application/json",
            b"",
            false,
        ),
        400,
        "BadRequest",
        "unable to parse requirement",
    );
    expect(
        &request(
            addr,
            "GET",
            &format!("{MAPS}?fieldSelector=data.a%3Db"),
            "application/json",
            b"",
            false,
        ),
        400,
        "BadRequest",
        "data.a",
    );
    expect(
        &request(
            addr,
            "GET",
            &format!("{MAPS}?continue=garbage"),
            "application/json",
            b"",
            false,
        ),
        400,
        "BadRequest",
        "continue",
    );
    expect(
        &request(
            addr,
            "GET",
            &format!("{MAPS}?resourceVersionMatch=Sometime&resourceVersion=1"),
            "application/json",
            b"",
            false,
        ),
        400,
        "BadRequest",
        "resourceVersionMatch",
    );
    expect(
        &request(
            addr,
            "GET",
            "/api/v1/widgets",
            "application/json",
            b"",
            false,
        ),
        404,
        "NotFound",
        "could not find the requested resource",
    );
    expect(
        &request(addr, "PUT", MAPS, "application/json", b"{}", false),
        405,
        "MethodNotAllowed",
        "does not allow",
    );

    // Writes that lose a race or malformed patches.
    let stale = json_request(
        addr,
        "PUT",
        &format!("{MAPS}/kept"),
        &json!({"metadata": {"name": "kept", "resourceVersion": "1"}, "data": {"a": "stale"}}),
    );
    expect(&stale, 409, "Conflict", "the object has been modified");
    let patch = |content_type: &str, body: &str| {
        request(
            addr,
            "PATCH",
            &format!("{MAPS}/kept"),
            content_type,
            body.as_bytes(),
            false,
        )
    };
    expect(
        &patch(
            "application/json-patch+json",
            r#"[{"op":"explode","path":"/data"}]"#,
        ),
        400,
        "BadRequest",
        "JSON patch",
    );
    expect(
        &patch(
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/data/nope"}]"#,
        ),
        400,
        "BadRequest",
        "could not be applied",
    );
    expect(
        &patch("application/merge-patch+json", "[1]"),
        400,
        "BadRequest",
        "must be a JSON object",
    );
    expect(
        &patch(
            "application/strategic-merge-patch+json",
            r#"{"$patch":"explode"}"#,
        ),
        400,
        "BadRequest",
        "strategic merge patch",
    );
    // Server-side apply: a manager is required, and the configuration must be the URL's
    // object without a managedFields record of its own.
    expect(
        &patch("application/apply-patch+yaml", "data: {}"),
        422,
        "Invalid",
        "fieldManager: Required value: is required for apply patch",
    );
    let apply = |body: &str| {
        request(
            addr,
            "PATCH",
            &format!("{MAPS}/kept?fieldManager=hostile"),
            "application/apply-patch+yaml",
            body.as_bytes(),
            false,
        )
    };
    expect(&apply("data: [1"), 400, "BadRequest", "YAML");
    expect(&apply("[1]"), 400, "BadRequest", "must be an object");
    expect(
        &apply("kind: Pod\nmetadata: {name: kept}"),
        400,
        "BadRequest",
        "does not match the expected kind",
    );
    expect(
        &apply("metadata: {name: other}"),
        400,
        "BadRequest",
        "does not match the name on the URL",
    );
    // The namespace is checked where every update and create checks it.
    expect(
        &apply("metadata: {name: kept, namespace: elsewhere}"),
        400,
        "BadRequest",
        "does not match the namespace sent on the request",
    );
    expect(
        &request(
            addr,
            "PATCH",
            &format!("{MAPS}/not-yet?fieldManager=hostile"),
            "application/apply-patch+yaml",
            b"metadata: {name: not-yet, namespace: elsewhere}",
            false,
        ),
        400,
        "BadRequest",
        "does not match the namespace sent on the request",
    );
    expect(
        &apply("metadata: {name: kept, managedFields: [{manager: x}]}"),
        400,
        "BadRequest",
        "metadata.managedFields must be nil",
    );
    expect(
        &request(
            addr,
            "PATCH",
            &format!("{MAPS}/kept?force=true"),
            "application/merge-patch+json",
            b"{}",
            false,
        ),
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
    );
    expect(
        &request(
            addr,
            "PATCH",
            &format!("{MAPS}/kept?fieldManager=a%E2%80%8Bb"),
            "application/apply-patch+yaml",
            b"data: {x: y}",
            false,
        ),
        422,
        "Invalid",
        r#"fieldManager: Invalid value: "a\u200bb": invalid character U+200B (at position 1)"#,
    );
    expect(
        &request(
            addr,
            "PATCH",
            &format!("{MAPS}/kept?fieldManager={}", "m".repeat(129)),
            "application/apply-patch+yaml",
            b"data: {x: y}",
            false,
        ),
        422,
        "Invalid",
        "fieldManager: Too long: may not be more than 128 bytes",
    );
    expect(
        &patch("text/plain", "x"),
        415,
        "UnsupportedMediaType",
        "text/plain",
    );

    // At most one read in flight: a list waiting for a future revision holds the only slot.
    let holder = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            &format!("{MAPS}?resourceVersion=999999999"),
            "application/json",
            b"",
            false,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let refused = request(addr, "GET", MAPS, "application/json", b"", false);
    expect(&refused, 429, "TooManyRequests", "Too many requests");
    assert_eq!(refused.header("retry-after"), ["1"]);
    expect(
        &holder.join().expect("holder"),
        504,
        "Timeout",
        "Too large resource version",
    );

    // Nothing refused was stored; the kept object is untouched; the server is healthy.
    let list = request(addr, "GET", MAPS, "application/json", b"", false).status();
    let names: Vec<&str> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["kept", "w"], "{list}");
    assert_eq!(list["items"][0]["metadata"]["resourceVersion"], kept_rv);
    assert_eq!(server.kubectl_ok(&["get", "--raw", "/readyz"]), "ok");

    // Metrics under kube-apiserver's names, counting the refusals by code.
    let metrics =
        String::from_utf8_lossy(&request(addr, "GET", "/metrics", "text/plain", b"", false).body)
            .into_owned();
    for needle in [
        "apiserver_request_total{verb=\"POST\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"namespace\",component=\"apiserver\",code=\"413\"} 2",
        "apiserver_request_total{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"namespace\",component=\"apiserver\",code=\"429\"} 1",
        "apiserver_request_duration_seconds_bucket{",
        "apiserver_storage_objects{resource=\"configmaps\"} 2",
        "apiserver_registered_watchers{",
        "apiserver_current_inflight_requests{",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
}
