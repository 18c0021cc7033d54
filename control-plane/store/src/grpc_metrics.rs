//! The gRPC server metrics etcd exports (go-grpc-prometheus' names), which etcd's dashboards
//! and alerts read: `grpc_server_started_total`, `grpc_server_handled_total` by status code,
//! and `grpc_server_handling_seconds`, each labelled by `grpc_type`, `grpc_service` and
//! `grpc_method`. etcd's mixin alerts on the share of failed requests and on the 99th
//! percentile of unary calls; its dashboard draws the RPC rate, the failed RPC rate and the
//! open watch streams (started minus handled) from them.
//!
//! A tower layer on the client server counts each call. The code is read from the response's
//! trailers, or from its headers when an error was answered at once (a "trailers-only"
//! response). A call given up before its response ended (the client reset the stream or went
//! away, or its `grpc-timeout` ran out and tonic answered for it) counts as `Canceled`, or
//! `DeadlineExceeded` past its deadline, as go-grpc's server reports them. A unary call is
//! timed until its handler answered, as go-grpc-prometheus times it; a stream until its end.
//!
//! Only the methods keel serves are labelled: a request for any other path is not counted, so
//! no client can mint series.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

/// Whether `path` (`/service/method`) names a method keel serves.
pub fn serves(path: &str) -> bool {
    METHODS.iter().any(|(service, method, _)| {
        path.strip_prefix('/').and_then(|p| p.split_once('/')) == Some((service, method))
    })
}

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

const CANCELED: usize = 1;
const UNKNOWN: usize = 2;
const DEADLINE_EXCEEDED: usize = 4;

/// The value of 1 to `max_digits` ASCII digits (gRPC's headers carry no sign, no spaces).
fn decimal(digits: &[u8], max_digits: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max_digits || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// The number of a `grpc-status` value (1 or 2 ASCII digits); what is not a known code is
/// `Unknown`, as gRPC reads it.
pub fn code_of(status: Option<&[u8]>) -> usize {
    status
        .and_then(|digits| decimal(digits, 2))
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n < CODES.len())
        .unwrap_or(UNKNOWN)
}

/// A request's `grpc-timeout` (at most 8 digits and a unit), as a duration.
pub fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    let amount = decimal(digits, 8)?;
    Some(match unit {
        b'H' => Duration::from_secs(amount.checked_mul(3600)?),
        b'M' => Duration::from_secs(amount.checked_mul(60)?),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A family of histograms made by a plain function (their buckets).
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// One served method's series, looked up once: a call only bumps them.
#[derive(Debug)]
struct MethodSeries {
    unary: bool,
    started: Counter,
    /// By code number.
    handled: Vec<Counter>,
    handling: Histogram,
}

/// The three series (families, for the registry) and every served method's handles into
/// them, by request path; clones share them.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    started: Family<CallLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: HistogramFamily<CallLabels>,
    methods: Arc<HashMap<String, Arc<MethodSeries>>>,
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
        let started = Family::<CallLabels, Counter>::default();
        let handled = Family::<HandledLabels, Counter>::default();
        let handling: HistogramFamily<CallLabels> =
            Family::new_with_constructor(handling_histogram);
        let mut methods = HashMap::new();
        for &(grpc_service, grpc_method, grpc_type) in METHODS {
            let call = CallLabels {
                grpc_type,
                grpc_service,
                grpc_method,
            };
            let series = MethodSeries {
                unary: grpc_type == UNARY,
                started: started.get_or_create(&call).clone(),
                handled: CODES
                    .iter()
                    .map(|&grpc_code| {
                        handled
                            .get_or_create(&HandledLabels {
                                grpc_type,
                                grpc_service,
                                grpc_method,
                                grpc_code,
                            })
                            .clone()
                    })
                    .collect(),
                handling: handling.get_or_create(&call).clone(),
            };
            methods.insert(format!("/{grpc_service}/{grpc_method}"), Arc::new(series));
        }
        Self {
            started,
            handled,
            handling,
            methods: Arc::new(methods),
        }
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
            "How long the server took to handle an RPC: a unary one until its handler answered, a stream until its last message",
            self.handling.clone(),
        );
    }

    /// The layer that counts the calls of a tonic server.
    pub fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Counts a call as started; `None` for a method keel does not serve.
    fn start<B>(&self, request: &http::Request<B>) -> Option<Call> {
        let series = self.methods.get(request.uri().path())?.clone();
        series.started.inc();
        let started = Instant::now();
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|t| grpc_timeout(t.as_bytes()))
            .and_then(|t| started.checked_add(t));
        Some(Call {
            series,
            started,
            deadline,
            answered_in: None,
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
    series: Arc<MethodSeries>,
    started: Instant,
    /// When the client's `grpc-timeout` runs out.
    deadline: Option<Instant>,
    /// How long a unary handler took to answer (the time a unary call is observed at).
    answered_in: Option<Duration>,
    /// The status of a trailers-only response (an error answered at once).
    code_in_headers: Option<usize>,
}

impl Call {
    fn finish(self, code: usize) {
        if let Some(handled) = self.series.handled.get(code) {
            handled.inc();
        }
        let took = self.answered_in.unwrap_or_else(|| self.started.elapsed());
        self.series.handling.observe(took.as_secs_f64());
    }

    /// The response ended without trailers: the headers' status, if they carried one.
    fn finish_at_end(self, fallback: usize) {
        let code = self.code_in_headers.unwrap_or(fallback);
        self.finish(code);
    }

    /// Given up before its response ended: past the client's deadline tonic answers
    /// `DeadlineExceeded` itself; otherwise the client went away (or reset the stream).
    fn finish_abandoned(self) {
        let code = match self.deadline {
            Some(deadline) if Instant::now() >= deadline => DEADLINE_EXCEEDED,
            _ => CANCELED,
        };
        self.finish_at_end(code);
    }
}

/// Counts the call when dropped unfinished (see [`Call::finish_abandoned`]); a trailers-only
/// response, whose empty body the server drops without polling, is counted here with its
/// headers' code.
struct Finish(Option<Call>);

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.finish_abandoned();
        }
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
        let call = Finish(self.metrics.start(&request));
        CountedResponse {
            inner: self.inner.call(request),
            call,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a counted call, whose body carries the call on; dropped before it is
    /// ready (the client reset the stream, its deadline passed, the connection closed), it
    /// counts the call given up.
    pub struct CountedResponse<F> {
        #[pin]
        inner: F,
        call: Finish,
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
                if let Some(call) = this.call.0.take() {
                    call.finish(UNKNOWN);
                }
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(response)) => {
                let mut call = this.call.0.take();
                if let Some(call) = call.as_mut() {
                    call.code_in_headers = response
                        .headers()
                        .get("grpc-status")
                        .map(|s| code_of(Some(s.as_bytes())));
                    if call.series.unary {
                        call.answered_in = Some(call.started.elapsed());
                    }
                }
                Poll::Ready(Ok(response.map(|inner| CountedBody {
                    inner,
                    call: Finish(call),
                })))
            }
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
                        call.finish(code_of(trailers.get("grpc-status").map(|s| s.as_bytes())));
                    }
                }
            }
            // A body that broke or ended without trailers: the headers' code, if any.
            Poll::Ready(Some(Err(_)) | None) => {
                if let Some(call) = this.call.0.take() {
                    call.finish_at_end(UNKNOWN);
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
