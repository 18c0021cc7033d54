//! The HTTP front: one warp route that reads method, path, query, headers and a bounded body,
//! then routes by hand (Kubernetes paths are data: group, version, namespace, resource, name,
//! subresource). Limits as kube-apiserver sets them: 3 MiB bodies, 400 read-only and 200
//! mutating requests in flight (watches exempt, being long-running), a 60 s request timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use tokio::sync::Semaphore;

use crate::audit;
use crate::auth::authn::{Connection, Outcome};
use crate::auth::authz::{self, Impersonation};
use crate::auth::{Security, UserInfo};
use crate::metrics::{DurationLabels, InflightLabels, RequestLabels};
use crate::reply::{Body, Reply};
use crate::request::{self, Query, Route, Verb};
use crate::rest::{Api, Request};
use crate::status::ApiError;

type ResponseBody = BoxBody<Bytes, Infallible>;

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_readonly_inflight: usize,
    pub max_mutating_inflight: usize,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 3 * 1024 * 1024,
            max_readonly_inflight: 400,
            max_mutating_inflight: 200,
            request_timeout: Duration::from_secs(60),
        }
    }
}

struct Front {
    api: Arc<Api>,
    security: Arc<Security>,
    /// `--audit-log-path`: the requests its policy names (every one without a policy file).
    audit: Option<Arc<audit::AuditLog>>,
    openapi: crate::openapi::OpenApiV3,
    limits: Limits,
    readonly: Semaphore,
    mutating: Semaphore,
}

/// Concurrent HTTP/2 streams (requests and watches) one connection may carry.
const HTTP2_MAX_STREAMS_PER_CONNECTION: u32 = 1000;

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if let Some(length) = header(headers, "content-length").and_then(|l| l.parse::<usize>().ok()) {
        if length > limit {
            return Err(ApiError::too_large(limit));
        }
    }
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(ApiError::too_large(limit));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Runs a closure when dropped: the end of a watch stream, however it ends.
struct OnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            end();
        }
    }
}

fn response(reply: Reply, on_stream_end: Option<OnDrop>) -> hyper::Response<ResponseBody> {
    let code = StatusCode::from_u16(reply.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (body, content_type): (ResponseBody, &'static str) = match reply.body {
        Body::Json(value) => (
            Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default())).boxed(),
            "application/json",
        ),
        Body::Raw(bytes, content_type) => (Full::new(Bytes::from(bytes)).boxed(), content_type),
        Body::Stream(chunks, content_type) => {
            let guard = on_stream_end;
            let frames = chunks.map(move |chunk| {
                let _ = &guard;
                Ok::<_, Infallible>(Frame::data(chunk))
            });
            (BodyExt::boxed(StreamBody::new(frames)), content_type)
        }
    };
    let mut response = hyper::Response::new(body);
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, v);
        }
    }
    response
}

/// The `Impersonate-*` headers, as kubectl `--as`, `--as-group` and `--as-uid` send them.
fn impersonation(headers: &HeaderMap) -> Result<Impersonation, ApiError> {
    let mut asked = Impersonation::default();
    for (name, value) in headers {
        let name = name.as_str();
        let Some(what) = name.strip_prefix("impersonate-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("{name}: not visible ASCII")))?
            .to_owned();
        match what {
            "user" => asked.user = Some(value),
            "uid" => asked.uid = Some(value),
            "group" => asked.groups.push(value),
            other => match other.strip_prefix("extra-") {
                Some(key) if !key.is_empty() => {
                    let key = percent_encoding::percent_decode_str(key)
                        .decode_utf8_lossy()
                        .into_owned();
                    asked.extra.entry(key).or_default().push(value);
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{name}: not an impersonation header kube-apiserver knows"
                    )))
                }
            },
        }
    }
    Ok(asked)
}

impl Front {
    /// Authentication, then impersonation: the user the request runs as. The audit record
    /// (kept only when there is an audit log) gets the authenticated user, is then decided on
    /// by the audit policy (dropped if it says `None`), and, if impersonating, gets the
    /// impersonated one.
    fn user(
        &self,
        connection: &Connection,
        path: &str,
        headers: &HeaderMap,
        record: &mut Option<audit::Record>,
    ) -> Result<UserInfo, ApiError> {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let health = matches!(first, "livez" | "readyz" | "healthz");
        let authorization = header(headers, "authorization");
        let started = Instant::now();
        let outcome =
            self.security
                .authn
                .authenticate(connection, authorization.as_deref(), health);
        self.api.metrics.filter_took("authentication", started);
        let user = match outcome {
            Outcome::User(user) => user,
            Outcome::Unauthorized => return Err(ApiError::unauthorized()),
        };
        if let Some(slot) = record.as_mut() {
            slot.user = Some(user.clone());
        }
        if let Some(log) = &self.audit {
            log.request_received(record);
        }
        let asked = impersonation(headers)?;
        if asked.is_empty() {
            Ok(user)
        } else {
            let started = Instant::now();
            let effective = authz::impersonate(&self.security.authorizer, &user, &asked);
            self.api.metrics.filter_took("impersonation", started);
            let effective = effective?;
            if let Some(record) = record.as_mut() {
                record.impersonated = Some(effective.clone());
            }
            Ok(effective)
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        connection: &Connection,
        record: &mut Option<audit::Record>,
        method: Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: Incoming,
        on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Reply {
        // Routed before authentication, as kube's RequestInfo is, so that the audit record
        // (and the policy deciding on it) names the verb and object of a refused request too;
        // a routing error still answers only after authentication.
        let raw_query = query;
        let query = Query::parse(query);
        let routed = request::route(method.as_str(), path, &query).map(|route| {
            let attributes = attributes(&route, &method, path);
            (route, attributes)
        });
        if let (Some(record), Ok((route, attributes))) = (record.as_mut(), &routed) {
            record.verb = attributes.verb.clone();
            record.object = attributes.resource_request.then(|| audit::ObjectRef {
                resource: attributes.resource.clone(),
                namespace: attributes.namespace.clone(),
                name: attributes.name.clone(),
                api_group: attributes.api_group.clone(),
                api_version: match route {
                    Route::Resource(target) => target.info.version.to_owned(),
                    _ => "v1".to_owned(),
                },
                subresource: attributes.subresource.clone(),
            });
        }
        let user = match self.user(connection, path, headers, record) {
            Ok(user) => user,
            Err(e) => return Reply::error(&e),
        };
        let (route, attributes) = match routed {
            Ok(routed) => routed,
            Err(e) => return Reply::error(&e),
        };
        let started = Instant::now();
        let decision = self.security.authorizer.check(&user, &attributes);
        self.api.metrics.filter_took("authorization", started);
        if let Some(record) = record.as_mut() {
            record.decision = Some((decision.is_ok(), String::new()));
        }
        if let Err(e) = decision {
            return Reply::error(&e);
        }
        let accept = header(headers, "accept");
        match route {
            Route::Review { review, namespace } => {
                let content_type = media_type(headers);
                match read_body(body, headers, self.limits.max_body_bytes).await {
                    Err(e) => Reply::error(&e),
                    Ok(bytes) => {
                        match crate::objects::parse_body(&bytes, &content_type).and_then(|body| {
                            crate::auth::reviews::answer(
                                review,
                                &self.security.authorizer,
                                &user,
                                namespace.as_deref(),
                                &body.value,
                            )
                        }) {
                            Ok(answer) => Reply::json(201, answer),
                            Err(e) => Reply::error(&e),
                        }
                    }
                }
            }
            Route::Resource(target) => {
                let content_type = media_type(headers);
                let verb = target.verb;
                let info = target.info;
                let labels = DurationLabels {
                    verb: verb.metric_label().into(),
                    group: info.group.into(),
                    version: info.version.into(),
                    resource: info.resource.into(),
                    subresource: target.subresource.clone().unwrap_or_default(),
                    scope: if target.name.is_some() {
                        "resource".into()
                    } else if target.namespace.is_some() {
                        "namespace".into()
                    } else {
                        "cluster".into()
                    },
                    component: "apiserver".into(),
                };
                let started = Instant::now();
                let reply = match read_body(body, headers, self.limits.max_body_bytes).await {
                    Err(e) => Reply::error(&e),
                    Ok(body) => {
                        let upgrade = crate::rest::pod_exec::Upgrade::asked(
                            target.subresource.as_deref(),
                            headers,
                            raw_query,
                            on_upgrade,
                        );
                        let request = Request {
                            query,
                            accept,
                            content_type,
                            body,
                            user,
                            upgrade,
                            user_agent: header(headers, "user-agent"),
                        };
                        self.limited(verb, target, request).await
                    }
                };
                self.api
                    .metrics
                    .durations
                    .get_or_create(&labels)
                    .observe(started.elapsed().as_secs_f64());
                self.api
                    .metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        verb: labels.verb,
                        group: labels.group,
                        version: labels.version,
                        resource: labels.resource,
                        subresource: labels.subresource,
                        scope: labels.scope,
                        component: labels.component,
                        code: reply.code.to_string(),
                    })
                    .inc();
                reply
            }
            Route::Discovery(parts) => {
                match crate::discovery::document(&parts, accept.as_deref()) {
                    Some((doc, content_type)) => Reply::raw(
                        200,
                        serde_json::to_vec(&doc).unwrap_or_default(),
                        content_type,
                    ),
                    None => Reply::error(&ApiError::path_not_found(path)),
                }
            }
            Route::Version => Reply::json(200, crate::discovery::version()),
            Route::OpenIdConfiguration => match &self.api.config.token_signer {
                Some(signer) => Reply::json(200, signer.openid_configuration()),
                None => Reply::error(&ApiError::path_not_found(path)),
            },
            Route::Jwks => match &self.api.config.token_signer {
                Some(signer) => Reply::raw(
                    200,
                    signer.jwks().to_string().into_bytes(),
                    "application/jwk-set+json",
                ),
                None => Reply::error(&ApiError::path_not_found(path)),
            },
            Route::Health(check) => self.health(&check).await,
            Route::OpenApiV3(None) => {
                Reply::raw(200, self.openapi.index().to_vec(), "application/json")
            }
            Route::OpenApiV3(Some(gv)) => match self.openapi.group_version(&gv) {
                Some((doc, hash)) => {
                    let mut reply = Reply::raw(200, doc.to_vec(), "application/json");
                    // A client that asked by the current hash may keep the document for good.
                    if query.get("hash") == Some(hash) {
                        reply
                            .headers
                            .push(("Cache-Control", "public, immutable".into()));
                    }
                    reply
                }
                None => Reply::error(&ApiError::path_not_found(path)),
            },
            Route::OpenApiV2 => Reply::error(&ApiError::path_not_found(
                "/openapi/v2 (keel serves OpenAPI v3 at /openapi/v3)",
            )),
            Route::Metrics => {
                self.api.refresh_gauges();
                if let Some(log) = &self.audit {
                    let metrics = &self.api.metrics;
                    let events = log
                        .events_total()
                        .saturating_sub(metrics.audit_events.get());
                    metrics.audit_events.inc_by(events);
                    let errors = log
                        .errors_total()
                        .saturating_sub(metrics.audit_errors.get());
                    metrics.audit_errors.inc_by(errors);
                }
                Reply::raw(
                    200,
                    self.api.metrics.render().into_bytes(),
                    "text/plain; version=0.0.4",
                )
            }
        }
    }

    /// Runs a resource request under the in-flight limits and the request timeout (watches are
    /// long-running: neither applies).
    async fn limited(
        &self,
        verb: Verb,
        target: crate::request::ResourceRequest,
        request: Request,
    ) -> Reply {
        if verb == Verb::Watch {
            self.api.handle(target, request).await
        } else {
            let (semaphore, kind) = if verb.is_mutating() {
                (&self.mutating, "mutating")
            } else {
                (&self.readonly, "readOnly")
            };
            match semaphore.try_acquire() {
                Err(_) => Reply::error(&ApiError::too_many_requests(1)),
                Ok(_permit) => {
                    let gauge = self
                        .api
                        .metrics
                        .inflight
                        .get_or_create(&InflightLabels {
                            request_kind: kind.into(),
                        })
                        .clone();
                    gauge.inc();
                    let result = tokio::time::timeout(
                        self.limits.request_timeout,
                        self.api.handle(target, request),
                    )
                    .await;
                    gauge.dec();
                    match result {
                        Ok(reply) => reply,
                        Err(_) => Reply::error(&ApiError::timeout(
                            "The request did not complete within the allowed duration",
                        )),
                    }
                }
            }
        }
    }

    async fn health(&self, check: &str) -> Reply {
        let store = self.api.storage.revision().await;
        let caches = self.api.ready();
        let ok = match check {
            "livez" => true,
            _ => store.is_ok() && caches,
        };
        if ok {
            Reply::raw(200, b"ok".to_vec(), "text/plain; charset=utf-8")
        } else {
            let mut text = String::new();
            text.push_str(if store.is_ok() {
                "[+]etcd ok\n"
            } else {
                "[-]etcd failed: reason withheld\n"
            });
            text.push_str(if caches {
                "[+]informer-sync ok\n"
            } else {
                "[-]informer-sync failed: reason withheld\n"
            });
            text.push_str(&format!("{check} check failed\n"));
            Reply::raw(500, text.into_bytes(), "text/plain; charset=utf-8")
        }
    }
}

/// What a route asks, as the authorizer (and the audit policy) see it.
fn attributes(route: &Route, method: &Method, path: &str) -> authz::Request {
    match route {
        Route::Resource(target) => authz::Request::resource(target),
        Route::Review { review, namespace } => {
            let (group, resource, _) = review.names();
            authz::Request {
                verb: "create".into(),
                resource_request: true,
                namespace: namespace.clone().unwrap_or_default(),
                api_group: group.into(),
                resource: resource.into(),
                ..authz::Request::default()
            }
        }
        _ => authz::Request::non_resource(method.as_str(), path),
    }
}

/// The media type of the body, without parameters (JSON when none is named).
fn media_type(headers: &HeaderMap) -> String {
    header(headers, "content-type")
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".into())
}

/// A listening socket and how its connections are secured.
pub struct Listener {
    pub tcp: tokio::net::TcpListener,
    /// TLS (`None`: the loopback plain-HTTP listener).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A TLS handshake that does not finish in this time is dropped (a slow-loris client holds
/// one task, not the listener).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The status an audit event records for a reply: its code, and for a failure the reason and
/// message of the Status it carries.
fn audit_status(reply: &Reply) -> audit::Status {
    let (reason, message) = match &reply.body {
        Body::Json(v) if reply.code >= 400 => (
            v.get("reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(""),
            v.get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(""),
        ),
        _ => ("", ""),
    };
    audit::Status::new(reply.code, reason, message)
}

/// Records a request's audit events: one at the end, or for a watch one when the stream
/// starts and one (returned, run when the stream is dropped) when it ends, each unless the
/// policy omits its stage; a request that failed authentication gets one ResponseStarted
/// event, as kube-apiserver writes it, if the policy (asked now, without a user) wants it.
fn audit_reply(log: Arc<audit::AuditLog>, record: audit::Record, reply: &Reply) -> Option<OnDrop> {
    let status = audit_status(reply);
    let now = jiff::Timestamp::now;
    let started = audit::Stage::ResponseStarted;
    let complete = audit::Stage::ResponseComplete;
    if record.user.is_none() {
        if log.decide(&record).records(started) {
            log.record(audit::event(&record, started, Some(&status), now()));
        }
        return None;
    }
    if !matches!(reply.body, Body::Stream(..)) {
        if !record.omit.contains(complete) {
            log.record(audit::event(&record, complete, Some(&status), now()));
        }
        return None;
    }
    if !record.omit.contains(started) {
        log.record(audit::event(&record, started, Some(&status), now()));
    }
    if record.omit.contains(complete) {
        return None;
    }
    Some(OnDrop(Some(Box::new(move || {
        log.record(audit::event(&record, complete, Some(&status), now()));
    }))))
}

async fn connection<I>(front: Arc<Front>, io: I, connection: Connection, remote: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = Arc::new(connection);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let front = front.clone();
        let connection = connection.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or("").to_owned();
            // Built only for the audit log: without one, a request pays for none of it.
            let mut record = front.audit.is_some().then(|| audit::Record {
                audit_id: audit::new_audit_id(),
                received: jiff::Timestamp::now(),
                request_uri: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| path.clone()),
                verb: parts.method.as_str().to_ascii_lowercase(),
                user: None,
                impersonated: None,
                source_ip: remote.ip(),
                user_agent: header(&parts.headers, "user-agent"),
                object: None,
                decision: None,
                omit: audit::policy::Stages::NONE,
            });
            let reply = front
                .serve(
                    &connection,
                    &mut record,
                    parts.method,
                    &path,
                    &query,
                    &parts.headers,
                    body,
                    on_upgrade,
                )
                .await;
            let on_end = front
                .audit
                .clone()
                .zip(record)
                .and_then(|(log, record)| audit_reply(log, record, &reply));
            Ok::<_, Infallible>(response(reply, on_end))
        }
    });
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    // kube-apiserver's --http2-max-streams-per-connection default: client-go multiplexes every
    // informer's watch of one process over one connection, and hyper's own default (200)
    // would hold the rest back.
    builder
        .http2()
        .max_concurrent_streams(HTTP2_MAX_STREAMS_PER_CONNECTION);
    // Errors here are a client going away mid-request: nothing to do but drop it.
    let _ = builder
        .serve_connection_with_upgrades(
            hyper_util::rt::TokioIo::new(write_coalescing::WriteCoalescing::new(io)),
            service,
        )
        .await;
}

async fn accept_loop(front: Arc<Front>, listener: Listener) {
    loop {
        let (stream, remote): (tokio::net::TcpStream, SocketAddr) =
            match listener.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        match listener.tls.clone() {
            None => {
                tokio::spawn(connection(front, stream, Connection::Insecure, remote));
            }
            Some(config) => {
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    // The verifier checked the chain against the cluster CA; the subject of
                    // the leaf is the identity.
                    let client = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|leaf| crate::auth::authn::identity_from_certificate(leaf));
                    connection(front, tls, Connection::Tls { client }, remote).await;
                });
            }
        }
    }
}

/// Serves the API on `listeners` until the process ends.
pub async fn serve(
    listeners: Vec<Listener>,
    api: Arc<Api>,
    security: Arc<Security>,
    audit: Option<Arc<audit::AuditLog>>,
    limits: Limits,
) {
    let front = Arc::new(Front {
        audit,
        openapi: crate::openapi::OpenApiV3::new(&crate::openapi_resources()),
        readonly: Semaphore::new(limits.max_readonly_inflight),
        mutating: Semaphore::new(limits.max_mutating_inflight),
        api,
        security,
        limits,
    });
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(front.clone(), listener)))
        .collect();
    for l in loops {
        let _ = l.await;
    }
}
