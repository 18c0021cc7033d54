//! The desired state of the datapath: every service port and its ready backends, in a form
//! that every proxy backend consumes and no backend has to re-derive.

use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, SocketAddrV4},
};

/// The protocols the datapath translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum L4Protocol {
    Tcp,
    Udp,
}

impl L4Protocol {
    /// The IANA protocol number, as the kernel uses it.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => keel_common::PROTO_TCP,
            L4Protocol::Udp => keel_common::PROTO_UDP,
        }
    }
}

impl fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4Protocol::Tcp => "TCP",
            L4Protocol::Udp => "UDP",
        })
    }
}

/// What a client dials: `vip:port/protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Frontend {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: L4Protocol,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.vip, self.port, self.protocol)
    }
}

/// One service port and where its traffic goes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServicePortEntry {
    /// `namespace/name:port-name`, for logs and metrics.
    pub name: String,
    /// Ready backends, sorted and without duplicates. Empty: the service refuses connections.
    pub backends: Vec<SocketAddrV4>,
    /// `sessionAffinity: ClientIP`: how long (seconds) a client sticks to its backend.
    pub affinity_timeout: Option<u32>,
}

/// Everything the datapath should translate.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServiceTable {
    pub services: BTreeMap<Frontend, ServicePortEntry>,
}

impl ServiceTable {
    /// Number of (service port, backend) pairs.
    pub fn backend_count(&self) -> usize {
        self.services.values().map(|s| s.backends.len()).sum()
    }
}

/// Tables for unit tests of the proxy modes.
#[cfg(test)]
pub mod testing {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    /// One TCP service, `default/web:http` at 10.96.0.10:80, with backends 10.244.0.`b`:8080.
    pub fn web(backends: &[u8], affinity_timeout: Option<u32>) -> ServiceTable {
        let mut table = ServiceTable::default();
        let backends = backends
            .iter()
            .map(|b| SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, *b), 8080))
            .collect();
        table.services.insert(
            Frontend {
                vip: Ipv4Addr::new(10, 96, 0, 10),
                port: 80,
                protocol: L4Protocol::Tcp,
            },
            ServicePortEntry {
                name: "default/web:http".into(),
                backends,
                affinity_timeout,
            },
        );
        table
    }
}
