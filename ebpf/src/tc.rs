//! Per-packet load balancing on tc, for traffic no local socket made: a client in a network
//! namespace outside keel's cgroup, or a packet that arrived from another node.
//!
//! - ingress (`keel_tc_in`): a packet to ClusterIP:port (or NodeIP:nodePort) has its
//!   destination rewritten to a backend. The first packet of a flow picks the backend (Maglev)
//!   and records the flow in both directions in the conntrack LRU; later packets follow it.
//! - egress (`keel_tc_out`): a reply from a backend to a tracked client has its source
//!   rewritten back to the service, so the client sees the address it dialled.
//! - source NAT, in a cluster: a flow whose backend runs on another node leaves this node
//!   with the node's address and a port of its own as its source (kube-proxy masquerades
//!   the same flows), or the backend's reply would go straight to the client, which would
//!   drop it. The reply comes back to this node's ingress and is translated to the client.
//!
//! - IP fragments: only a datagram's first fragment carries its ports. The first fragment of
//!   a translated flow leaves them in the fragment LRU under the datagram's (saddr, daddr, IP
//!   id, proto); a later fragment finds them there and follows the same conntrack entry, with
//!   only its addresses rewritten (it has no L4 header; the first fragment's L4 checksum
//!   already covers the new pseudo-header). A later fragment with no entry (its first came
//!   late, or was evicted) passes untouched, as Cilium's does.
//! - ICMP errors about a translated flow get their quoted packet translated back
//!   (`tc_icmp`), so port unreachable and path MTU discovery work through a service.
//!
//! A new flow's backend is the Maglev entry of a hash of its 5-tuple with a cluster-wide seed
//! (`keel_common::flow_hash`), so every node sends a flow to the same backend.
//!
//! Checksums are patched incrementally (`bpf_l3_csum_replace`, `bpf_l4_csum_replace` with the
//! pseudo-header flag for address changes), never recomputed.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::bpf_redirect_neigh,
    macros::{classifier, map},
    maps::{Array, LruHashMap},
    programs::TcContext,
};
use keel_common::{
    flow_hash, CtKey, CtValue, FragKey, FragPorts, SnatConfig, CT_FORWARD, CT_REPLY, CT_STATE_ESTABLISHED,
    CT_STATE_NONE, CT_STATE_SYN, DEFAULT_FRAG_MAP_ENTRIES, DEFAULT_MAGLEV_HASH_SEED, PROTO_TCP, PROTO_UDP,
    SNAT_PORTS, SNAT_PORT_MIN,
};

use keel_common::monitor::{
    MonitorEvent, EVENT_CONNTRACK, EVENT_DROP, EVENT_TRANSLATE, PATH_TC_INGRESS, REASON_CT_COLLISION,
    REASON_CT_MISS, REASON_CT_REPLY_EVICTED, REASON_NO_BACKEND, REASON_NO_SNAT_PORT,
};

use aya_log_ebpf::debug;

use crate::{
    ct::{self, Table},
    debug_log,
    lb::{backend, count_packet, lookup_service_id, select_backend, Choice, Client, Lookup},
    monitor,
    tc_icmp::{self, Side},
};

/// SNAT settings, one entry. Name must equal `keel_common::SNAT_CONFIG_MAP`.
#[map(name = "keel_snat_v1")]
static SNAT_CONFIG: Array<SnatConfig> = Array::with_max_entries(1, 0);

/// The ports of fragmented datagrams, for their later fragments. Name must equal
/// `keel_common::FRAG_MAP`.
#[map(name = "keel_frag4_v1")]
static FRAGMENTS: LruHashMap<FragKey, FragPorts> = LruHashMap::with_max_entries(DEFAULT_FRAG_MAP_ENTRIES, 0);

/// The seed of the flow hash. The loader may set it (`keel_common::MAGLEV_HASH_SEED_GLOBAL`,
/// the daemon's `--maglev-hash-seed`): a read-only global, fixed when the program is loaded.
#[unsafe(no_mangle)]
static MAGLEV_HASH_SEED: u32 = DEFAULT_MAGLEV_HASH_SEED;

/// Source ports tried for a new source-NATed flow before it is dropped (each a different
/// stride from the flow's hash, so flows that collide once do not keep colliding).
const SNAT_ATTEMPTS: u32 = 8;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_ID_OFF: usize = ETH_HLEN + 4;
const IP_FRAG_OFF: usize = ETH_HLEN + 6;
/// The fragment offset bits of the IP flags/offset field; the "more fragments" flag.
const IP_OFFSET: u16 = 0x1fff;
const IP_MF: u16 = 0x2000;
const IP_CSUM_OFF: usize = ETH_HLEN + 10;
const IP_SRC_OFF: usize = ETH_HLEN + 12;
const IP_DST_OFF: usize = ETH_HLEN + 16;
/// `BPF_F_PSEUDO_HDR`: the changed field is part of the L4 pseudo-header (an IP address).
const BPF_F_PSEUDO_HDR: u64 = 1 << 4;
/// `BPF_F_MARK_MANGLED_0`: a UDP checksum of 0 means "none" and must stay 0.
const BPF_F_MARK_MANGLED_0: u64 = 1 << 5;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

/// The fields of an IPv4 TCP/UDP packet that translation reads. Addresses and ports in
/// network byte order.
struct Flow {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    /// Offset of the L4 header.
    l4: usize,
    /// A TCP SYN without ACK: the first packet of a connection.
    syn: bool,
    /// The TCP flags (0 for UDP and later fragments).
    flags: u8,
    /// The IP identification field, network byte order.
    id: u16,
    frag: Frag,
}

/// Where a packet sits in its datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frag {
    /// Not fragmented.
    Whole,
    /// Offset 0 with more to come: carries the L4 header.
    First,
    /// Offset > 0: no L4 header; the ports came from the fragment map.
    Later,
}

impl Flow {
    /// The conntrack key of this packet, seen as `direction`.
    fn key(&self, direction: u8) -> CtKey {
        CtKey {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            direction,
            pad: 0,
        }
    }

    /// The key of this packet's datagram in the fragment map.
    fn frag_key(&self) -> FragKey {
        FragKey { saddr: self.saddr, daddr: self.daddr, id: self.id, proto: self.proto, pad: 0 }
    }

    fn csum_offset(&self) -> usize {
        if self.proto == PROTO_TCP {
            self.l4 + 16
        } else {
            self.l4 + 6
        }
    }

    /// Size flag for L4 checksum updates (UDP keeps a zero checksum zero).
    fn l4_flags(&self, size: u64) -> u64 {
        if self.proto == PROTO_UDP {
            size | BPF_F_MARK_MANGLED_0
        } else {
            size
        }
    }
}

/// Reads the flow of an Ethernet + IPv4 + TCP/UDP packet (IP options are fine); `None` for
/// anything else, and for a later fragment whose datagram's ports are not known.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Flow> {
    let ethertype = u16::from_be(ctx.load::<u16>(12).ok()?);
    if ethertype != ETH_P_IP {
        return None;
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).ok()?;
    if version_ihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9).ok()?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let l4 = ETH_HLEN + ihl;
    let saddr: u32 = ctx.load(IP_SRC_OFF).ok()?;
    let daddr: u32 = ctx.load(IP_DST_OFF).ok()?;
    let id: u16 = ctx.load(IP_ID_OFF).ok()?;
    let frag_field = u16::from_be(ctx.load::<u16>(IP_FRAG_OFF).ok()?);
    if frag_field & IP_OFFSET != 0 {
        let key = FragKey { saddr, daddr, id, proto, pad: 0 };
        // SAFETY: copied at once; LRU entries are RCU-freed.
        let ports = (unsafe { FRAGMENTS.get(&key) }).copied()?;
        return Some(Flow {
            saddr,
            daddr,
            sport: ports.sport,
            dport: ports.dport,
            proto,
            l4,
            syn: false,
            flags: 0,
            id,
            frag: Frag::Later,
        });
    }
    let flags: u8 = if proto == PROTO_TCP { ctx.load(l4 + 13).ok()? } else { 0 };
    Some(Flow {
        saddr,
        daddr,
        sport: ctx.load(l4).ok()?,
        dport: ctx.load(l4 + 2).ok()?,
        proto,
        l4,
        syn: flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0,
        flags,
        id,
        frag: if frag_field & IP_MF != 0 { Frag::First } else { Frag::Whole },
    })
}

/// A first fragment about to be translated leaves its ports for the datagram's later
/// fragments, under its addresses as they arrive (before translation). A full LRU evicts the
/// oldest datagram: its later fragments then pass untranslated, and the datagram is lost.
#[inline(always)]
fn note_fragment(flow: &Flow) {
    if flow.frag == Frag::First {
        let ports = FragPorts { sport: flow.sport, dport: flow.dport };
        let _ = FRAGMENTS.insert(&flow.frag_key(), &ports, 0);
    }
}

#[classifier]
pub fn keel_tc_in(ctx: TcContext) -> i32 {
    match ingress(&ctx) {
        Some(verdict) => verdict,
        None => TC_ACT_OK,
    }
}

#[classifier]
pub fn keel_tc_out(ctx: TcContext) -> i32 {
    egress(&ctx);
    TC_ACT_OK
}

/// DNAT towards a backend (and SNAT, for a remote one), or the reply of a source-NATed flow
/// back to its client. `None`: not ours, let it pass.
#[inline(always)]
fn ingress(ctx: &TcContext) -> Option<i32> {
    let Some(flow) = parse(ctx) else {
        icmp_error(ctx, CT_FORWARD, Side::Source);
        return None;
    };
    if let Some(verdict) = snat_reply(ctx, &flow) {
        return Some(verdict);
    }
    let forward = flow.key(CT_FORWARD);
    let target = match tracked(&forward, &flow) {
        Some((target, Table::Syn)) if !flow.syn => {
            promote(&flow, &forward, &target);
            target
        }
        Some((target, table)) => {
            keep_reply_entry(&flow, &target, table);
            target
        }
        // A later fragment only follows its flow: if the flow is gone (or its backend left
        // since the first fragment), a new choice would split the datagram.
        None if flow.frag == Frag::Later => return None,
        None => match new_flow(&flow, &forward) {
            Flow4::NotAService => return untranslated(&flow),
            // No ready backend, or no source port left: drop, as a closed port would be
            // unreachable.
            Flow4::Refused(reason) => {
                if debug_log::enabled() {
                    debug!(ctx, "tc ingress drop {:i}:{} -> {:i}:{} proto {}: reason {}", u32::from_be(flow.saddr), u16::from_be(flow.sport), u32::from_be(flow.daddr), u16::from_be(flow.dport), flow.proto, reason);
                }
                monitor::report(|| {
                    let service_id = lookup_service_id(flow.daddr, flow.dport, flow.proto);
                    event(&flow, EVENT_DROP, reason, service_id, None)
                });
                return Some(TC_ACT_SHOT);
            }
            Flow4::To(target) => {
                if flow.proto == PROTO_TCP && !flow.syn {
                    // Mid-connection with no entry: evicted, or older than the datapath.
                    if debug_log::enabled() {
                        debug!(ctx, "tc ingress conntrack miss {:i}:{} -> {:i}:{}", u32::from_be(flow.saddr), u16::from_be(flow.sport), u32::from_be(flow.daddr), u16::from_be(flow.dport));
                    }
                    monitor::report(|| event(&flow, EVENT_CONNTRACK, REASON_CT_MISS, target.service_id, Some(&target)));
                }
                monitor::report(|| event(&flow, EVENT_TRANSLATE, 0, target.service_id, Some(&target)));
                target
            }
        },
    };
    count_packet(target.service_id, ctx.len());
    note_fragment(&flow);
    rewrite(ctx, &flow, IP_DST_OFF, flow.daddr, target.addr, flow.l4 + 2, flow.dport, target.port)?;
    if target.nat_addr != 0 {
        rewrite(ctx, &flow, IP_SRC_OFF, flow.saddr, target.nat_addr, flow.l4, flow.sport, target.nat_port)?;
        return Some(redirect_out(ctx));
    }
    Some(TC_ACT_OK)
}

/// Sends a source-NATed packet out of the interface it came in on, to the next hop the
/// routing table gives its (new) destination. The stack would drop it: a packet arriving
/// from outside with one of the node's own addresses as its source is a martian.
#[inline(always)]
fn redirect_out(ctx: &TcContext) -> i32 {
    // SAFETY: the skb pointer is valid for the program's run; ifindex is a plain field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: no neighbour parameters (the kernel looks the next hop up itself), no flags.
    unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32 }
}

/// A packet to no service passes as it is, but its answers leave on the four-tuple of any
/// earlier flow from the same client port to a service with this backend, and egress would
/// translate them as that flow's: the client, dialling the backend, would get its SYN-ACK
/// from the ClusterIP and reset it (issue 20's lost SYNs). So a direct connection's SYN takes
/// such a flow's reply key when the flow is over or closing, as a SYN to another service
/// does, and is dropped while the flow lives (its answers would belong to that flow). Only
/// a SYN can tell: a direct UDP datagram on a service flow's four-tuple is answered as the
/// service's, the backend cannot tell the two apart either.
#[inline(always)]
fn untranslated(flow: &Flow) -> Option<i32> {
    if flow.proto != PROTO_TCP || !flow.syn {
        return None;
    }
    let reply = CtKey {
        saddr: flow.daddr,
        daddr: flow.saddr,
        sport: flow.dport,
        dport: flow.sport,
        proto: flow.proto,
        direction: CT_REPLY,
        pad: 0,
    };
    let (old, table) = ct::lookup(&reply)?;
    if ct::reply_flow_yields(&reply, &old, true) {
        ct::remove(table, &reply);
        return None;
    }
    // Reported under the service whose flow holds the key (the reply entry names its frontend).
    monitor::report(|| {
        event(flow, EVENT_DROP, REASON_CT_COLLISION, lookup_service_id(old.addr, old.port, flow.proto), None)
    });
    Some(TC_ACT_SHOT)
}

/// Where a forward packet goes: the backend, and the source it leaves with when source-NATed.
struct Target {
    addr: u32,
    port: u16,
    backend_id: u32,
    service_id: u32,
    nat_addr: u32,
    nat_port: u16,
}

enum Flow4 {
    NotAService,
    /// Dropped, for this monitor reason.
    Refused(u8),
    To(Target),
}

/// A monitor event about `flow` on the ingress path.
#[inline(always)]
fn event(flow: &Flow, kind: u8, reason: u8, service_id: u32, target: Option<&Target>) -> MonitorEvent {
    MonitorEvent {
        service_id,
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        backend_addr: target.map_or(0, |t| t.addr),
        backend_port: target.map_or(0, |t| t.port),
        kind,
        reason,
        path: PATH_TC_INGRESS,
        protocol: flow.proto,
        ..MonitorEvent::default()
    }
}

/// The reply entry of a flow going to `target`, in `state`, seen now.
#[inline(always)]
fn reply_entry(flow: &Flow, target: &Target, state: u8) -> (CtKey, CtValue) {
    let (to, to_port, nat_addr, nat_port) = if target.nat_addr == 0 {
        (flow.saddr, flow.sport, 0, 0)
    } else {
        (target.nat_addr, target.nat_port, flow.saddr, flow.sport)
    };
    let key = CtKey {
        saddr: target.addr,
        daddr: to,
        sport: target.port,
        dport: to_port,
        proto: flow.proto,
        direction: CT_REPLY,
        pad: 0,
    };
    let value = CtValue {
        addr: flow.daddr,
        port: flow.dport,
        nat_port,
        backend_id: 0,
        service_id: 0,
        nat_addr,
        last_seen: ct::now(),
        state,
        pad: [0; 3],
    };
    (key, value)
}

/// Puts a tracked flow's reply entry back if the LRU evicted it apart from the forward
/// entry: without it the backend's replies would leave un-translated for the rest of the
/// flow, and the client would drop them.
#[inline(always)]
fn keep_reply_entry(flow: &Flow, target: &Target, table: Table) {
    let (reply, value) = reply_entry(flow, target, CT_STATE_ESTABLISHED);
    if ct::get(table, &reply).is_some() {
        return;
    }
    // Claimed only if free: a source-NATed flow's port may have been claimed by another
    // flow meanwhile; that flow keeps it.
    ct::claim(table, &reply, &value);
    monitor::report(|| event(flow, EVENT_CONNTRACK, REASON_CT_REPLY_EVICTED, target.service_id, Some(target)));
}

/// The client's first ACK: the flow leaves the SYN map for the main map, established.
#[inline(always)]
fn promote(flow: &Flow, forward: &CtKey, target: &Target) {
    let (reply, reply_value) = reply_entry(flow, target, CT_STATE_ESTABLISHED);
    // Not over another flow's: a source-NATed flow whose SYN-map reply entry was evicted may
    // have lost its port to a new flow meanwhile, and that flow keeps it.
    ct::insert_new(Table::Main, &reply, &reply_value);
    let forward_value = CtValue {
        addr: target.addr,
        port: target.port,
        nat_port: target.nat_port,
        backend_id: target.backend_id,
        service_id: target.service_id,
        nat_addr: target.nat_addr,
        last_seen: reply_value.last_seen,
        state: ct::next_state(flow.proto, CT_STATE_SYN, flow.flags, true),
        pad: [0; 3],
    };
    ct::insert(Table::Main, forward, &forward_value);
    ct::remove(Table::Syn, forward);
    ct::remove(Table::Syn, &reply);
}

/// A reply to a source-NATed flow (from the backend to this node's address and the flow's
/// port): from the service, to the client. `None` when the packet is no such reply.
#[inline(always)]
fn snat_reply(ctx: &TcContext, flow: &Flow) -> Option<i32> {
    let reply = flow.key(CT_REPLY);
    let (entry, table) = ct::lookup(&reply)?;
    if entry.nat_addr == 0 {
        return None;
    }
    ct::touch(table, &reply, &entry, flow.flags, false);
    note_fragment(flow);
    rewrite(ctx, flow, IP_SRC_OFF, flow.saddr, entry.addr, flow.l4, flow.sport, entry.port)?;
    rewrite(ctx, flow, IP_DST_OFF, flow.daddr, entry.nat_addr, flow.l4 + 2, flow.dport, entry.nat_port)?;
    Some(redirect_out(ctx))
}

/// The target of an already tracked flow. A TCP connection keeps its backend for its whole
/// life, even while that backend terminates; a UDP flow (or a new TCP connection reusing the
/// ports) whose backend left the service is chosen anew, so clients recover at once.
#[inline(always)]
fn tracked(forward: &CtKey, flow: &Flow) -> Option<(Target, Table)> {
    let (entry, table) = ct::lookup(forward)?;
    let must_exist = flow.proto == PROTO_UDP || flow.syn;
    if must_exist {
        let current = backend(entry.backend_id)?;
        if current.addr != entry.addr || current.port != entry.port {
            return None;
        }
    }
    if table == Table::Main || flow.syn {
        ct::touch(table, forward, &entry, flow.flags, true);
    }
    let target = Target {
        addr: entry.addr,
        port: entry.port,
        backend_id: entry.backend_id,
        service_id: entry.service_id,
        nat_addr: entry.nat_addr,
        nat_port: entry.nat_port,
    };
    Some((target, table))
}

/// This node's SNAT address for a flow to `backend`: none when SNAT is off or the backend is
/// local (its reply passes this node's egress on the way out).
#[inline(always)]
fn snat_address(backend: u32) -> Option<u32> {
    let config = SNAT_CONFIG.get(0)?;
    if config.node_ip == 0 || backend & config.local_mask == config.local_net {
        return None;
    }
    Some(config.node_ip)
}

/// Picks a backend for a new flow and tracks it in both directions; a flow to a remote
/// backend also gets a source port of this node's, claimed in the reply direction. A TCP flow
/// that starts with a SYN is tracked in the SYN map until its client ACKs.
#[inline(always)]
fn new_flow(flow: &Flow, forward: &CtKey) -> Flow4 {
    // SAFETY: a read of a read-only global; volatile, or the compiler would fold in the
    // default and ignore the loader's value.
    let seed = unsafe { core::ptr::read_volatile(&MAGLEV_HASH_SEED) };
    let hash = flow_hash(flow.saddr, flow.daddr, flow.sport, flow.dport, flow.proto, seed);
    let client = Client { netns_cookie: 0, ip: flow.saddr };
    let (backend, backend_id, service_id) =
        match select_backend(flow.daddr, flow.dport, flow.proto, &client, &Choice::Maglev(hash)) {
            Lookup::NotAService => return Flow4::NotAService,
            Lookup::NoBackend => return Flow4::Refused(REASON_NO_BACKEND),
            Lookup::Backend { backend, backend_id, service_id } => (backend, backend_id, service_id),
        };
    let (table, state) = match (flow.proto == PROTO_TCP, flow.syn) {
        (true, true) => (Table::Syn, CT_STATE_SYN),
        // Mid-connection with no entry: tracked as established, as it is.
        (true, false) => (Table::Main, CT_STATE_ESTABLISHED),
        (false, _) => (Table::Main, CT_STATE_NONE),
    };
    let mut target =
        Target { addr: backend.addr, port: backend.port, backend_id, service_id, nat_addr: 0, nat_port: 0 };
    match snat_address(backend.addr) {
        Some(node_ip) => {
            let mut claimed = 0u16;
            let mut attempt = 0u32;
            while attempt < SNAT_ATTEMPTS {
                let offset = (hash.wrapping_add(attempt.wrapping_mul(2_654_435_761))) % u32::from(SNAT_PORTS);
                let port = (SNAT_PORT_MIN + offset as u16).to_be();
                target.nat_addr = node_ip;
                target.nat_port = port;
                // The reply, as it will come back: from the backend to this node's port.
                let (reply, reply_value) = reply_entry(flow, &target, state);
                // Claimed only if free: two flows never share a port towards one backend.
                if ct::claim(table, &reply, &reply_value) {
                    claimed = port;
                    break;
                }
                attempt += 1;
            }
            if claimed == 0 {
                return Flow4::Refused(REASON_NO_SNAT_PORT);
            }
        }
        None => {
            let (reply, reply_value) = reply_entry(flow, &target, state);
            // The same client address and port reaching another service through the same
            // backend has this reply key too: the backend could not tell the two flows apart.
            // Unless the old flow is over (or closing, and this one opens with a SYN), the new
            // one is refused rather than steal its replies.
            if let Some((old, old_table)) = ct::lookup(&reply) {
                let same_service = old.addr == flow.daddr && old.port == flow.dport;
                if !same_service && !ct::reply_flow_yields(&reply, &old, flow.syn) {
                    return Flow4::Refused(REASON_CT_COLLISION);
                }
                if old_table != table {
                    ct::remove(old_table, &reply);
                }
            }
            // Reply first: once the forward entry exists, replies may come.
            ct::insert(table, &reply, &reply_value);
        }
    }
    let forward_value = CtValue {
        addr: backend.addr,
        port: backend.port,
        nat_port: target.nat_port,
        backend_id,
        service_id,
        nat_addr: target.nat_addr,
        last_seen: ct::now(),
        state,
        pad: [0; 3],
    };
    ct::insert(table, forward, &forward_value);
    Flow4::To(target)
}

/// Reverse NAT of a reply from a backend.
#[inline(always)]
fn egress(ctx: &TcContext) -> Option<()> {
    let Some(flow) = parse(ctx) else {
        return icmp_error(ctx, CT_REPLY, Side::Destination);
    };
    let reply = flow.key(CT_REPLY);
    let (service, table) = ct::lookup(&reply)?;
    // A source-NATed flow's reply is translated at ingress, where it arrives.
    if service.nat_addr != 0 {
        return None;
    }
    ct::touch(table, &reply, &service, flow.flags, false);
    note_fragment(&flow);
    rewrite(ctx, &flow, IP_SRC_OFF, flow.saddr, service.addr, flow.l4, flow.sport, service.port)
}

/// An ICMP error about a translated flow gets its quote translated back (see `tc_icmp`):
/// at ingress the quoted reply's source (the service) becomes the backend, at egress the
/// quoted request's destination (the backend) becomes the service. The quote, read the other
/// way round, is keyed like the flow's packets in that direction.
#[inline(always)]
fn icmp_error(ctx: &TcContext, direction: u8, side: Side) -> Option<()> {
    let error = tc_icmp::parse(ctx)?;
    let (entry, _) = ct::lookup(&error.answer_key(direction))?;
    if entry.nat_addr != 0 {
        return None;
    }
    error.translate(ctx, side, entry.addr, entry.port)
}

/// Replaces one address and one port of the packet, patching the L4 checksum (address: via
/// the pseudo-header) and the IP header checksum. A later fragment has neither ports nor L4
/// checksum: only its address and IP checksum change.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rewrite(
    ctx: &TcContext,
    flow: &Flow,
    addr_off: usize,
    old_addr: u32,
    new_addr: u32,
    port_off: usize,
    old_port: u16,
    new_port: u16,
) -> Option<()> {
    let csum = flow.csum_offset();
    let has_l4 = flow.frag != Frag::Later;
    if old_addr != new_addr {
        if has_l4 {
            ctx.l4_csum_replace(csum, u64::from(old_addr), u64::from(new_addr), flow.l4_flags(4) | BPF_F_PSEUDO_HDR)
                .ok()?;
        }
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old_addr), u64::from(new_addr), 4).ok()?;
        ctx.store(addr_off, &new_addr, 0).ok()?;
    }
    if has_l4 && old_port != new_port {
        ctx.l4_csum_replace(csum, u64::from(old_port), u64::from(new_port), flow.l4_flags(2)).ok()?;
        ctx.store(port_off, &new_port, 0).ok()?;
    }
    Some(())
}
