//! Per-pod and per-container metrics, read at scrape time: phase and restarts from the pod
//! workers, CPU and memory from the containers' cgroups, resident memory and threads of the
//! container's main process from /proc.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

use super::RuntimeConfig;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    pod: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    namespace: String,
    pod: String,
    phase: String,
}

#[derive(Debug)]
pub struct PodCollector {
    config: Arc<RuntimeConfig>,
}

impl PodCollector {
    pub fn new(config: Arc<RuntimeConfig>) -> Self {
        Self { config }
    }
}

/// One container's value of one family: counters are u64 or f64, gauges i64.
enum Value {
    Count(u64),
    Seconds(f64),
    Level(i64),
}

/// How a family reads its value from a container's sample; `None`: not known, not reported.
type SampleValue = fn(&Sample) -> Option<Value>;

#[derive(Default)]
struct Sample {
    restarts: u64,
    ready: bool,
    cpu_seconds: Option<f64>,
    working_set: Option<u64>,
    rss: Option<u64>,
    threads: Option<i64>,
    oom_kills: Option<u64>,
}

impl Collector for PodCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let views = self
            .config
            .views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut pods = Vec::new();
        let mut containers = Vec::new();
        for (uid, view) in &views {
            pods.push(PodLabels {
                namespace: view.namespace.clone(),
                pod: view.name.clone(),
                phase: view.status.phase.to_string(),
            });
            for status in &view.status.container_statuses {
                let usage = self.config.cgroups.usage(uid, &status.name);
                let process = view
                    .pids
                    .get(&status.name)
                    .and_then(|pid| procfs::process::Process::new(*pid).ok())
                    .and_then(|p| p.stat().ok());
                let page = procfs::page_size();
                containers.push((
                    ContainerLabels {
                        namespace: view.namespace.clone(),
                        pod: view.name.clone(),
                        container: status.name.clone(),
                    },
                    Sample {
                        restarts: u64::from(status.restart_count),
                        ready: status.ready,
                        cpu_seconds: usage.cpu_seconds,
                        working_set: usage.memory_working_set,
                        rss: process.as_ref().map(|s| s.rss * page),
                        threads: process.as_ref().map(|s| s.num_threads),
                        oom_kills: self.config.cgroups.oom_kills(uid, &status.name),
                    },
                ));
            }
        }
        let mut family = encoder.encode_descriptor(
            "pods",
            "Pods on this node, by phase",
            None,
            MetricType::Gauge,
        )?;
        for labels in &pods {
            ConstGauge::new(1i64).encode(family.encode_family(labels)?)?;
        }
        use MetricType::{Counter, Gauge};
        let families: [(&str, &str, MetricType, SampleValue); 7] = [
            ("container_restarts", "Times the container was restarted", Counter, |s| {
                Some(Value::Count(s.restarts))
            }),
            (
                "container_oom_kills",
                "OOM kills in the container's memory cgroup (the cgroup's own count)",
                Counter,
                |s| s.oom_kills.map(Value::Count),
            ),
            ("container_ready", "1 if the container is ready", Gauge, |s| {
                Some(Value::Level(i64::from(s.ready)))
            }),
            (
                "container_cpu_usage_seconds",
                "CPU time used by the container's cgroup",
                Counter,
                |s| s.cpu_seconds.map(Value::Seconds),
            ),
            (
                "container_memory_working_set_bytes",
                "Memory of the container's cgroup less inactive file pages (what the OOM killer weighs)",
                Gauge,
                |s| s.working_set.map(|b| Value::Level(b as i64)),
            ),
            (
                "container_process_resident_bytes",
                "Resident memory of the container's main process (/proc)",
                Gauge,
                |s| s.rss.map(|b| Value::Level(b as i64)),
            ),
            (
                "container_process_threads",
                "Threads of the container's main process (/proc)",
                Gauge,
                |s| s.threads.map(Value::Level),
            ),
        ];
        for (name, help, metric_type, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (labels, sample) in &containers {
                let Some(value) = value(sample) else {
                    continue;
                };
                let metric = family.encode_family(labels)?;
                match value {
                    Value::Count(n) => ConstCounter::new(n).encode(metric)?,
                    Value::Seconds(s) => ConstCounter::new(s).encode(metric)?,
                    Value::Level(n) => ConstGauge::new(n).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}
