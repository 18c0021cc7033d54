//! Connected UDP sockets of keel's clients to backends a sync removed: found in every network
//! namespace a process of keel's cgroup lives in, and destroyed ([`crate::sock_diag`]).
//!
//! The socket programs translate a UDP `connect()` once; the socket keeps the backend as its
//! peer. The tc path re-chooses a flow whose backend left, but a connected socket's datagrams
//! never reach a ClusterIP again, so nothing in the datapath can move them: a resolver holding
//! such a socket would ask a dead address forever. After each sync that removed backends of a
//! UDP service port, the sockets connected to those backends are aborted (`ECONNABORTED` on
//! their next receive); the application connects again and the socket LB picks a live backend.
//!
//! # Which namespaces
//! Only processes in keel's cgroup subtree are translated, so only their sockets can hold a
//! translated peer. Cilium sweeps every pod's namespace; keel's clients are the processes of
//! its cgroup, on the host or in pod sandboxes, so the namespaces swept are those of every
//! process listed in the subtree's `cgroup.procs` (`/proc/PID/ns/net`, one sweep per namespace
//! inode). A process that created a socket in keel's cgroup and then moved out is missed.
//!
//! # What is matched
//! As in Cilium, a socket matches by its destination alone (the removed backend's address and
//! port): a client that connected to that pod address directly, not through the service, is
//! aborted too and connects again. The socket LB's reverse map could tell the two apart, but
//! it is an LRU: an evicted entry would leave a stale socket, the failure this exists to stop.

use std::{
    collections::BTreeSet,
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddrV4},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use prometheus_client::metrics::counter::Counter;

use crate::{
    service_table::{Frontend, L4Protocol, ServiceTable, TableChanges},
    sock_diag::{self, Destroyed},
    ProxyError, ServiceProxy, SyncStats,
};

/// (UDP service port, backend) pairs: what a sync diff needs of a table.
pub type UdpBackends = BTreeSet<(Frontend, SocketAddrV4)>;

/// The UDP (service port, backend) pairs of `table`.
pub fn udp_backends(table: &ServiceTable) -> UdpBackends {
    table
        .services
        .iter()
        .filter(|(frontend, _)| frontend.protocol == L4Protocol::Udp)
        .flat_map(|(frontend, entry)| entry.backends.iter().map(move |b| (*frontend, *b)))
        .collect()
}

/// The backends that left some UDP service port between `old` and `new`: sockets connected to
/// them through that service are stale. A backend that left one service but stays in another
/// counts too (its sockets cannot be told apart by destination; see the module docs).
pub fn removed_backends(old: &UdpBackends, new: &UdpBackends) -> BTreeSet<SocketAddrV4> {
    old.difference(new).map(|(_, backend)| *backend).collect()
}

/// The UDP pairs of the maps pinned in `bpf_dir` (what a previous daemon left, read before
/// this one's first sync overwrites them). Unreadable maps give none: the first sync then
/// sweeps nothing, which only leaves what was stale before the restart.
pub fn pinned_udp_backends(bpf_dir: &Path) -> UdpBackends {
    let services = match super::kernel_maps::read_services(bpf_dir) {
        Ok(services) => services,
        Err(error) => {
            tracing::warn!("reading the pinned services for the stale UDP socket sweep: {error}");
            return UdpBackends::new();
        }
    };
    services
        .into_iter()
        .filter(|service| service.protocol == "UDP")
        .flat_map(|service| {
            let frontend = Frontend {
                vip: service.vip,
                port: service.port,
                protocol: L4Protocol::Udp,
            };
            service
                .backends
                .into_iter()
                .flatten()
                .map(move |backend| (frontend, backend))
        })
        .collect()
}

/// What the sweeps did, for the daemon's metrics.
#[derive(Clone, Debug, Default)]
pub struct SocketCounters {
    /// Sockets destroyed.
    pub destroyed: Counter,
    /// Namespace sweeps that failed (the sync itself still succeeded).
    pub failures: Counter,
}

/// The network namespaces of the processes in `cgroup` and its descendants, one open handle
/// per namespace. Processes that exit while this runs are skipped.
pub fn client_namespaces(cgroup: &Path) -> io::Result<Vec<File>> {
    let mut pids = Vec::new();
    collect_pids(cgroup, &mut pids)?;
    let mut seen = BTreeSet::new();
    let mut namespaces = Vec::new();
    for pid in pids {
        let Ok(file) = File::open(format!("/proc/{pid}/ns/net")) else {
            continue; // exited
        };
        let meta = file.metadata()?;
        if seen.insert((meta.dev(), meta.ino())) {
            namespaces.push(file);
        }
    }
    Ok(namespaces)
}

fn collect_pids(dir: &Path, pids: &mut Vec<u32>) -> io::Result<()> {
    match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
        // A child cgroup removed while walking.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            collect_pids(&entry.path(), pids)?;
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("listing the processes of cgroup {cgroup}: {source}")]
    Cgroup {
        cgroup: String,
        #[source]
        source: io::Error,
    },
    #[error("entering a client network namespace: {0}")]
    Setns(#[source] nix::Error),
    #[error(transparent)]
    Diag(#[from] sock_diag::SockDiagError),
    #[error("the sweep thread panicked")]
    Panicked,
}

/// Destroys, in `namespace`, the connected UDP sockets to `backends`. `setns` changes only the
/// calling thread, so a throwaway thread enters the namespace and the daemon's threads stay
/// where they are.
fn sweep_namespace(
    namespace: &File,
    backends: &BTreeSet<SocketAddrV4>,
) -> Result<Destroyed, SweepError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(SweepError::Setns)?;
                Ok(sock_diag::destroy_udp_connected_to(backends)?)
            })
            .join()
            .unwrap_or(Err(SweepError::Panicked))
    })
}

/// What one sweep over every client namespace did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub namespaces: usize,
    pub failed: usize,
    pub destroyed: Destroyed,
}

/// Destroys the connected UDP sockets to `backends` in every namespace of `cgroup`'s
/// processes. A namespace that fails is logged and counted; the others are still swept.
pub fn sweep(cgroup: &Path, backends: &BTreeSet<SocketAddrV4>) -> Result<Sweep, SweepError> {
    let namespaces = client_namespaces(cgroup).map_err(|source| SweepError::Cgroup {
        cgroup: cgroup.display().to_string(),
        source,
    })?;
    let mut total = Sweep {
        namespaces: namespaces.len(),
        ..Sweep::default()
    };
    for namespace in &namespaces {
        match sweep_namespace(namespace, backends) {
            Ok(done) => {
                total.destroyed.matched += done.matched;
                total.destroyed.destroyed += done.destroyed;
            }
            Err(error) => {
                total.failed += 1;
                tracing::error!("destroying stale UDP sockets in a client namespace: {error}");
            }
        }
    }
    Ok(total)
}

/// The eBPF mode, with each sync followed by destroying the connected UDP sockets of keel's
/// clients to the backends it removed.
pub struct DestroyStaleSockets {
    inner: Box<dyn ServiceProxy>,
    cgroup: PathBuf,
    /// The UDP pairs of the last table synced without error (or, before the first sync, of
    /// the maps a previous daemon left pinned).
    synced: UdpBackends,
    counters: SocketCounters,
}

impl DestroyStaleSockets {
    /// `previous`: what the kernel's maps held when this daemon started, so that a backend
    /// removed while no daemon ran is swept on the first sync.
    pub fn new(
        inner: Box<dyn ServiceProxy>,
        cgroup: PathBuf,
        previous: UdpBackends,
        counters: SocketCounters,
    ) -> Self {
        Self {
            inner,
            cgroup,
            synced: previous,
            counters,
        }
    }
}

impl DestroyStaleSockets {
    fn sweep_removed(&mut self, removed: &BTreeSet<SocketAddrV4>) {
        // A failed sweep leaves stale sockets until their owners give up on them; failing the
        // sync would only make the daemon rewrite maps that are already right.
        match sweep(&self.cgroup, removed) {
            Ok(done) => {
                self.counters
                    .destroyed
                    .inc_by(done.destroyed.destroyed as u64);
                self.counters.failures.inc_by(done.failed as u64);
                tracing::info!(
                    backends = removed.len(),
                    namespaces = done.namespaces,
                    failed = done.failed,
                    matched = done.destroyed.matched,
                    destroyed = done.destroyed.destroyed,
                    "destroyed stale UDP sockets"
                );
            }
            Err(error) => {
                self.counters.failures.inc();
                tracing::error!(
                    backends = removed.len(),
                    "destroying stale UDP sockets failed: {error}"
                );
            }
        }
    }
}

/// Brings `pairs` up to `table` for the `changed` frontends only, and returns the backends
/// that left a UDP service port: the same as [`removed_backends`] over whole tables when
/// nothing else changed, at the cost of the change alone.
pub fn update_pairs(
    pairs: &mut UdpBackends,
    table: &ServiceTable,
    changed: &BTreeSet<Frontend>,
) -> BTreeSet<SocketAddrV4> {
    let mut removed = BTreeSet::new();
    let lowest = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let highest = SocketAddrV4::new(Ipv4Addr::BROADCAST, u16::MAX);
    for frontend in changed.iter().filter(|f| f.protocol == L4Protocol::Udp) {
        let now = table
            .services
            .get(frontend)
            .map_or(&[][..], |entry| entry.backends.as_slice());
        let before: Vec<(Frontend, SocketAddrV4)> = pairs
            .range((*frontend, lowest)..=(*frontend, highest))
            .copied()
            .collect();
        for pair in before {
            if !now.contains(&pair.1) {
                pairs.remove(&pair);
                removed.insert(pair.1);
            }
        }
        pairs.extend(now.iter().map(|b| (*frontend, *b)));
    }
    removed
}

impl ServiceProxy for DestroyStaleSockets {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        self.sync_changes(table, &TableChanges::All)
    }

    /// Sockets are destroyed only after the maps are written: one destroyed earlier could
    /// connect again and be sent to the removed backend once more. A failed sync destroys
    /// nothing and keeps the last good pairs, so the retry's diff still covers this change.
    fn sync_changes(
        &mut self,
        table: &ServiceTable,
        changes: &TableChanges,
    ) -> Result<SyncStats, ProxyError> {
        let stats = self.inner.sync_changes(table, changes)?;
        let removed = match changes {
            TableChanges::All => {
                let now = udp_backends(table);
                let removed = removed_backends(&self.synced, &now);
                self.synced = now;
                removed
            }
            TableChanges::Frontends(changed) => update_pairs(&mut self.synced, table, changed),
        };
        if !removed.is_empty() {
            self.sweep_removed(&removed);
        }
        Ok(stats)
    }

    fn unprogrammed(&self) -> &[crate::Unprogrammed] {
        self.inner.unprogrammed()
    }

    fn join_cluster(
        &mut self,
        node_ip: std::net::Ipv4Addr,
        pod_cidr: keel_host::cidr::Ipv4Cidr,
    ) -> Result<(), ProxyError> {
        self.inner.join_cluster(node_ip, pod_cidr)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::service_table::ServicePortEntry;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    fn backend(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, last), 5353)
    }

    fn table(ports: &[(u16, L4Protocol, &[SocketAddrV4])]) -> ServiceTable {
        let mut table = ServiceTable::default();
        for (port, protocol, backends) in ports {
            table.services.insert(
                Frontend {
                    vip: VIP,
                    port: *port,
                    protocol: *protocol,
                },
                ServicePortEntry {
                    name: format!("default/svc:{port}"),
                    backends: backends.to_vec(),
                    affinity_timeout: None,
                },
            );
        }
        table
    }

    /// The backends removed from `old` to `new`, found both ways: over whole tables, and from
    /// the changed frontends alone (which must agree, and leave the same pairs).
    fn removed(old: &ServiceTable, new: &ServiceTable) -> Vec<SocketAddrV4> {
        let whole = removed_backends(&udp_backends(old), &udp_backends(new));
        let mut pairs = udp_backends(old);
        let by_change = update_pairs(&mut pairs, new, &new.changed_since(old));
        assert_eq!(by_change, whole, "only the changed frontends looked at");
        assert_eq!(
            pairs,
            udp_backends(new),
            "pairs brought up to the new table"
        );
        whole.into_iter().collect()
    }

    #[test]
    fn a_replaced_udp_backend_is_removed_and_a_kept_one_is_not() {
        let old = table(&[(53, L4Protocol::Udp, &[backend(1), backend(2)])]);
        let new = table(&[(53, L4Protocol::Udp, &[backend(2), backend(3)])]);
        assert_eq!(removed(&old, &new), [backend(1)]);
        assert!(removed(&new, &new).is_empty());
    }

    #[test]
    fn tcp_backends_are_never_removed() {
        let old = table(&[(80, L4Protocol::Tcp, &[backend(1)])]);
        assert!(removed(&old, &ServiceTable::default()).is_empty());
    }

    #[test]
    fn a_deleted_udp_service_port_removes_all_its_backends() {
        let old = table(&[(53, L4Protocol::Udp, &[backend(1), backend(2)])]);
        assert_eq!(
            removed(&old, &ServiceTable::default()),
            [backend(1), backend(2)]
        );
    }

    #[test]
    fn a_backend_leaving_one_udp_port_counts_even_if_another_keeps_it() {
        let old = table(&[
            (53, L4Protocol::Udp, &[backend(1)]),
            (54, L4Protocol::Udp, &[backend(1)]),
        ]);
        let new = table(&[
            (53, L4Protocol::Udp, &[backend(2)]),
            (54, L4Protocol::Udp, &[backend(1)]),
        ]);
        assert_eq!(removed(&old, &new), [backend(1)]);
    }

    #[test]
    fn namespaces_are_found_once_each_in_a_cgroup_subtree() {
        // This process's own cgroup: its processes may share namespaces, but each namespace
        // appears once, and this process's is among them.
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("keel needs cgroup v2: this process has no v2 cgroup");
        let mount = keel_host::cgroup::cgroup2_mount().expect("keel needs a cgroup v2 mount");
        let dir = mount.join(path.trim_start_matches('/'));
        let namespaces = client_namespaces(&dir).expect("listed");
        let inodes: BTreeSet<u64> = namespaces
            .iter()
            .map(|f| f.metadata().expect("stat").ino())
            .collect();
        assert_eq!(inodes.len(), namespaces.len(), "deduplicated");
        let mine = std::fs::metadata("/proc/self/ns/net").expect("stat").ino();
        assert!(inodes.contains(&mine), "this process's namespace is found");
    }
}
