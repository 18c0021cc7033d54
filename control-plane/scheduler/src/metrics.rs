//! The scheduler's Prometheus metrics under kube-scheduler's names and labels, so dashboards
//! and alerts written for kube-scheduler read keel unchanged.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::queue::QueueCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: String,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `active`, `backoff`, `unschedulable`, `gated`.
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptsLabels {
    /// How many attempts the pod took, as kube-scheduler labels the SLI.
    pub attempts: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BindingLabels {
    /// `success` or `error`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
    /// `PreFilter`, `Filter`, `PreScore`, `Score`, `ScoreExtensionNormalize`.
    pub extension_point: String,
    /// kube's status code name: `Success`, `Unschedulable`, `UnschedulableAndUnresolvable`,
    /// `Error`, `Skip`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionPointLabels {
    /// `PreFilter`, `PreScore`, `Score`, `PostFilter`.
    pub extension_point: String,
    pub status: String,
    pub profile: String,
}

/// The share of scheduling cycles whose plugins are timed one by one (kube-scheduler's
/// `pluginMetricsSamplePercent`). A Filter or Score plugin runs once per node: timing each
/// call costs two clock reads and a histogram update per plugin per node — on a 5,000-node
/// cluster, more than the plugins themselves — while a tenth of the cycles describes the
/// plugins' latency as well.
pub const PLUGIN_METRICS_SAMPLE_PERCENT: u64 = 10;

fn plugin_buckets() -> Histogram {
    // kube-scheduler's buckets for scheduler_plugin_execution_duration_seconds: from 10 µs,
    // factor 1.5 (plugin latency is fine-grained), the last bound about 22 ms.
    Histogram::new(exponential_buckets(0.00001, 1.5, 20))
}

fn extension_point_buckets() -> Histogram {
    // kube-scheduler's buckets for scheduler_framework_extension_point_duration_seconds:
    // from 0.1 ms, doubling, the last bound about 200 ms.
    Histogram::new(exponential_buckets(0.0001, 2.0, 12))
}

fn attempt_buckets() -> Histogram {
    // kube-scheduler's buckets for scheduler_scheduling_attempt_duration_seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn sli_buckets() -> Histogram {
    // kube-scheduler's buckets for scheduler_pod_scheduling_sli_duration_seconds.
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    /// `scheduler_schedule_attempts_total{result, profile}`.
    pub attempts: Family<AttemptLabels, Counter>,
    /// `scheduler_scheduling_attempt_duration_seconds{result, profile}`: one attempt from
    /// pop, as kube-scheduler counts it: to the decision for a pod that fits nowhere, to the
    /// end of its binding for a pod that was placed (`scheduled`, or `error` if the binding
    /// was refused).
    pub attempt_duration: Histograms<AttemptLabels>,
    /// `scheduler_pending_pods{queue}`.
    pub pending: Family<QueueLabels, Gauge>,
    /// `scheduler_pod_scheduling_sli_duration_seconds{attempts}`: from the pod's first
    /// arrival in the queue to its binding, failed attempts included.
    pub sli_duration: Histograms<AttemptsLabels>,
    /// `scheduler_binding_duration_seconds` is kube's histogram for the Bind extension point;
    /// keel counts results here as `scheduler_binding_total{result}`.
    pub bindings: Family<BindingLabels, Counter>,
    /// `scheduler_binding_duration_seconds`.
    pub binding_duration: Histogram,
    /// `scheduler_plugin_execution_duration_seconds{plugin, extension_point, status}`, in the
    /// sampled cycles only ([`PLUGIN_METRICS_SAMPLE_PERCENT`]).
    pub plugin_duration: Histograms<PluginLabels>,
    /// `scheduler_framework_extension_point_duration_seconds{extension_point, status,
    /// profile}`: all the plugins of one extension point for one pod, every cycle.
    pub extension_point_duration: Histograms<ExtensionPointLabels>,
    /// `plugin_duration`'s series by where their labels live (see [`PluginSeries`]): a
    /// sampled cycle on 5,000 nodes records thousands of plugin calls, and finding a series
    /// in the family (three label strings built, hashed and compared under its lock) cost
    /// more than the calls it timed.
    plugin_series: RwLock<HashMap<PluginSeries, Histogram>>,
}

/// A plugin series' labels by address: every label is a `&'static str` (a plugin's name, an
/// extension point, a status code's name), so their addresses identify them. Two equal
/// strings at different addresses are two keys for the same series, which
/// [`Family::get_or_create`] returns for both (a `Histogram` clone shares its buckets).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PluginSeries([(usize, usize); 3]);

impl PluginSeries {
    fn of(plugin: &'static str, point: &'static str, status: &'static str) -> PluginSeries {
        let at = |s: &'static str| (s.as_ptr() as usize, s.len());
        PluginSeries([at(plugin), at(point), at(status)])
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(attempt_buckets),
            pending: Family::default(),
            sli_duration: Family::new_with_constructor(sli_buckets),
            bindings: Family::default(),
            binding_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            plugin_duration: Family::new_with_constructor(plugin_buckets),
            extension_point_duration: Family::new_with_constructor(extension_point_buckets),
            plugin_series: RwLock::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `scheduler_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let scheduler = registry.sub_registry_with_prefix("scheduler");
        scheduler.register(
            "schedule_attempts",
            "Number of attempts to schedule pods, by the result.",
            self.attempts.clone(),
        );
        scheduler.register(
            "scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            self.attempt_duration.clone(),
        );
        scheduler.register(
            "pending_pods",
            "Number of pending pods, by the queue type.",
            self.pending.clone(),
        );
        scheduler.register(
            "pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
            self.sli_duration.clone(),
        );
        scheduler.register(
            "binding",
            "Number of bindings sent to the API server, by the result.",
            self.bindings.clone(),
        );
        scheduler.register(
            "binding_duration_seconds",
            "Binding latency in seconds",
            self.binding_duration.clone(),
        );
        scheduler.register(
            "plugin_execution_duration_seconds",
            "Duration for running a plugin at a specific extension point.",
            self.plugin_duration.clone(),
        );
        scheduler.register(
            "framework_extension_point_duration_seconds",
            "Latency for running all plugins of a specific extension point.",
            self.extension_point_duration.clone(),
        );
    }

    pub fn attempt(&self, result: &str, profile: &str, duration: Duration) {
        let labels = AttemptLabels {
            result: result.to_string(),
            profile: profile.to_string(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    pub fn plugin(
        &self,
        plugin: &'static str,
        extension_point: &'static str,
        status: &'static str,
        duration: Duration,
    ) {
        let key = PluginSeries::of(plugin, extension_point, status);
        let seconds = duration.as_secs_f64();
        // Observed under the read lock: cloning the handle out would bounce its reference
        // count between the threads filtering in parallel. A poisoned lock only means a
        // thread panicked while inserting: the map is still whole.
        if let Some(series) = self
            .plugin_series
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
        {
            series.observe(seconds);
            return;
        }
        let series = self
            .plugin_duration
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
                extension_point: extension_point.to_string(),
                status: status.to_string(),
            })
            .clone();
        series.observe(seconds);
        self.plugin_series
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, series);
    }

    pub fn extension_point(
        &self,
        extension_point: &str,
        status: &str,
        profile: &str,
        duration: Duration,
    ) {
        self.extension_point_duration
            .get_or_create(&ExtensionPointLabels {
                extension_point: extension_point.to_string(),
                status: status.to_string(),
                profile: profile.to_string(),
            })
            .observe(duration.as_secs_f64());
    }

    pub fn pending(&self, counts: QueueCounts) {
        for (queue, count) in [
            ("active", counts.active),
            ("backoff", counts.backoff),
            ("unschedulable", counts.unschedulable),
            ("gated", counts.gated),
        ] {
            self.pending
                .get_or_create(&QueueLabels {
                    queue: queue.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    pub fn bound(&self, ok: bool, attempts: u32, binding: Duration, since_queued: Duration) {
        let result = if ok { "success" } else { "error" };
        self.bindings
            .get_or_create(&BindingLabels {
                result: result.to_string(),
            })
            .inc();
        self.binding_duration.observe(binding.as_secs_f64());
        if ok {
            self.sli_duration
                .get_or_create(&AttemptsLabels {
                    attempts: attempts.to_string(),
                })
                .observe(since_queued.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests;
