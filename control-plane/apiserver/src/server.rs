//! The HTTP front: one warp route that reads method, path, query, headers and a bounded body,
//! then routes by hand (Kubernetes paths are data: group, version, namespace, resource, name,
//! subresource). Limits as kube-apiserver sets them: 3 MiB bodies, 400 read-only and 200
//! mutating requests in flight (watches exempt, being long-running), a 60 s request timeout.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::Semaphore;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::path::FullPath;
use warp::Filter;
use warp::Reply as _;

use crate::metrics::{DurationLabels, InflightLabels, RequestLabels};
use crate::reply::{Body, Reply};
use crate::request::{self, Query, Route, Verb};
use crate::rest::{Api, Request};
use crate::status::ApiError;

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
    openapi: crate::openapi::OpenApiV3,
    limits: Limits,
    readonly: Semaphore,
    mutating: Semaphore,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_body<S, B>(mut body: S, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if let Some(length) = header(headers, "content-length").and_then(|l| l.parse::<usize>().ok()) {
        if length > limit {
            return Err(ApiError::too_large(limit));
        }
    }
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if collected.len() + chunk.remaining() > limit {
            return Err(ApiError::too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(collected.freeze())
}

fn response(reply: Reply) -> warp::reply::Response {
    let code = StatusCode::from_u16(reply.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.body {
        Body::Json(value) => {
            let bytes = serde_json::to_vec(&value).unwrap_or_default();
            let mut r = warp::reply::Response::new(bytes.into());
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r
        }
        Body::Raw(bytes, content_type) => {
            let mut r = warp::reply::Response::new(bytes.into());
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            r
        }
        Body::Stream(receiver, content_type) => {
            let stream =
                tokio_stream::wrappers::ReceiverStream::new(receiver).map(Ok::<Bytes, Infallible>);
            let mut r = warp::reply::stream(stream).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            r
        }
    };
    *response.status_mut() = code;
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, v);
        }
    }
    response
}

impl Front {
    async fn serve<S, B>(
        &self,
        method: Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: S,
    ) -> Reply
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        let query = Query::parse(query);
        let route = match request::route(method.as_str(), path, &query) {
            Ok(route) => route,
            Err(e) => return Reply::error(&e),
        };
        let accept = header(headers, "accept");
        match route {
            Route::Resource(target) => {
                let content_type = header(headers, "content-type")
                    .map(|c| {
                        c.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_else(|| "application/json".into());
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
                        let request = Request {
                            query,
                            accept,
                            content_type,
                            body,
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

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, api: Arc<Api>, limits: Limits) {
    let front = Arc::new(Front {
        openapi: crate::openapi::OpenApiV3::new(&crate::openapi_resources()),
        readonly: Semaphore::new(limits.max_readonly_inflight),
        mutating: Semaphore::new(limits.max_mutating_inflight),
        api,
        limits,
    });
    let route = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: FullPath, query: String, headers: HeaderMap, body| {
                let front = front.clone();
                async move {
                    response(
                        front
                            .serve(method, path.as_str(), &query, &headers, Box::pin(body))
                            .await,
                    )
                }
            },
        );
    warp::serve(route).incoming(listener).run().await;
}
