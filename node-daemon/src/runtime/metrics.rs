//! Per-pod and per-container metrics, read at scrape time: phase and restarts from the pod
//! workers, CPU and memory from the containers' cgroups, resident memory and threads of the
//! container's main process from /proc.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
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
            .map(|v| v.clone())
            .unwrap_or_default();
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
        let gauge_type = ConstGauge::new(0i64).metric_type();
        let counter_type = ConstCounter::new(0u64).metric_type();
        let mut family =
            encoder.encode_descriptor("pods", "Pods on this node, by phase", None, gauge_type)?;
        for labels in &pods {
            ConstGauge::new(1i64).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "container_restarts",
            "Times the container was restarted",
            None,
            counter_type,
        )?;
        for (labels, sample) in &containers {
            ConstCounter::new(sample.restarts).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "container_oom_kills",
            "OOM kills in the container's memory cgroup (the cgroup's own count)",
            None,
            counter_type,
        )?;
        for (labels, sample) in &containers {
            if let Some(kills) = sample.oom_kills {
                ConstCounter::new(kills).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "container_ready",
            "1 if the container is ready",
            None,
            gauge_type,
        )?;
        for (labels, sample) in &containers {
            ConstGauge::new(i64::from(sample.ready)).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "container_cpu_usage_seconds",
            "CPU time used by the container's cgroup",
            None,
            counter_type,
        )?;
        for (labels, sample) in &containers {
            if let Some(cpu) = sample.cpu_seconds {
                ConstCounter::new(cpu).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "container_memory_working_set_bytes",
            "Memory of the container's cgroup less inactive file pages (what the OOM killer weighs)",
            None,
            gauge_type,
        )?;
        for (labels, sample) in &containers {
            if let Some(bytes) = sample.working_set {
                ConstGauge::new(bytes as i64).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "container_process_resident_bytes",
            "Resident memory of the container's main process (/proc)",
            None,
            gauge_type,
        )?;
        for (labels, sample) in &containers {
            if let Some(bytes) = sample.rss {
                ConstGauge::new(bytes as i64).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "container_process_threads",
            "Threads of the container's main process (/proc)",
            None,
            gauge_type,
        )?;
        for (labels, sample) in &containers {
            if let Some(threads) = sample.threads {
                ConstGauge::new(threads).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}
