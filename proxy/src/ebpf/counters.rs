//! Per-service counters on `/metrics`, read from the kernel's per-CPU map at scrape time, so
//! the numbers are the kernel's own and cost nothing between scrapes.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, RwLock},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::counter::ConstCounter,
};

use super::read_services;
use crate::service_table::{Frontend, L4Protocol};

/// Frontend → `namespace/name:port`, kept current by the daemon after every sync.
pub type ServiceNames = Arc<RwLock<BTreeMap<Frontend, String>>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
    frontend: String,
}

#[derive(Debug)]
pub struct ServiceCounters {
    bpf_dir: PathBuf,
    names: ServiceNames,
}

impl ServiceCounters {
    pub fn new(bpf_dir: PathBuf, names: ServiceNames) -> Self {
        Self { bpf_dir, names }
    }
}

impl Collector for ServiceCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A scrape while the maps are unreadable (daemon starting) shows no series, not an error.
        let Ok(services) = read_services(&self.bpf_dir) else {
            return Ok(());
        };
        let names = self
            .names
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let labelled: Vec<(ServiceLabels, [u64; 4])> = services
            .iter()
            .map(|s| {
                let protocol = if s.protocol == "UDP" {
                    L4Protocol::Udp
                } else {
                    L4Protocol::Tcp
                };
                let frontend = Frontend {
                    vip: s.vip,
                    port: s.port,
                    protocol,
                };
                let service = names.get(&frontend).cloned().unwrap_or_default();
                (
                    ServiceLabels {
                        service,
                        frontend: frontend.to_string(),
                    },
                    [s.connections, s.refused, s.packets, s.bytes],
                )
            })
            .collect();
        let families = [
            (
                "service_connections",
                "Connections (and UDP messages) translated to a backend, per service port",
            ),
            (
                "service_refused",
                "Connections refused because the service port had no ready backend",
            ),
            (
                "service_packets",
                "Packets the per-packet path translated towards the service port",
            ),
            ("service_bytes", "Bytes of those packets"),
        ];
        for (index, (name, help)) in families.into_iter().enumerate() {
            let metric_type = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (labels, values) in &labelled {
                ConstCounter::new(values[index]).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}
