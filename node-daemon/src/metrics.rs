//! The daemon's Prometheus metrics, and the HTTP server for `/metrics` and `/healthz`.

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::net::TcpListener;
use warp::Filter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnprogrammedLabels {
    /// `capacity` (retried when the table changes) or `write_error` (retried).
    pub reason: &'static str,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub syncs: Family<SyncLabels, Counter>,
    pub sync_duration: Histogram,
    pub service_ports: Gauge,
    pub backends: Gauge,
    pub unprogrammed: Family<UnprogrammedLabels, Gauge>,
    pub manifest_errors: Counter,
    pub manifest_files_rejected: Gauge,
}

impl Metrics {
    /// `collectors` add metrics read at scrape time (the kernel's per-service counters).
    /// `conntrack_flush` counts the netfilter modes' deletions of stale UDP flows (always zero
    /// in the eBPF mode, which has none to delete); `socket_destroy` counts the eBPF mode's
    /// destroyed connected UDP sockets to removed backends (always zero in the other modes).
    pub fn new(
        proxy_mode: &str,
        collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
        conntrack_flush: keel_proxy::stale_udp::FlushCounters,
        socket_destroy: keel_proxy::ebpf::stale_sockets::SocketCounters,
    ) -> Self {
        let mut registry = Registry::with_prefix("keel");
        let syncs = Family::<SyncLabels, Counter>::default();
        // 100 µs … ~6.5 s: one service costs microseconds, 10k services seconds.
        let sync_duration =
            Histogram::new([0.0001, 0.0004, 0.0016, 0.0064, 0.0256, 0.1, 0.4, 1.6, 6.4]);
        let service_ports = Gauge::default();
        let backends = Gauge::default();
        let unprogrammed = Family::<UnprogrammedLabels, Gauge>::default();
        let manifest_errors = Counter::default();
        let manifest_files_rejected = Gauge::default();
        let proxy = registry.sub_registry_with_label(("mode".into(), proxy_mode.to_owned().into()));
        proxy.register(
            "proxy_syncs",
            "Syncs of the service table into the kernel",
            syncs.clone(),
        );
        proxy.register(
            "proxy_sync_duration_seconds",
            "Time to write one service table change into the kernel",
            sync_duration.clone(),
        );
        proxy.register(
            "service_ports",
            "Service ports programmed in the kernel",
            service_ports.clone(),
        );
        proxy.register(
            "backends",
            "(service port, backend) pairs programmed in the kernel",
            backends.clone(),
        );
        proxy.register(
            "conntrack_entries_deleted",
            "UDP conntrack entries deleted after syncs because their backend left",
            conntrack_flush.deleted,
        );
        proxy.register(
            "conntrack_flush_failures",
            "Deletions of stale UDP conntrack entries that failed (the sync itself succeeded)",
            conntrack_flush.failures,
        );
        proxy.register(
            "udp_sockets_destroyed",
            "Connected UDP sockets of keel's clients destroyed after syncs because their backend left",
            socket_destroy.destroyed,
        );
        proxy.register(
            "udp_socket_destroy_failures",
            "Sweeps for stale connected UDP sockets that failed, per namespace (the sync itself succeeded)",
            socket_destroy.failures,
        );
        proxy.register(
            "proxy_service_ports_unprogrammed",
            "Service ports the last sync left out of the kernel (or at their previous state), by reason",
            unprogrammed.clone(),
        );
        registry.register(
            "manifest_errors",
            "Manifest files rejected, counted once per distinct problem",
            manifest_errors.clone(),
        );
        registry.register(
            "manifest_files_rejected",
            "Manifest files whose last good version is in effect because the current one is invalid",
            manifest_files_rejected.clone(),
        );
        for collector in collectors {
            registry.register_collector(collector);
        }
        Self {
            registry,
            syncs,
            sync_duration,
            service_ports,
            backends,
            unprogrammed,
            manifest_errors,
            manifest_files_rejected,
        }
    }

    /// Logs each service port the sync left out, by name and reason, and sets the gauge of them
    /// by reason. Returns how many there are.
    pub fn report_unprogrammed(&self, unprogrammed: &[keel_proxy::Unprogrammed]) -> usize {
        let mut by_reason: std::collections::BTreeMap<&'static str, i64> =
            [("capacity", 0), ("write_error", 0)].into();
        for service in unprogrammed {
            *by_reason.entry(service.reason.label()).or_default() += 1;
            let state = if service.kept_previous {
                "keeps its previous state"
            } else {
                "not programmed"
            };
            tracing::warn!(
                service = %service.service,
                frontend = %service.frontend,
                reason = service.reason.label(),
                "service port {state}: {}",
                service.reason
            );
        }
        for (reason, count) in by_reason {
            self.unprogrammed
                .get_or_create(&UnprogrammedLabels { reason })
                .set(count);
        }
        unprogrammed.len()
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Binds `addr` now (so a taken port fails start-up), and returns the bound address and the
/// server future, which runs until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let metrics_route = warp::path("metrics").and(warp::path::end()).map(move || {
        warp::reply::with_header(
            metrics.encode(),
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    });
    let health = warp::path("healthz").and(warp::path::end()).map(|| "ok\n");
    let routes = warp::get().and(metrics_route.or(health));
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run();
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use keel_proxy::{
        service_table::{Frontend, L4Protocol},
        Unprogrammed, UnprogrammedReason,
    };

    use super::*;

    fn gauge(text: &str, reason: &str) -> Option<i64> {
        text.lines()
            .find(|l| {
                l.starts_with("keel_proxy_service_ports_unprogrammed{")
                    && l.contains("mode=\"ebpf\"")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn unprogrammed_service_ports_are_counted_by_reason_and_reset() {
        let metrics = Metrics::new("ebpf", Vec::new(), Default::default(), Default::default());
        let frontend = Frontend {
            vip: std::net::Ipv4Addr::new(10, 96, 0, 1),
            port: 80,
            protocol: L4Protocol::Tcp,
        };
        let left_out = [
            Unprogrammed {
                service: "default/a:http".into(),
                frontend,
                kept_previous: false,
                reason: UnprogrammedReason::Capacity {
                    what: "service ids",
                    limit: 1,
                },
            },
            Unprogrammed {
                service: "default/b:http".into(),
                frontend,
                kept_previous: true,
                reason: UnprogrammedReason::WriteFailed("ENOMEM".into()),
            },
        ];
        assert_eq!(metrics.report_unprogrammed(&left_out), 2);
        let text = metrics.encode();
        assert_eq!(gauge(&text, "capacity"), Some(1), "{text}");
        assert_eq!(gauge(&text, "write_error"), Some(1), "{text}");
        // The next sync programs everything: both go back to zero.
        metrics.report_unprogrammed(&[]);
        let text = metrics.encode();
        assert_eq!(gauge(&text, "capacity"), Some(0), "{text}");
        assert_eq!(gauge(&text, "write_error"), Some(0), "{text}");
    }
}
