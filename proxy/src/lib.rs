//! keel's service proxy: from Services and EndpointSlices to kernel state.
//!
//! # Layout
//! - [`tracker`] → [`service_table`]: objects in, the desired datapath out (no kernel).
//! - the modes, each a [`ServiceProxy`]: [`ebpf`], [`iptables`], [`nftables`], [`ipvs`].
//! - [`route`]: the blackhole route and dummy interface that keep ClusterIPs on the node.
//! - [`stale_udp`] → [`conntrack`]: after a netfilter mode's sync, the UDP conntrack entries
//!   the change left pointing at removed backends are deleted.
//! - [`ebpf`]'s stale-socket sweep → [`sock_diag`]: after an eBPF sync, connected UDP sockets
//!   to removed backends are destroyed.
//! - [`conntrack`] and [`sock_diag`] → `netlink_request`: one request and its replies over a
//!   netlink socket.
//!
//! Modes: [`ebpf`] (keel's own programs), [`iptables`] and [`nftables`] (kube-proxy's rule
//! layouts), [`ipvs`] (virtual services over generic netlink).
//!
//! Every mode implements [`ServiceProxy`]; the daemon feeds all of them from one change
//! tracker. A proxy never talks to the control plane, and the tracker never touches the kernel.
//!
//! Removing a mode's state is a function of its module (`iptables::cleanup`,
//! `nftables::cleanup`, `ipvs::cleanup`, `ebpf::pins::remove_all`), not a method of the trait:
//! it runs for the modes that are *not* running (kube-proxy's rule: a starting mode removes the
//! others'), and building those would mean loading and attaching the eBPF programs only to
//! detach them, or opening the IPVS family on a kernel that has none (and so nothing to
//! remove).

pub mod conntrack;
pub mod ebpf;
pub mod iptables;
pub mod ipvs;
mod netlink_request;
pub mod nftables;
pub mod route;
pub mod service_table;
pub mod sock_diag;
pub mod stale_udp;
pub mod tracker;

pub use netlink_request::NetlinkError;

use thiserror::Error;

use crate::service_table::{ServiceTable, TableChanges};

/// What one sync wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Map entries (or rules) written.
    pub written: usize,
    /// Map entries (or rules) removed.
    pub removed: usize,
}

/// A service port a sync left out of the kernel (or at its previous state), and why. Reported
/// by [`ServiceProxy::unprogrammed`] so that one service that does not fit never holds back
/// the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unprogrammed {
    /// `namespace/name:port-name`.
    pub service: String,
    pub frontend: service_table::Frontend,
    /// The service was programmed before: it keeps its previous backends.
    pub kept_previous: bool,
    pub reason: UnprogrammedReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UnprogrammedReason {
    /// Not transient: retried when the table changes (a removal may free room), never in a loop.
    #[error("no room in {what} (room for {limit})")]
    Capacity { what: &'static str, limit: u64 },
    /// The kernel refused a new entry (E2BIG): the map is smaller than the writer counted on.
    #[error("the kernel map {map} is full")]
    MapFull { map: &'static str },
    /// A write the kernel refused for another reason: the sync reports an error, so it is
    /// retried.
    #[error("write failed: {0}")]
    WriteFailed(String),
}

impl UnprogrammedReason {
    /// The `reason` label of the metric.
    pub fn label(&self) -> &'static str {
        match self {
            UnprogrammedReason::Capacity { .. } | UnprogrammedReason::MapFull { .. } => "capacity",
            UnprogrammedReason::WriteFailed(_) => "write_error",
        }
    }
}

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("{map}: {operation} failed: {source}")]
    Map {
        map: &'static str,
        operation: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("out of {what}: {limit} in use")]
    Exhausted { what: &'static str, limit: u32 },
    #[error("{map}: reading its memory: {message}")]
    MapMemory { map: &'static str, message: String },
    #[error("reading the monotonic clock: {0}")]
    Clock(#[source] nix::Error),
    #[error(transparent)]
    Iptables(#[from] iptables::IptablesError),
    #[error(transparent)]
    Nft(#[from] nftables::NftError),
    #[error(transparent)]
    Ipvs(#[from] ipvs::IpvsError),
    #[error("a service has {count} backends; at most {max} fit in one service")]
    TooManyBackends { count: usize, max: usize },
    /// Everything else was applied; these writes are retried by the next sync.
    #[error("{failed} writes failed (the rest applied), first: {first}")]
    Incomplete { failed: usize, first: String },
}

pub trait ServiceProxy {
    /// The mode's name, as given to `--proxy-mode`.
    fn name(&self) -> &'static str;
    /// Makes the kernel state equal to `table`. Idempotent: after an error, calling it again
    /// with the same table converges.
    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError>;
    /// [`Self::sync`], told which frontends differ from the table the last sync applied
    /// without error (the caller says [`TableChanges::All`] after an error, and the first
    /// time). A mode that writes per service touches only those, so one endpoint change costs
    /// the same at 10 services as at 10,000; a mode that rewrites everything ignores them.
    fn sync_changes(
        &mut self,
        table: &ServiceTable,
        changes: &TableChanges,
    ) -> Result<SyncStats, ProxyError> {
        let _ = changes;
        self.sync(table)
    }
    /// The service ports the last sync could not program. Modes that program all or nothing
    /// report none.
    fn unprogrammed(&self) -> &[Unprogrammed] {
        &[]
    }
    /// This node's place in a cluster: the address other nodes reach it at and its pods'
    /// network. A flow that reaches this node from outside for a backend on another node must
    /// leave with the node's address as its source, or the reply would bypass the node: the
    /// eBPF mode source-NATs such flows itself; the netfilter modes masquerade by rule and
    /// need nothing here.
    fn join_cluster(
        &mut self,
        node_ip: std::net::Ipv4Addr,
        pod_cidr: keel_host::cidr::Ipv4Cidr,
    ) -> Result<(), ProxyError> {
        let _ = (node_ip, pod_cidr);
        Ok(())
    }
}
