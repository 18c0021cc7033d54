//! Stale UDP flows of the netfilter modes: which conntrack entries a service table change
//! leaves pointing at the wrong place, and a [`ServiceProxy`] wrapper that deletes them after
//! each successful sync.
//!
//! iptables, nftables and IPVS (with `conntrack=1`) translate a UDP flow once, when conntrack
//! sees its first packet; later packets follow the entry, not the rules. A resolver that
//! reuses one source port keeps its entry alive, so when its backend leaves it stays DNATed to
//! the dead address for good. As kube-proxy does, after a sync:
//! - for every UDP service port that lost backends, entries to its frontend whose reply comes
//!   from a lost backend are deleted;
//! - for every UDP service port that went from no backends to some, every entry to its
//!   frontend is deleted: those were made while there was nothing to translate to, and would
//!   keep the flow untranslated.
//!
//! The eBPF mode needs none of this: its tc path re-chooses a UDP flow whose backend left, and
//! its connected sockets to a removed backend are destroyed by [`crate::ebpf::stale_sockets`].

use std::collections::BTreeSet;

use prometheus_client::metrics::counter::Counter;

use crate::{
    conntrack::{self, UdpFilter},
    service_table::{L4Protocol, ServiceTable},
    ProxyError, ServiceProxy, SyncStats,
};

/// The conntrack entries that `new` leaves stale after `old` was in the kernel.
///
/// `old` is `None` when nothing is known of what the kernel had (the daemon just started):
/// every UDP service port with backends then counts as new, so that flows left from before
/// the restart to backends that have since gone are not kept forever. The cost is that live
/// UDP flows are translated again on their next packet.
pub fn stale_filters(old: Option<&ServiceTable>, new: &ServiceTable) -> Vec<UdpFilter> {
    let empty = ServiceTable::default();
    let old = old.unwrap_or(&empty);
    let mut filters = BTreeSet::new();
    for (frontend, before) in &old.services {
        if frontend.protocol != L4Protocol::Udp {
            continue;
        }
        let now = new
            .services
            .get(frontend)
            .map_or(&[][..], |entry| entry.backends.as_slice());
        for backend in before.backends.iter().filter(|b| !now.contains(b)) {
            filters.insert(UdpFilter {
                dst: frontend.vip,
                port: frontend.port,
                reply_src: Some(*backend),
            });
        }
    }
    for (frontend, after) in &new.services {
        if frontend.protocol != L4Protocol::Udp || after.backends.is_empty() {
            continue;
        }
        let had_none = old
            .services
            .get(frontend)
            .is_none_or(|before| before.backends.is_empty());
        if had_none {
            filters.insert(UdpFilter {
                dst: frontend.vip,
                port: frontend.port,
                reply_src: None,
            });
        }
    }
    filters.into_iter().collect()
}

/// What the flushes did, for the daemon's metrics.
#[derive(Clone, Debug, Default)]
pub struct FlushCounters {
    /// Conntrack entries deleted.
    pub deleted: Counter,
    /// Flushes that failed (the sync itself still succeeded).
    pub failures: Counter,
}

/// A netfilter mode whose syncs are followed by deleting the UDP flows they left stale.
pub struct FlushStaleUdp {
    inner: Box<dyn ServiceProxy>,
    /// The last table the inner mode synced without error.
    synced: Option<ServiceTable>,
    counters: FlushCounters,
}

impl FlushStaleUdp {
    pub fn new(inner: Box<dyn ServiceProxy>, counters: FlushCounters) -> Self {
        Self {
            inner,
            synced: None,
            counters,
        }
    }
}

impl ServiceProxy for FlushStaleUdp {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// The flush runs only after the rules are in: deleting an entry before then would let
    /// the flow's next packet be translated by the old rules again. A failed sync flushes
    /// nothing and keeps the last good table, so the retry's diff still covers this change.
    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        let stats = self.inner.sync(table)?;
        let filters = stale_filters(self.synced.as_ref(), table);
        self.synced = Some(table.clone());
        if filters.is_empty() {
            return Ok(stats);
        }
        // A failed flush leaves stale flows until they idle out; failing the sync would only
        // make the daemon rewrite rules that are already right.
        match conntrack::delete_udp(&filters) {
            Ok(deleted) => {
                self.counters.deleted.inc_by(deleted as u64);
                tracing::info!(
                    filters = filters.len(),
                    deleted,
                    "flushed stale UDP conntrack entries"
                );
            }
            Err(error) => {
                self.counters.failures.inc();
                tracing::error!(
                    filters = filters.len(),
                    "flushing stale UDP conntrack entries failed: {error}"
                );
            }
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
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;
    use crate::service_table::{Frontend, ServicePortEntry};

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    fn backend(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, last), 5353)
    }

    fn frontend(vip: Ipv4Addr, port: u16, protocol: L4Protocol) -> Frontend {
        Frontend {
            vip,
            port,
            protocol,
        }
    }

    /// `(frontend, backends)` pairs; backends given in any order, possibly repeated, as
    /// hostile input would.
    fn table(ports: &[(Frontend, &[SocketAddrV4])]) -> ServiceTable {
        let mut table = ServiceTable::default();
        for (frontend, backends) in ports {
            table.services.insert(
                *frontend,
                ServicePortEntry {
                    name: format!("default/svc:{}", frontend.port),
                    backends: backends.to_vec(),
                    affinity_timeout: None,
                },
            );
        }
        table
    }

    fn removed(vip: Ipv4Addr, port: u16, b: SocketAddrV4) -> UdpFilter {
        UdpFilter {
            dst: vip,
            port,
            reply_src: Some(b),
        }
    }

    fn everything_to(vip: Ipv4Addr, port: u16) -> UdpFilter {
        UdpFilter {
            dst: vip,
            port,
            reply_src: None,
        }
    }

    #[test]
    fn a_replaced_backend_is_flushed_and_a_kept_one_is_not() {
        let dns = frontend(VIP, 53, L4Protocol::Udp);
        let old = table(&[(dns, &[backend(1), backend(2)])]);
        let new = table(&[(dns, &[backend(2), backend(3)])]);
        assert_eq!(
            stale_filters(Some(&old), &new),
            [removed(VIP, 53, backend(1))]
        );
        assert!(stale_filters(Some(&new), &new).is_empty(), "no change");
    }

    #[test]
    fn tcp_ports_are_never_flushed() {
        let http = frontend(VIP, 80, L4Protocol::Tcp);
        let old = table(&[(http, &[backend(1)])]);
        let new = table(&[(http, &[backend(2)])]);
        assert!(stale_filters(Some(&old), &new).is_empty());
        assert!(stale_filters(None, &new).is_empty());
        assert!(stale_filters(Some(&old), &ServiceTable::default()).is_empty());
    }

    #[test]
    fn zero_to_some_flushes_everything_to_the_frontend() {
        let dns = frontend(VIP, 53, L4Protocol::Udp);
        let old = table(&[(dns, &[])]);
        let new = table(&[(dns, &[backend(1)])]);
        assert_eq!(stale_filters(Some(&old), &new), [everything_to(VIP, 53)]);
        // A service port that did not exist at all is "zero" too.
        assert_eq!(
            stale_filters(Some(&ServiceTable::default()), &new),
            [everything_to(VIP, 53)]
        );
        // Some to zero: the lost backends' flows go; nothing is there to flush "to".
        assert_eq!(
            stale_filters(Some(&new), &old),
            [removed(VIP, 53, backend(1))]
        );
    }

    #[test]
    fn a_deleted_service_port_flushes_all_its_backends() {
        let dns = frontend(VIP, 53, L4Protocol::Udp);
        let old = table(&[(dns, &[backend(1), backend(2)])]);
        assert_eq!(
            stale_filters(Some(&old), &ServiceTable::default()),
            [removed(VIP, 53, backend(1)), removed(VIP, 53, backend(2))]
        );
    }

    #[test]
    fn a_backend_whose_port_changed_counts_as_removed() {
        let dns = frontend(VIP, 53, L4Protocol::Udp);
        let moved = SocketAddrV4::new(*backend(1).ip(), 5454);
        let old = table(&[(dns, &[backend(1)])]);
        let new = table(&[(dns, &[moved])]);
        assert_eq!(
            stale_filters(Some(&old), &new),
            [removed(VIP, 53, backend(1))]
        );
    }

    #[test]
    fn node_ports_flush_by_port_on_any_address() {
        let node_port = frontend(Ipv4Addr::UNSPECIFIED, 30053, L4Protocol::Udp);
        let old = table(&[(node_port, &[backend(1)])]);
        let new = table(&[(node_port, &[backend(2)])]);
        let filters = stale_filters(Some(&old), &new);
        assert_eq!(filters, [removed(Ipv4Addr::UNSPECIFIED, 30053, backend(1))]);
        assert!(filters[0].dst.is_unspecified());
    }

    #[test]
    fn unknown_history_flushes_every_udp_port_with_backends() {
        let dns = frontend(VIP, 53, L4Protocol::Udp);
        let idle = frontend(VIP, 54, L4Protocol::Udp);
        let http = frontend(VIP, 80, L4Protocol::Tcp);
        let new = table(&[(dns, &[backend(1)]), (idle, &[]), (http, &[backend(1)])]);
        assert_eq!(stale_filters(None, &new), [everything_to(VIP, 53)]);
    }

    #[test]
    fn duplicates_and_unsorted_backends_give_one_filter_each() {
        let dns = frontend(VIP, 53, L4Protocol::Udp);
        let other = frontend(Ipv4Addr::new(10, 96, 0, 11), 53, L4Protocol::Udp);
        let old = table(&[
            (dns, &[backend(3), backend(1), backend(3), backend(1)]),
            (other, &[backend(1)]),
        ]);
        let new = table(&[(dns, &[backend(3)]), (other, &[backend(1)])]);
        assert_eq!(
            stale_filters(Some(&old), &new),
            [removed(VIP, 53, backend(1))],
            "one filter per (frontend, backend); the other service's flows to .1 stay"
        );
    }

    /// A mode that fails when told to, to check the wrapper keeps the last good table.
    struct Flaky {
        fail: bool,
    }

    impl ServiceProxy for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn sync(&mut self, _: &ServiceTable) -> Result<SyncStats, ProxyError> {
            if self.fail {
                return Err(ProxyError::TooManyBackends { count: 2, max: 1 });
            }
            Ok(SyncStats::default())
        }
    }

    #[test]
    fn a_failed_sync_keeps_the_last_good_table() {
        let http = frontend(VIP, 80, L4Protocol::Tcp);
        let one = table(&[(http, &[backend(1)])]);
        let two = table(&[(http, &[backend(2)])]);
        let mut proxy =
            FlushStaleUdp::new(Box::new(Flaky { fail: false }), FlushCounters::default());
        proxy.sync(&one).expect("synced");
        proxy.inner = Box::new(Flaky { fail: true });
        assert!(proxy.sync(&two).is_err());
        assert_eq!(
            proxy.synced.as_ref(),
            Some(&one),
            "the failed table is not remembered"
        );
        assert_eq!(proxy.name(), "flaky");
    }
}
