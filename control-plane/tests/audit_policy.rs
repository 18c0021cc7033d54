//! `--audit-policy-file`: a member whose policy records secrets at Metadata, drops configmaps
//! and `get /healthz`, and records `/version` without `RequestReceived`; plain HTTP with curl
//! (the loopback listener, tokens for the other users), then the log read line by line. And
//! the start-up refusals: an invalid policy, and a policy without a log.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, Cluster, BINARY};

const TOKENS: &str = "alice-token-0123456789,alice,1001\n";

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  verbs: [get]
  nonResourceURLs: [/healthz]
- level: None
  resources:
  - group: ""
    resources: [configmaps]
- level: Metadata
  resources:
  - group: ""
    resources: [secrets]
- level: Metadata
  nonResourceURLs: [/healthz, /version]
  omitStages: [RequestReceived]
- level: Request
  resources:
  - group: ""
    resources: [pods/exec]
"#;

/// curl against the plain listener: the HTTP code (0 if none came).
fn curl(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> u16 {
    let mut command = Command::new("curl");
    command.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ]);
    command.args(["-X", method, url]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = body {
        command.args(["-H", "Content-Type: application/json", "--data", body]);
    }
    let out = command.output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a JSON event"))
        .collect()
}

fn path_of(event: &Value) -> &str {
    let uri = event["requestURI"].as_str().unwrap_or("");
    uri.split('?').next().unwrap_or("")
}

#[test]
fn the_policy_decides_what_the_log_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).expect("token file");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy file");
    let log = dir.path().join("audit.log");
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let secure = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cluster = Cluster::loopback(
        1,
        &[
            "--listen-api",
            &secure.to_string(),
            "--insecure-listen-api",
            &api.to_string(),
            "--token-auth-file",
            &tokens.display().to_string(),
            "--audit-log-path",
            &log.display().to_string(),
            "--audit-policy-file",
            &policy.display().to_string(),
            "--disable-scheduler",
            "--disable-controllers",
        ],
    );
    let base = format!("http://{api}");
    // Serving is logged once the default namespaces exist.
    let deadline = Instant::now() + Duration::from_secs(30);
    let output = loop {
        let output = cluster.members[0].output().join("\n");
        if output.contains("Kubernetes API serving") {
            break output;
        }
        assert!(Instant::now() < deadline, "the API never served:\n{output}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(curl("GET", &format!("{base}/readyz"), None, None), 200);
    assert!(
        output.contains("rules[4].level: Request is recorded at Metadata by keel"),
        "the Request rule is warned about at start-up:\n{output}"
    );

    let ns = format!("{base}/api/v1/namespaces/default");
    let configmap =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}"#;
    assert_eq!(
        curl("POST", &format!("{ns}/configmaps"), None, Some(configmap)),
        201
    );
    assert_eq!(curl("GET", &format!("{ns}/configmaps/c"), None, None), 200);
    let secret =
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"k":"v"}}"#;
    assert_eq!(
        curl("POST", &format!("{ns}/secrets"), None, Some(secret)),
        201
    );
    assert_eq!(curl("GET", &format!("{ns}/secrets"), None, None), 200);
    let alice = Some("alice-token-0123456789");
    assert_eq!(curl("GET", &format!("{ns}/secrets/s"), alice, None), 403);
    let wrong = Some("not-a-token-zzz");
    assert_eq!(curl("GET", &format!("{ns}/secrets"), wrong, None), 401);
    assert_eq!(curl("GET", &format!("{ns}/configmaps"), wrong, None), 401);
    assert_eq!(curl("GET", &format!("{base}/healthz"), None, None), 200);
    assert_eq!(curl("GET", &format!("{base}/version"), None, None), 200);
    // A watch that ends by itself after a second.
    let watch = format!("{ns}/secrets?watch=1&timeoutSeconds=1");
    assert_eq!(curl("GET", &watch, None, None), 200);

    // The writer flushes each batch; wait for the watch's end, the last thing asked.
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = events(&log);
        let watch_done = events
            .iter()
            .any(|e| e["verb"] == "watch" && e["stage"] == "ResponseComplete");
        if watch_done || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!("{text}");
    assert!(!text.contains("not-a-token-zzz") && !text.contains("alice-token"));
    assert!(events.iter().all(|e| e["level"] == "Metadata"));
    // Secrets and /version only: no configmap, no probe.
    let asked: BTreeSet<String> = events
        .iter()
        .map(|e| match e["objectRef"]["resource"].as_str() {
            Some(resource) => resource.to_string(),
            None => path_of(e).to_string(),
        })
        .collect();
    let want: BTreeSet<String> = ["secrets", "/version"].map(String::from).into();
    assert_eq!(asked, want, "{text}");

    // Each request's stages, in order, under its auditID.
    let stages = |f: &dyn Fn(&Value) -> bool| -> Vec<String> {
        let found: Vec<&Value> = events.iter().filter(|e| f(e)).collect();
        let first = found.first().expect("the request is audited");
        assert!(
            found.iter().all(|e| e["auditID"] == first["auditID"]),
            "{found:?}"
        );
        found
            .iter()
            .map(|e| e["stage"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let unsecured = |e: &Value| e["user"]["username"] == "system:unsecured";
    let created = stages(&|e| unsecured(e) && e["verb"] == "create");
    assert_eq!(created, ["RequestReceived", "ResponseComplete"]);
    let listed = stages(&|e| unsecured(e) && e["verb"] == "list");
    assert_eq!(listed, ["RequestReceived", "ResponseComplete"]);
    let watched = stages(&|e| e["verb"] == "watch");
    assert_eq!(
        watched,
        ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    );
    let refused = stages(&|e| e["user"]["username"] == "alice");
    assert_eq!(refused, ["RequestReceived", "ResponseComplete"]);
    // The rule for /version omits RequestReceived.
    let version = stages(&|e| path_of(e) == "/version");
    assert_eq!(version, ["ResponseComplete"]);
    // The failed authentication: one ResponseStarted, no user, the secrets it asked for (a
    // wrong token on configmaps is dropped with them).
    let unauthorized = stages(&|e| e["responseStatus"]["code"] == 401);
    assert_eq!(unauthorized, ["ResponseStarted"]);
    let event = events
        .iter()
        .find(|e| e["responseStatus"]["code"] == 401)
        .expect("the 401");
    assert_eq!(event["user"], serde_json::json!({}));
    assert_eq!(event["verb"], "list");
    assert_eq!(event["objectRef"]["resource"], "secrets");

    // The RequestReceived event is the request alone: no answer, no authorization yet.
    let received = events
        .iter()
        .find(|e| e["stage"] == "RequestReceived" && e["verb"] == "create")
        .expect("RequestReceived of the create");
    assert!(received.get("responseStatus").is_none(), "{received}");
    assert!(received.get("annotations").is_none(), "{received}");
    assert_eq!(
        received["stageTimestamp"],
        received["requestReceivedTimestamp"]
    );
    let complete = events
        .iter()
        .find(|e| e["stage"] == "ResponseComplete" && e["verb"] == "create")
        .expect("ResponseComplete of the create");
    assert_eq!(complete["responseStatus"]["code"], 201);
    assert_eq!(
        complete["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
}

/// Runs the binary, which must exit within 20 s; its status code and output.
fn run_to_exit(args: &[String]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let file = std::fs::File::create(&out).expect("output file");
    let mut child = Command::new(BINARY)
        .args(args)
        .stdout(file.try_clone().expect("stdout"))
        .stderr(file)
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running with {args:?}:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.code(),
        std::fs::read_to_string(&out).unwrap_or_default(),
    )
}

#[test]
fn an_invalid_policy_or_one_without_a_log_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("bad-policy.yaml");
    let text = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Verbose\n- level: None\n  verb: [get]\n";
    std::fs::write(&policy, text).expect("policy file");
    let log = dir.path().join("audit.log");
    let member = |extra: &[String]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--name",
            "m0",
            "--data-dir",
            &dir.path().join("m0").display().to_string(),
            "--listen-client",
            &format!("127.0.0.1:{}", free_port()),
            "--listen-peer",
            &format!("127.0.0.1:{}", free_port()),
            "--listen-api",
            &format!("127.0.0.1:{}", free_port()),
        ]
        .map(String::from)
        .into();
        args.extend(extra.iter().cloned());
        args
    };
    let (code, output) = run_to_exit(&member(&[
        "--audit-log-path".into(),
        log.display().to_string(),
        "--audit-policy-file".into(),
        policy.display().to_string(),
    ]));
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("bad-policy.yaml"), "{output}");
    assert!(
        output.contains(r#"rules[0].level: Unsupported value: "Verbose""#),
        "{output}"
    );
    assert!(
        output.contains(r#"unknown field "rules[1].verb""#),
        "{output}"
    );
    // Nothing was started: no store, no log.
    assert!(!dir.path().join("m0").exists(), "{output}");
    assert!(!log.exists());

    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None}]\n",
    )
    .expect("policy file");
    let (code, output) = run_to_exit(&member(&[
        "--audit-policy-file".into(),
        policy.display().to_string(),
    ]));
    assert_eq!(code, Some(2), "clap's usage error: {output}");
    assert!(output.contains("--audit-log-path"), "{output}");
}
