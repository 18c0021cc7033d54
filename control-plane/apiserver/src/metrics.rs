//! The API server's Prometheus metrics under kube-apiserver's names and labels, so dashboards
//! written for kube-apiserver (request rate by verb and code, latency, watchers, stored
//! objects) read keel unchanged.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InflightLabels {
    pub request_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FilterLabels {
    pub filter: String,
}

fn filter_buckets() -> Histogram {
    // kube-apiserver's buckets for apiserver_request_filter_duration_seconds.
    Histogram::new([
        0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 5.0, 10.0, 15.0, 30.0,
    ])
}

fn request_buckets() -> Histogram {
    // kube-apiserver's buckets for apiserver_request_duration_seconds.
    Histogram::new([
        0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
        10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    ])
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    pub watchers: Family<KindLabels, Gauge>,
    pub objects: Family<ResourceLabels, Gauge>,
    pub inflight: Family<InflightLabels, Gauge>,
    pub dropped_watchers: Counter,
    /// Time spent in the authentication, impersonation and authorization steps (and admission,
    /// under keel's own `admission` filter name), as kube-apiserver's filter latency.
    pub filters: Family<FilterLabels, Histogram, fn() -> Histogram>,
    pub audit_events: Counter,
    pub audit_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_buckets as fn() -> Histogram,
            );
        let watchers = Family::<KindLabels, Gauge>::default();
        let objects = Family::<ResourceLabels, Gauge>::default();
        let inflight = Family::<InflightLabels, Gauge>::default();
        let dropped_watchers = Counter::default();
        let filters = Family::<FilterLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            filter_buckets as fn() -> Histogram,
        );
        let audit_events = Counter::default();
        let audit_errors = Counter::default();
        registry.register(
            "apiserver_request_filter_duration_seconds",
            "Request filter latency distribution in seconds, for each filter type",
            filters.clone(),
        );
        registry.register(
            "apiserver_audit_event",
            "Counter of audit events generated and sent to the audit backend.",
            audit_events.clone(),
        );
        registry.register(
            "apiserver_audit_error",
            "Counter of audit events that failed to be audited properly.",
            audit_errors.clone(),
        );
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component.",
            durations.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            watchers.clone(),
        );
        registry.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            objects.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            inflight.clone(),
        );
        registry.register(
            "apiserver_terminated_watchers",
            "Counter of watchers closed due to unresponsiveness.",
            dropped_watchers.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            watchers,
            objects,
            inflight,
            dropped_watchers,
            filters,
            audit_events,
            audit_errors,
        }
    }
}

impl Metrics {
    /// Records `started.elapsed()` under filter `name`.
    pub fn filter_took(&self, name: &str, started: std::time::Instant) {
        self.filters
            .get_or_create(&FilterLabels {
                filter: name.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
