//! The gRPC server metrics etcd exports (go-grpc-prometheus' names), which etcd's dashboards
//! and alerts read: `grpc_server_started_total`, `grpc_server_handled_total` by status code,
//! and `grpc_server_handling_seconds`, each labelled by `grpc_type`, `grpc_service` and
//! `grpc_method`. etcd's mixin alerts on the share of failed requests and on the 99th
//! percentile of unary calls; its dashboard draws the RPC rate, the failed RPC rate and the
//! open watch streams (started minus handled) from them.
//!
//! A tower layer on the client server counts each call. The code is read from the response's
//! trailers, or from its headers when an error was answered at once (a "trailers-only"
//! response); a call whose response the client dropped before its end counts as `Canceled`,
//! as go-grpc's server reports a call whose client went away.
//!
//! Only the methods keel serves are labelled: a request for any other path is not counted, so
//! no client can mint series.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tower_layer::Layer;
use tower_service::Service;

const UNARY: &str = "unary";
const SERVER_STREAM: &str = "server_stream";
const BIDI_STREAM: &str = "bidi_stream";

/// Every method of etcd's v3 API that keel serves: (service, method, type).
const METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.KV", "Range", UNARY),
    ("etcdserverpb.KV", "Put", UNARY),
    ("etcdserverpb.KV", "DeleteRange", UNARY),
    ("etcdserverpb.KV", "Txn", UNARY),
    ("etcdserverpb.KV", "Compact", UNARY),
    ("etcdserverpb.Watch", "Watch", BIDI_STREAM),
    ("etcdserverpb.Lease", "LeaseGrant", UNARY),
    ("etcdserverpb.Lease", "LeaseRevoke", UNARY),
    ("etcdserverpb.Lease", "LeaseKeepAlive", BIDI_STREAM),
    ("etcdserverpb.Lease", "LeaseTimeToLive", UNARY),
    ("etcdserverpb.Lease", "LeaseLeases", UNARY),
    ("etcdserverpb.Cluster", "MemberAdd", UNARY),
    ("etcdserverpb.Cluster", "MemberRemove", UNARY),
    ("etcdserverpb.Cluster", "MemberUpdate", UNARY),
    ("etcdserverpb.Cluster", "MemberList", UNARY),
    ("etcdserverpb.Cluster", "MemberPromote", UNARY),
    ("etcdserverpb.Maintenance", "Alarm", UNARY),
    ("etcdserverpb.Maintenance", "Status", UNARY),
    ("etcdserverpb.Maintenance", "Defragment", UNARY),
    ("etcdserverpb.Maintenance", "Hash", UNARY),
    ("etcdserverpb.Maintenance", "HashKV", UNARY),
    ("etcdserverpb.Maintenance", "Snapshot", SERVER_STREAM),
    ("etcdserverpb.Maintenance", "MoveLeader", UNARY),
];

/// Which method a call is, as go-grpc-prometheus labels it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
}

/// A finished call: its method and the status code it ended with.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

/// The labels of a request path (`/etcdserverpb.KV/Put`), when keel serves that method.
pub fn call_labels(path: &str) -> Option<CallLabels> {
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

/// gRPC's status codes by number, as go-grpc names them (`codes.Code.String()`).
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// A `grpc-status` value's name; what is not a known code is `Unknown`, as gRPC reads it.
pub fn code_name(status: Option<&[u8]>) -> &'static str {
    status
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.trim().parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("Unknown")
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The three series; clones share them.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    started: Family<CallLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: HistogramFamily<CallLabels>,
}

/// 0.1 ms to 13 s. go-grpc-prometheus' default buckets start at 5 ms, below which every call
/// of keel's (a write takes about a millisecond) would fall into one bucket.
fn handling_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for GrpcMetrics {
    /// Every method's series exist from the start, at zero, as go-grpc-prometheus registers
    /// them (`handled` with every code): a dashboard's "started minus handled" or an alert's
    /// ratio of failed to all calls then has both sides before the first call ends.
    fn default() -> Self {
        let metrics = Self {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(handling_histogram),
        };
        for &(grpc_service, grpc_method, grpc_type) in METHODS {
            let call = CallLabels {
                grpc_type,
                grpc_service,
                grpc_method,
            };
            let _ = metrics.started.get_or_create(&call);
            let _ = metrics.handling.get_or_create(&call);
            for grpc_code in CODES {
                let _ = metrics.handled.get_or_create(&HandledLabels {
                    grpc_type,
                    grpc_service,
                    grpc_method,
                    grpc_code,
                });
            }
        }
        metrics
    }
}

impl GrpcMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            self.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure",
            self.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "How long the server took to handle an RPC, to its last message",
            self.handling.clone(),
        );
    }

    /// The layer that counts the calls of a tonic server.
    pub fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Counts a call of `path` as started; `None` for a method keel does not serve.
    fn start(&self, path: &str) -> Option<Call> {
        let labels = call_labels(path)?;
        self.started.get_or_create(&labels).inc();
        Some(Call {
            metrics: self.clone(),
            labels,
            started: Instant::now(),
            code_in_headers: None,
        })
    }

    #[cfg(test)]
    fn handled_count(&self, labels: CallLabels, grpc_code: &'static str) -> u64 {
        self.handled
            .get_or_create(&HandledLabels {
                grpc_type: labels.grpc_type,
                grpc_service: labels.grpc_service,
                grpc_method: labels.grpc_method,
                grpc_code,
            })
            .get()
    }
}

/// One call in progress; counted as handled once, when its response ends or is dropped.
struct Call {
    metrics: GrpcMetrics,
    labels: CallLabels,
    started: Instant,
    /// The status of a trailers-only response (an error answered at once).
    code_in_headers: Option<&'static str>,
}

impl Call {
    fn finish(self, grpc_code: &'static str) {
        let CallLabels {
            grpc_type,
            grpc_service,
            grpc_method,
        } = self.labels;
        self.metrics
            .handled
            .get_or_create(&HandledLabels {
                grpc_type,
                grpc_service,
                grpc_method,
                grpc_code,
            })
            .inc();
        self.metrics
            .handling
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }

    /// The response ended without trailers: the headers' status, if they carried one.
    fn finish_at_end(self, fallback: &'static str) {
        let code = self.code_in_headers.unwrap_or(fallback);
        self.finish(code);
    }
}

/// See [`GrpcMetrics::layer`].
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = CountCalls<S>;

    fn layer(&self, inner: S) -> CountCalls<S> {
        CountCalls {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose calls are counted.
#[derive(Clone, Debug)]
pub struct CountCalls<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CountCalls<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = CountedResponse<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = self.metrics.start(request.uri().path());
        CountedResponse {
            inner: self.inner.call(request),
            call,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a counted call, whose body carries the call on.
    pub struct CountedResponse<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for CountedResponse<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<CountedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                if let Some(call) = this.call.take() {
                    call.finish("Unknown");
                }
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(response)) => {
                let mut call = this.call.take();
                if let Some(call) = call.as_mut() {
                    call.code_in_headers = response
                        .headers()
                        .get("grpc-status")
                        .map(|s| code_name(Some(s.as_bytes())));
                }
                Poll::Ready(Ok(response.map(|inner| CountedBody {
                    inner,
                    call: Finish(call),
                })))
            }
        }
    }
}

/// Counts the call when dropped unfinished: the client went away before the response ended
/// (or the server dropped a trailers-only response without polling its empty body).
struct Finish(Option<Call>);

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.finish_at_end("Canceled");
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its call when its trailers (or its end) pass.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        call: Finish,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(call) = this.call.0.take() {
                        call.finish(code_name(trailers.get("grpc-status").map(|s| s.as_bytes())));
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.0.take() {
                    call.finish_at_end("Unknown");
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.0.take() {
                    call.finish_at_end("Unknown");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "grpc_metrics_tests.rs"]
mod tests;
