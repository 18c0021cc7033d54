//! The standard `process_*` series every Prometheus client library exports (the Go client's
//! process collector, which etcd's and the Kubernetes components' `/metrics` include): CPU
//! time, resident and virtual memory, open and allowed file descriptors, start time. Read from
//! `/proc/self` at each scrape; dashboards and `etcdctl check datascale` (which reads
//! `process_resident_memory_bytes` from the endpoint it loads) rely on them.

use procfs::process::{LimitValue, Process};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The collector; register it once per registry.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One scrape's reading of `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    /// `None` when the soft limit is unlimited.
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

impl Reading {
    pub fn now() -> procfs::ProcResult<Self> {
        let me = Process::myself()?;
        let stat = me.stat()?;
        let ticks = procfs::ticks_per_second() as f64;
        let max_fds = match me.limits()?.max_open_files.soft_limit {
            LimitValue::Value(n) => Some(n),
            LimitValue::Unlimited => None,
        };
        Ok(Self {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_memory_bytes: stat.rss * procfs::page_size(),
            virtual_memory_bytes: stat.vsize,
            open_fds: me.fd_count()? as u64,
            max_fds,
            start_time_seconds: procfs::boot_time_secs()? as f64 + stat.starttime as f64 / ticks,
        })
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A scrape should not fail for want of these: a reading that fails (no /proc) leaves
        // them out, as the Go client does on systems without procfs.
        let Ok(r) = Reading::now() else {
            return Ok(());
        };
        // The registry appends `_total` to a counter's name.
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            r.resident_memory_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            r.virtual_memory_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors.",
            r.open_fds as f64,
        )?;
        if let Some(max) = r.max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max as f64,
            )?;
        }
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            r.start_time_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn a_reading_describes_this_process() {
        let before = Reading::now().expect("reading /proc/self");
        let held: Vec<std::fs::File> = (0..8)
            .map(|_| std::fs::File::open("/proc/self/stat").expect("open"))
            .collect();
        // Burn a little CPU so the counter can be seen to move.
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = Reading::now().expect("reading /proc/self");
        // Tests run in parallel in this process, so only a lower bound holds: the 8 files
        // and standard input, output and error.
        assert!(after.open_fds >= held.len() as u64 + 3, "{after:?}");
        assert!(
            after.cpu_seconds > before.cpu_seconds,
            "{before:?} {after:?}"
        );
        assert!(after.resident_memory_bytes > 1 << 20, "{after:?}");
        assert!(after.virtual_memory_bytes >= after.resident_memory_bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            after.start_time_seconds <= now + 1.0 && after.start_time_seconds > now - 86_400.0,
            "started at {} (now {now})",
            after.start_time_seconds
        );
        drop(held);
    }

    #[test]
    fn the_series_carry_the_go_clients_names() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for series in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
            "# TYPE process_cpu_seconds counter",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}
