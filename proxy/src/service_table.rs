//! The desired state of the datapath: every service port and its ready backends, in a form
//! that every proxy backend consumes and no backend has to re-derive.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
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

    /// The frontends added, changed or removed from `old` to `self`: one walk of both tables
    /// side by side (both are in frontend order), comparing entries.
    pub fn changed_since(&self, old: &ServiceTable) -> BTreeSet<Frontend> {
        let mut changed = BTreeSet::new();
        let mut before = old.services.iter().peekable();
        let mut after = self.services.iter().peekable();
        loop {
            let order = match (before.peek(), after.peek()) {
                (None, None) => return changed,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((a, _))) => b.cmp(a),
            };
            match order {
                // Only in the old table: removed.
                Ordering::Less => changed.extend(before.next().map(|(f, _)| *f)),
                // Only in the new table: added.
                Ordering::Greater => changed.extend(after.next().map(|(f, _)| *f)),
                Ordering::Equal => {
                    if let (Some((f, was)), Some((_, is))) = (before.next(), after.next()) {
                        if was != is {
                            changed.insert(*f);
                        }
                    }
                }
            }
        }
    }
}

/// What a sync is told about the table it is given, against the last one it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableChanges {
    /// Anything may differ: the first table, or the one after a failed sync.
    All,
    /// Only these frontends were added, changed or removed; every other entry is as the last
    /// sync (which succeeded) was given it.
    Frontends(BTreeSet<Frontend>),
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

#[cfg(test)]
mod tests {
    use super::{testing::web, *};

    #[test]
    fn changed_since_names_added_removed_and_changed_frontends_only() {
        let entry = |name: &str| ServicePortEntry {
            name: name.into(),
            backends: Vec::new(),
            affinity_timeout: None,
        };
        let frontend = |last: u8| Frontend {
            vip: Ipv4Addr::new(10, 96, 0, last),
            port: 53,
            protocol: L4Protocol::Udp,
        };
        let table = |entries: &[(u8, &str)]| ServiceTable {
            services: entries
                .iter()
                .map(|(last, name)| (frontend(*last), entry(name)))
                .collect(),
        };
        let old = table(&[(1, "a"), (2, "b"), (4, "d"), (6, "f")]);
        let new = table(&[(2, "b"), (3, "c"), (4, "D"), (6, "f"), (7, "g")]);
        let changed: Vec<u8> = new
            .changed_since(&old)
            .iter()
            .map(|f| f.vip.octets()[3])
            .collect();
        assert_eq!(changed, [1, 3, 4, 7]);
        assert!(new.changed_since(&new).is_empty());
        assert_eq!(new.changed_since(&ServiceTable::default()).len(), 5);
        assert_eq!(ServiceTable::default().changed_since(&old).len(), 4);
        // A backend or an affinity timeout is a change too.
        let mut moved = web(&[1, 2], None);
        assert!(moved.changed_since(&web(&[1, 2], None)).is_empty());
        assert_eq!(moved.changed_since(&web(&[1, 3], None)).len(), 1);
        moved = web(&[1, 2], Some(10));
        assert_eq!(moved.changed_since(&web(&[1, 2], None)).len(), 1);
    }
}
