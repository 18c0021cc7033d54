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
        let names = self.names.read().map(|n| n.clone()).unwrap_or_default();
        let labelled: Vec<(ServiceLabels, u64, u64)> = services
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
                    s.connections,
                    s.refused,
                )
            })
            .collect();
        let connections = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "service_connections",
            "Connections (and UDP messages) translated to a backend, per service port",
            None,
            connections.metric_type(),
        )?;
        for (labels, count, _) in &labelled {
            ConstCounter::new(*count).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "service_refused",
            "Connections refused because the service port had no ready backend",
            None,
            connections.metric_type(),
        )?;
        for (labels, _, count) in &labelled {
            ConstCounter::new(*count).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}
