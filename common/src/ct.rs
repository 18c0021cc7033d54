//! Connection tracking of the per-packet path: the two entries of a flow (forward and reply),
//! TCP state, and how long an entry lives after its flow's last packet (Cilium's defaults).

use crate::PROTO_TCP;

/// Name of the per-packet connection tracking map ([`CtKey`] → [`CtValue`]), an LRU.
/// v3: [`CtValue`] carries a last-seen time and a TCP state.
pub const CT_MAP: &str = "keel_ct4_v3";
/// Default capacity of the connection tracking map: two entries per translated flow.
pub const DEFAULT_CT_MAP_ENTRIES: u32 = 524_288;
/// Name of the conntrack map of TCP flows that have sent only a SYN so far (same key and
/// value as [`CT_MAP`]), an LRU. A flow moves to [`CT_MAP`] on its client's first ACK, so a
/// flood of SYNs churns only this map and never evicts an established flow.
pub const CT_SYN_MAP: &str = "keel_ct4_syn_v1";
/// Default capacity of the SYN map (two entries per half-open flow).
pub const DEFAULT_CT_SYN_MAP_ENTRIES: u32 = 65_536;

/// [`CtValue::state`]: a UDP flow (no state).
pub const CT_STATE_NONE: u8 = 0;
/// A TCP flow that has sent a SYN and no ACK yet.
pub const CT_STATE_SYN: u8 = 1;
/// A TCP flow whose client has ACKed.
pub const CT_STATE_ESTABLISHED: u8 = 2;
/// A TCP flow that has seen a FIN or an RST.
pub const CT_STATE_CLOSING: u8 = 3;

/// Lifetimes of a conntrack entry after its flow's last packet, in seconds: Cilium's defaults
/// (`--bpf-ct-timeout-regular-tcp-syn` 60 s, `--bpf-ct-timeout-regular-tcp` 6 h,
/// `--bpf-ct-timeout-regular-tcp-fin` 10 s, `--bpf-ct-timeout-regular-any` 60 s).
pub const CT_LIFETIME_TCP_SYN: u32 = 60;
pub const CT_LIFETIME_TCP: u32 = 21_600;
pub const CT_LIFETIME_TCP_FIN: u32 = 10;
pub const CT_LIFETIME_NONTCP: u32 = 60;
/// A packet rewrites its entry's last-seen time only when it is at least this old (Cilium's
/// `--bpf-ct-report-interval`, 5 s), so most packets cause no map write.
pub const CT_REPORT_INTERVAL: u32 = 5;

/// How long a flow in `state` lives after its last packet, in seconds.
#[inline(always)]
pub const fn ct_lifetime(proto: u8, state: u8) -> u32 {
    if proto != PROTO_TCP {
        return CT_LIFETIME_NONTCP;
    }
    match state {
        CT_STATE_ESTABLISHED => CT_LIFETIME_TCP,
        CT_STATE_CLOSING => CT_LIFETIME_TCP_FIN,
        _ => CT_LIFETIME_TCP_SYN,
    }
}

/// Whether a flow last seen at `last_seen` (seconds of the monotonic clock) in `state` has
/// expired at `now`. Wrapping arithmetic: the clock in seconds fits u32 for 136 years of
/// uptime, and a last-seen time a little ahead of `now` (another CPU) is not expired.
#[inline(always)]
pub const fn ct_expired(proto: u8, state: u8, last_seen: u32, now: u32) -> bool {
    let age = now.wrapping_sub(last_seen);
    age < (1 << 31) && age > ct_lifetime(proto, state)
}

/// A flow's state and last-seen time, from its two entries (either may be gone): the furthest
/// state either direction reached, and the later of their times.
#[inline(always)]
fn ct_flow_summary(one: &CtValue, other: Option<&CtValue>) -> (u8, u32) {
    match other {
        None => (one.state, one.last_seen),
        Some(other) => {
            let state = if other.state > one.state {
                other.state
            } else {
                one.state
            };
            // The later of the two, on a wrapping clock.
            let later = if other.last_seen.wrapping_sub(one.last_seen) < (1 << 31) {
                other.last_seen
            } else {
                one.last_seen
            };
            (state, later)
        }
    }
}

/// Whether a flow has expired, from its two entries (either may be gone): a flow lives while
/// either direction passes, in the furthest state either direction reached.
#[inline(always)]
pub fn ct_flow_expired(proto: u8, one: &CtValue, other: Option<&CtValue>, now: u32) -> bool {
    let (state, last_seen) = ct_flow_summary(one, other);
    ct_expired(proto, state, last_seen, now)
}

/// Whether a flow (its two entries, either may be gone) must give up its reply key to a new
/// flow of another service that needs the same key: when it has expired, or when it is a
/// closing TCP flow and the newcomer opens with a SYN.
///
/// The second case is netfilter's TIME_WAIT takeover. A client that closed a connection to one
/// service may at once reuse its port towards another service with the same backend; the
/// closing flow would otherwise hold the key for its whole FIN lifetime and every SYN of the
/// new connection would be refused. What is lost is a closing flow's straggler (a last ACK or
/// a retransmitted FIN), which the endpoints survive; a half-closed flow still moving data in
/// one direction is lost too, the price of not rewriting the client's port as netfilter's
/// NAT can.
#[inline(always)]
pub fn ct_flow_yields_reply_key(
    proto: u8,
    newcomer_syn: bool,
    one: &CtValue,
    other: Option<&CtValue>,
    now: u32,
) -> bool {
    let (state, last_seen) = ct_flow_summary(one, other);
    ct_expired(proto, state, last_seen, now)
        || (proto == PROTO_TCP && newcomer_syn && state == CT_STATE_CLOSING)
}

impl CtKey {
    /// The forward key of the flow whose reply entry this is (`value` its value): the client
    /// (the reply's destination, or for a source-NATed flow the one kept in the value) to the
    /// service. `None` for a forward key.
    pub const fn forward_of_reply(&self, value: &CtValue) -> Option<CtKey> {
        if self.direction != CT_REPLY {
            return None;
        }
        let (client, client_port) = if value.nat_addr != 0 {
            (value.nat_addr, value.nat_port)
        } else {
            (self.daddr, self.dport)
        };
        Some(CtKey {
            saddr: client,
            daddr: value.addr,
            sport: client_port,
            dport: value.port,
            proto: self.proto,
            direction: CT_FORWARD,
            pad: 0,
        })
    }

    /// The reply key of the flow whose forward entry this is (`value` its value): from the
    /// backend to the client, or to the node's port for a source-NATed flow.
    pub const fn reply_of_forward(&self, value: &CtValue) -> Option<CtKey> {
        if self.direction != CT_FORWARD {
            return None;
        }
        let (to, to_port) = if value.nat_addr != 0 {
            (value.nat_addr, value.nat_port)
        } else {
            (self.saddr, self.sport)
        };
        Some(CtKey {
            saddr: value.addr,
            daddr: to,
            sport: value.port,
            dport: to_port,
            proto: self.proto,
            direction: CT_REPLY,
            pad: 0,
        })
    }
}

/// [`CtKey::direction`] of a client → service packet.
pub const CT_FORWARD: u8 = 0;
/// [`CtKey::direction`] of a backend → client reply.
pub const CT_REPLY: u8 = 1;

/// Key of the connection tracking map: one direction of one flow, as seen on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source IP, network byte order.
    pub saddr: u32,
    /// Destination IP, network byte order.
    pub daddr: u32,
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// `CT_FORWARD` or `CT_REPLY`.
    pub direction: u8,
    /// Always zero.
    pub pad: u16,
}

/// Value of the connection tracking map: what to rewrite the packet's far end to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtValue {
    /// Forward: the backend (new destination). Reply: the service (new source). Network order.
    pub addr: u32,
    /// Port to go with `addr`, network byte order.
    pub port: u16,
    /// Forward: the source port of a source-NATed flow. Reply of a source-NATed flow: the
    /// client's port (new destination). 0 otherwise. Network byte order.
    pub nat_port: u16,
    /// Forward: the backend id chosen, to tell whether it still exists. Reply: 0.
    pub backend_id: u32,
    /// Forward: the service the flow belongs to, for its packet counters. Reply: 0.
    pub service_id: u32,
    /// Forward: the node address a source-NATed flow leaves with. Reply of a source-NATed
    /// flow: the client's address (new destination). 0 otherwise. Network byte order.
    pub nat_addr: u32,
    /// When a packet of this direction last passed, in seconds of `bpf_ktime_get_ns`
    /// (CLOCK_MONOTONIC); refreshed at most every [`CT_REPORT_INTERVAL`].
    pub last_seen: u32,
    /// `CT_STATE_*`, as the packets of this direction moved it.
    pub state: u8,
    /// Always zero.
    pub pad: [u8; 3],
}
