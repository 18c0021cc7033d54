//! kube-apiserver's audit log (`--audit-log-path`) at level `Metadata`: one
//! `audit.k8s.io/v1` `Event` per request and stage, as JSON lines. Bodies and headers
//! (so `Authorization` and tokens) are never recorded.
//!
//! Stages, as kube-apiserver emits them: an ordinary request, one event at
//! `ResponseComplete`; a long-running one (watch), `ResponseStarted` when the headers go
//! out and `ResponseComplete` when the stream ends, both with the same `audit_id`; a
//! request whose authentication failed (401), one event at `ResponseStarted`, with
//! `"user":{}` and the `Unauthorized` Status.
//!
//! Which requests, and which stages, is the [`policy`] of `--audit-policy-file`: with one,
//! `RequestReceived` is written too unless the policy omits it, as kube-apiserver does.
//! Without one, every request is recorded and `RequestReceived` is not
//! ([`policy::Decision::DEFAULT`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

use crate::auth::UserInfo;

pub mod policy;

/// Events the queue holds before [`AuditLog::record`] starts dropping them.
pub const QUEUE_CAPACITY: usize = 8192;
/// Events the writer takes at once; the file is flushed after each batch.
const BATCH: usize = 1024;

/// The object a resource request targets; empty fields are left out of the event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub api_group: String,
    pub api_version: String,
    pub subresource: String,
}

/// What the front knows about a request, filled in as it goes.
#[derive(Clone, Debug)]
pub struct Record {
    /// `auditID`, shared by every stage of one request ([`new_audit_id`]; kube-apiserver
    /// also returns it in the `Audit-Id` response header).
    pub audit_id: String,
    pub received: jiff::Timestamp,
    /// Path and query as sent.
    pub request_uri: String,
    /// The Kubernetes verb, or the HTTP method for non-resource paths (written lower-case).
    pub verb: String,
    /// `None`: authentication failed; the event carries `"user":{}` as Kubernetes'.
    pub user: Option<UserInfo>,
    pub impersonated: Option<UserInfo>,
    pub source_ip: IpAddr,
    pub user_agent: Option<String>,
    /// `None` for non-resource requests (`/version`, `/healthz`, discovery roots).
    pub object: Option<ObjectRef>,
    /// The authorizer's answer: allowed?, reason.
    pub decision: Option<(bool, String)>,
    /// The stages the policy leaves out, set by [`AuditLog::request_received`].
    pub omit: policy::Stages,
}

impl Record {
    /// What an audit policy rule is matched against.
    pub fn attributes(&self) -> policy::Attributes<'_> {
        let path = self.request_uri.split('?').next().unwrap_or("");
        policy::Attributes {
            user: self.user.as_ref(),
            verb: &self.verb,
            path,
            object: self.object.as_ref(),
        }
    }
}

/// A reply's outcome: its HTTP code and, when the body was a `Status`, reason and message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl Status {
    pub fn new(code: u16, reason: &str, message: &str) -> Self {
        let (reason, message) = (reason.to_string(), message.to_string());
        Status {
            code,
            reason,
            message,
        }
    }
}

/// The stage of request handling an event is generated at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The user is known, before impersonation and authorization (with a policy only).
    RequestReceived,
    /// Response headers sent: long-running requests, and failed authentication.
    ResponseStarted,
    /// Response complete.
    ResponseComplete,
    /// A handler panicked: kube's, never written by keel (the connection ends instead), but
    /// a policy may name it in `omitStages`.
    Panic,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }

    pub fn parse(name: &str) -> Option<Stage> {
        Some(match name {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            _ => return None,
        })
    }
}

/// A fresh audit ID (UUID v4), as kube-apiserver makes when no `Audit-ID` header came.
pub fn new_audit_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `Event` for `record` at `stage`, stamped `now`. `status: None` means no reply was
/// written (the client went away first): Kubernetes records 200 "Connection closed early".
/// A `RequestReceived` event has no `responseStatus`, and is stamped when the request came.
pub fn event(
    record: &Record,
    stage: Stage,
    status: Option<&Status>,
    now: jiff::Timestamp,
) -> Value {
    let mut ev = Map::new();
    ev.insert("kind".into(), "Event".into());
    ev.insert("apiVersion".into(), "audit.k8s.io/v1".into());
    ev.insert("level".into(), "Metadata".into());
    ev.insert("auditID".into(), record.audit_id.clone().into());
    ev.insert("stage".into(), stage.as_str().into());
    ev.insert("requestURI".into(), redact_uri(&record.request_uri).into());
    ev.insert("verb".into(), record.verb.to_ascii_lowercase().into());
    ev.insert("user".into(), user_info(record.user.as_ref()));
    if let Some(impersonated) = &record.impersonated {
        ev.insert("impersonatedUser".into(), user_info(Some(impersonated)));
    }
    let ip = record.source_ip.to_canonical().to_string();
    ev.insert("sourceIPs".into(), json!([ip]));
    let agent = record.user_agent.as_deref().unwrap_or("");
    put(&mut ev, "userAgent", agent);
    if let Some(o) = &record.object {
        let mut r = Map::new();
        put(&mut r, "resource", &o.resource);
        put(&mut r, "namespace", &o.namespace);
        put(&mut r, "name", &o.name);
        put(&mut r, "apiGroup", &o.api_group);
        put(&mut r, "apiVersion", &o.api_version);
        put(&mut r, "subresource", &o.subresource);
        ev.insert("objectRef".into(), Value::Object(r));
    }
    let received = micro_time(record.received);
    let stamped = if stage == Stage::RequestReceived {
        received.clone()
    } else {
        ev.insert("responseStatus".into(), response_status(status));
        micro_time(now)
    };
    ev.insert("requestReceivedTimestamp".into(), received.into());
    ev.insert("stageTimestamp".into(), stamped.into());
    if let Some((allowed, reason)) = &record.decision {
        // Kubernetes' authorization filter sets both keys, the reason even when empty.
        let decision = if *allowed { "allow" } else { "forbid" };
        let annotations = json!({
            "authorization.k8s.io/decision": decision,
            "authorization.k8s.io/reason": reason
        });
        ev.insert("annotations".into(), annotations);
    }
    Value::Object(ev)
}

/// Inserts `value` unless it is empty (Go's `omitempty`).
fn put(m: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        m.insert(key.into(), value.into());
    }
}

/// `authentication/v1` `UserInfo`: every field `omitempty`, so no user gives `{}`.
fn user_info(user: Option<&UserInfo>) -> Value {
    let mut m = Map::new();
    if let Some(u) = user {
        put(&mut m, "username", &u.name);
        put(&mut m, "uid", &u.uid);
        if !u.groups.is_empty() {
            m.insert("groups".into(), json!(u.groups));
        }
        if !u.extra.is_empty() {
            m.insert("extra".into(), json!(u.extra));
        }
    }
    Value::Object(m)
}

/// The `metav1.Status` Kubernetes records: `metadata` always (a non-pointer struct), the
/// bounded fields it copies from a Status reply, and the code.
fn response_status(status: Option<&Status>) -> Value {
    let Some(s) = status else {
        let message = "Connection closed early";
        return json!({"metadata": {}, "status": "Success", "message": message, "code": 200});
    };
    let mut m = Map::new();
    m.insert("metadata".into(), json!({}));
    if s.code >= 400 {
        m.insert("status".into(), "Failure".into());
    }
    put(&mut m, "message", &s.message);
    put(&mut m, "reason", &s.reason);
    m.insert("code".into(), s.code.into());
    Value::Object(m)
}

/// `metav1.MicroTime`: RFC 3339 in UTC with exactly six fractional digits (truncated).
fn micro_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The URI with any `access_token` query value replaced: a token never reaches the log.
fn redact_uri(uri: &str) -> String {
    const REDACTED: &str = "access_token=REDACTED";
    let is_token = |pair: &str| pair.split('=').next() == Some("access_token");
    match uri.split_once('?') {
        Some((path, query)) if query.split('&').any(is_token) => {
            let pairs = query
                .split('&')
                .map(|p| if is_token(p) { REDACTED } else { p });
            format!("{path}?{}", pairs.collect::<Vec<_>>().join("&"))
        }
        _ => uri.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("opening the audit log {0:?}: {1}")]
    Open(PathBuf, #[source] std::io::Error),
}

enum Msg {
    Event(Value),
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    /// Counts `n` lost events; warns at the first and whenever the total crosses a power
    /// of two, so a stuck disk cannot flood the log.
    fn failed(&self, n: u64, why: &str) {
        let before = self.errors.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if before == 0 || before.leading_zeros() != after.leading_zeros() {
            tracing::warn!(lost = n, total = after, "audit events lost: {}", why);
        }
    }
}

/// The audit log: events appended, one JSON object per line, by a background task.
#[derive(Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    /// `--audit-policy-file`; `None`: [`policy::Decision::DEFAULT`] for every request.
    policy: Option<policy::Policy>,
}

impl AuditLog {
    /// Opens `path` for appending (created with mode 0600; its directory must exist) and
    /// starts the writer.
    pub async fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_with_capacity(path, QUEUE_CAPACITY).await
    }

    async fn open_with_capacity(path: &Path, capacity: usize) -> Result<Self, AuditError> {
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(path).await;
        let file = file.map_err(|e| AuditError::Open(path.into(), e))?;
        let (tx, rx) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        tokio::spawn(write_events(rx, file, Arc::clone(&counters)));
        Ok(AuditLog {
            tx,
            counters,
            policy: None,
        })
    }

    /// The log, recording what `policy` says instead of every request.
    pub fn with_policy(mut self, policy: policy::Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The policy's decision for `record` as it stands.
    pub fn decide(&self, record: &Record) -> policy::Decision {
        match &self.policy {
            Some(policy) => policy.evaluate(&record.attributes()),
            None => policy::Decision::DEFAULT,
        }
    }

    /// Called once the user is authenticated (kube's audit filter runs there): asks the policy,
    /// drops the record when its level is `None` (nothing more is spent on the request), else
    /// keeps the stages it omits in the record and writes `RequestReceived` unless omitted.
    pub fn request_received(&self, slot: &mut Option<Record>) {
        let Some(record) = slot.as_mut() else {
            return;
        };
        let decision = self.decide(record);
        if decision.level == policy::Level::None {
            *slot = None;
            return;
        }
        record.omit = decision.omit;
        if decision.records(Stage::RequestReceived) {
            self.record(event(record, Stage::RequestReceived, None, record.received));
        }
    }

    /// Queues `event` without waiting; on a full queue it is dropped and counted.
    pub fn record(&self, event: Value) {
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(Msg::Event(event)) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the queue is full",
                mpsc::error::TrySendError::Closed(_) => "the writer has stopped",
            };
            self.counters.failed(1, why);
        }
    }

    /// Waits until every event recorded before the call is written and flushed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Events generated: `apiserver_audit_event_total`.
    pub fn events_total(&self) -> u64 {
        self.counters.events.load(Ordering::Relaxed)
    }

    /// Events dropped (full queue) or lost to write errors: `apiserver_audit_error_total`.
    pub fn errors_total(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }
}

/// Drains the queue in batches, flushing after each, until every sender is dropped.
async fn write_events(mut rx: mpsc::Receiver<Msg>, file: tokio::fs::File, counters: Arc<Counters>) {
    let mut out = BufWriter::new(file);
    let (mut batch, mut line) = (Vec::with_capacity(BATCH), Vec::<u8>::new());
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let (mut written, mut failed, mut error) = (0u64, 0u64, String::new());
        let mut waiters = Vec::new();
        for msg in batch.drain(..) {
            let event = match msg {
                Msg::Event(event) => event,
                Msg::Flush(done) => {
                    waiters.push(done);
                    continue;
                }
            };
            line.clear();
            let result = match serde_json::to_writer(&mut line, &event) {
                Ok(()) => {
                    line.push(b'\n');
                    out.write_all(&line).await
                }
                Err(e) => Err(e.into()),
            };
            if let Err(e) = result {
                failed += 1;
                error = e.to_string();
            } else {
                written += 1;
            }
        }
        if let Err(e) = out.flush().await {
            failed += written;
            error = e.to_string();
        }
        if failed > 0 {
            counters.failed(failed, &format!("writing the audit log: {error}"));
        }
        for done in waiters {
            let _ = done.send(());
        }
    }
    let _ = out.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        let groups = groups.iter().map(|g| g.to_string()).collect();
        UserInfo {
            name: name.into(),
            groups,
            ..UserInfo::default()
        }
    }

    fn alice() -> UserInfo {
        user("alice", &["dev", "system:authenticated"])
    }

    fn get_pod() -> Record {
        Record {
            audit_id: new_audit_id(),
            received: "2024-05-01T12:00:00.123456789Z".parse().unwrap(),
            request_uri: "/api/v1/namespaces/default/pods/web".into(),
            verb: "get".into(),
            user: Some(alice()),
            impersonated: None,
            source_ip: "10.0.0.7".parse().unwrap(),
            user_agent: Some("kubectl/v1.33.0".into()),
            object: Some(ObjectRef {
                resource: "pods".into(),
                namespace: "default".into(),
                name: "web".into(),
                api_version: "v1".into(),
                ..ObjectRef::default()
            }),
            decision: Some((true, "RBAC: allowed".into())),
            omit: policy::Stages::NONE,
        }
    }

    fn at(record: &Record, stage: Stage, status: Option<&Status>) -> Value {
        let now = "2024-05-01T12:00:00.2Z".parse().unwrap();
        event(record, stage, status, now)
    }

    const OK: Status = Status {
        code: 200,
        reason: String::new(),
        message: String::new(),
    };

    #[test]
    fn namespaced_get_has_the_documented_fields() {
        let record = get_pod();
        let ev = at(&record, Stage::ResponseComplete, Some(&OK));
        assert!(uuid::Uuid::parse_str(&record.audit_id).is_ok());
        let expected = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": record.audit_id, "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods/web", "verb": "get",
            "user": {"username": "alice", "groups": ["dev", "system:authenticated"]},
            "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.33.0",
            "objectRef": {"resource": "pods", "namespace": "default", "name": "web",
                "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2024-05-01T12:00:00.123456Z",
            "stageTimestamp": "2024-05-01T12:00:00.200000Z",
            "annotations": {"authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed"}
        });
        assert_eq!(ev, expected);
    }

    #[test]
    fn forbidden_carries_the_status() {
        let mut record = get_pod();
        record.decision = Some((false, String::new()));
        let message = "pods \"web\" is forbidden: User \"alice\" cannot get resource \"pods\"";
        let status = Status::new(403, "Forbidden", message);
        let ev = at(&record, Stage::ResponseComplete, Some(&status));
        let expected = json!({"metadata": {}, "status": "Failure", "reason": "Forbidden",
            "message": message, "code": 403});
        assert_eq!(ev["responseStatus"], expected);
        assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "forbid");
        assert_eq!(ev["annotations"]["authorization.k8s.io/reason"], "");
    }

    #[test]
    fn impersonation_records_both_users() {
        let mut record = get_pod();
        record.user = Some(user("admin", &["system:masters"]));
        record.impersonated = Some(alice());
        let ev = at(&record, Stage::ResponseComplete, Some(&OK));
        let admin = json!({"username": "admin", "groups": ["system:masters"]});
        assert_eq!(ev["user"], admin);
        let alice = json!({"username": "alice", "groups": ["dev", "system:authenticated"]});
        assert_eq!(ev["impersonatedUser"], alice);
    }

    #[test]
    fn non_resource_and_unauthenticated_requests() {
        let mut record = get_pod();
        record.request_uri = "/version?a=1&access_token=x".into();
        record.verb = "GET".into();
        record.object = None;
        record.user = None;
        record.decision = None;
        record.source_ip = "::ffff:192.0.2.1".parse().unwrap();
        let status = Status::new(401, "Unauthorized", "Unauthorized");
        let ev = at(&record, Stage::ResponseStarted, Some(&status));
        assert!(ev.get("objectRef").is_none() && ev.get("annotations").is_none());
        assert_eq!(ev["verb"], "get");
        assert_eq!(ev["user"], json!({}));
        assert_eq!(ev["stage"], "ResponseStarted");
        assert_eq!(ev["requestURI"], "/version?a=1&access_token=REDACTED");
        assert_eq!(ev["sourceIPs"], json!(["192.0.2.1"]));
        assert_eq!(ev["responseStatus"]["status"], "Failure");
        let closed = at(&record, Stage::ResponseComplete, None);
        let early = json!({"metadata": {}, "status": "Success", "code": 200,
            "message": "Connection closed early"});
        assert_eq!(closed["responseStatus"], early);
    }

    #[tokio::test]
    async fn the_log_has_one_json_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).await.unwrap();
        for _ in 0..3 {
            log.record(at(&get_pod(), Stage::ResponseComplete, Some(&OK)));
        }
        log.flush().await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["kind"], "Event");
        }
        assert_eq!((log.events_total(), log.errors_total()), (3, 0));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let missing = dir.path().join("missing/audit.log");
        assert!(AuditLog::open(&missing).await.is_err());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open_with_capacity(&path, 1).await.unwrap();
        // No await between the calls: on the test's single-threaded runtime the writer
        // cannot drain the queue meanwhile, so the second and third find it full.
        for _ in 0..3 {
            log.record(at(&get_pod(), Stage::ResponseComplete, Some(&OK)));
        }
        assert_eq!((log.events_total(), log.errors_total()), (3, 2));
        log.flush().await;
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
