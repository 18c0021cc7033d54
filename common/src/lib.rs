//! The kernel ABI of keel: every key and value that the eBPF programs and the node daemon
//! exchange through BPF maps, defined once.
//!
//! # Layout rules
//! - Every type is `#[repr(C)]` with explicit padding fields, so the compiler never inserts
//!   uninitialised bytes: the kernel hashes and compares keys byte by byte.
//! - Addresses and ports are stored in **network byte order**, exactly as the kernel hands them
//!   to the programs (`bpf_sock_addr.user_ip4`, `user_port`); user space converts once, on write.
//! - Map names carry a layout version (`_v1`). A change to any type here means a new version and
//!   a new name, so a daemon never reads a pinned map of another layout.
//!
//! The service model follows Cilium's: a service is a set of entries keyed by
//! `(vip, port, proto, slot)`. Slot 0 is the service entry itself and holds the number of
//! backend slots; slots `1..=count` each name one backend by id; backends live in their own map.
//! A reader looks up slot 0, picks `n` in `1..=count`, looks up slot `n`, then the backend.
//!
//! Capacities here are defaults: the daemon may size the maps otherwise at load time.
#![no_std]

pub mod ct;
pub mod frag;
pub mod hash;
pub mod monitor;
pub mod oom;

pub use ct::*;
pub use frag::*;
pub use hash::*;
pub use oom::*;

/// The programs' read-only global that turns their `aya-log` debug records on (1) or off (0,
/// the default), set by the loader (`node-daemon --bpf-debug-log`). Fixed at load time, so
/// with 0 the verifier proves every log call dead and removes it.
pub const DEBUG_LOG_GLOBAL: &str = "DEBUG_LOG";

/// Name of the service map (key [`ServiceKey`], value [`ServiceValue`]).
/// The kernel keeps at most 15 characters of a map name.
pub const SERVICE_MAP: &str = "keel_svc_v1";
/// Name of the backend map (key: backend id `u32`, value [`Backend`]).
pub const BACKEND_MAP: &str = "keel_backend_v1";
/// Name of the per-CPU counters, indexed by service id (value [`ServiceStats`]).
pub const STATS_MAP: &str = "keel_stats_v1";
/// Name of the socket reverse-translation map ([`ReverseKey`] → [`ReverseValue`]), an LRU.
pub const REVERSE_MAP: &str = "keel_revsk_v1";
/// Name of the session-affinity map ([`AffinityKey`] → [`AffinityValue`]), an LRU.
pub const AFFINITY_MAP: &str = "keel_affin_v1";
/// Name of the affinity membership map ([`AffinityMatchKey`] → `u32` 1): which backends a
/// service with affinity has, so a remembered backend that left the service is not reused.
pub const AFFINITY_MATCH_MAP: &str = "keel_affmat_v1";
/// Default capacity of the affinity map: remembered (client, service) pairs.
pub const DEFAULT_AFFINITY_MAP_ENTRIES: u32 = 262_144;
/// Name of the Maglev lookup tables ([`MaglevKey`] → [`MaglevChunk`]).
pub const MAGLEV_MAP: &str = "keel_maglev_v1";
/// Default capacity of the Maglev map, in chunks.
pub const DEFAULT_MAGLEV_MAP_ENTRIES: u32 = 1_048_576;
/// Backend ids per Maglev chunk.
pub const MAGLEV_CHUNK: usize = 32;
/// Name of the node's own addresses (`u32` IP → `u32` 1), where NodePorts answer.
pub const NODE_IP_MAP: &str = "keel_nodeip_v1";
/// Name of the source NAT settings ([`SnatConfig`], one entry): set in a cluster, where a
/// flow that arrives at this node for a backend on another node leaves with the node's
/// address as its source, so the reply comes back through this node.
pub const SNAT_CONFIG_MAP: &str = "keel_snat_v1";
/// The source ports SNAT gives flows: above Linux's default ephemeral range (32768–60999), so
/// the node's own connections do not take them.
pub const SNAT_PORT_MIN: u16 = 61_000;
pub const SNAT_PORTS: u16 = 4_536;

/// The maps that hold **service state**: what the services are (their entries, backends and
/// Maglev tables). Their size follows the number of services and backends.
pub const SERVICE_STATE_MAPS: [&str; 3] = [SERVICE_MAP, BACKEND_MAP, MAGLEV_MAP];
/// The maps that hold **flow state**: what the traffic left behind (conntrack, SYN map,
/// session affinity, the sockets' reverse map, fragments). Their size follows the traffic.
pub const FLOW_STATE_MAPS: [&str; 5] = [CT_MAP, CT_SYN_MAP, AFFINITY_MAP, REVERSE_MAP, FRAG_MAP];

/// Per-packet translation on tc ingress: DNAT of new and tracked flows.
pub const PROG_TC_INGRESS: &str = "keel_tc_in";
/// Per-packet translation on tc egress: reverse NAT of replies.
pub const PROG_TC_EGRESS: &str = "keel_tc_out";

/// Default number of service ports (the daemon can size the maps differently at load).
pub const DEFAULT_MAX_SERVICES: u32 = 65_536;
/// Default number of backends.
pub const DEFAULT_MAX_BACKENDS: u32 = 262_144;
/// Default capacity of the service map: one head per service port, one slot per
/// (service, backend) pair.
pub const DEFAULT_SERVICE_MAP_ENTRIES: u32 = DEFAULT_MAX_SERVICES + DEFAULT_MAX_BACKENDS;
/// Default capacity of the reverse map: sockets talking to a backend through a ClusterIP.
pub const DEFAULT_REVERSE_MAP_ENTRIES: u32 = 262_144;

/// `connect()` on IPv4 sockets: TCP and connected UDP.
pub const PROG_CONNECT4: &str = "keel_connect4";
/// `sendmsg()` with a destination on unconnected IPv4 UDP sockets.
pub const PROG_SENDMSG4: &str = "keel_sendmsg4";
/// `recvmsg()` on IPv4 UDP sockets: replies appear to come from the ClusterIP.
pub const PROG_RECVMSG4: &str = "keel_recvmsg4";
/// `getpeername()` on IPv4 sockets: the application sees the ClusterIP it dialled.
pub const PROG_GETPEERNAME4: &str = "keel_getpeer4";
/// Every socket program, in the order they are attached.
pub const SOCKET_PROGRAMS: [&str; 4] = [
    PROG_CONNECT4,
    PROG_SENDMSG4,
    PROG_RECVMSG4,
    PROG_GETPEERNAME4,
];

/// `IPPROTO_TCP`, as found in `bpf_sock_addr.protocol`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`, as found in `bpf_sock_addr.protocol`.
pub const PROTO_UDP: u8 = 17;

/// Key of the service map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Service IP (ClusterIP), network byte order.
    pub vip: u32,
    /// Service port, network byte order.
    pub port: u16,
    /// 0 for the service entry, `1..=count` for the backend slots.
    pub slot: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// Always zero.
    pub pad: [u8; 3],
}

impl ServiceKey {
    /// The key of slot `slot` of the service `vip:port/proto` (all in network byte order).
    pub const fn new(vip: u32, port: u16, proto: u8, slot: u16) -> Self {
        Self {
            vip,
            port,
            slot,
            proto,
            pad: [0; 3],
        }
    }
}

/// Value of the service map. Which fields mean something depends on the slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceValue {
    /// Slot 0: number of backend slots (0 = the service exists but has no ready backend, and
    /// connects are refused). Backend slots: 0.
    pub count: u32,
    /// Backend slots: id of the backend in the backend map. Slot 0: 0.
    pub backend_id: u32,
    /// Slot 0: stable id of the service port, for counters and reverse translation.
    pub service_id: u32,
    /// Reserved for service flags; zero in this layout version.
    pub flags: u32,
    /// Slot 0: `sessionAffinity: ClientIP` timeout in seconds; 0 = no affinity.
    pub affinity_timeout: u32,
    /// Slot 0: size of the service's Maglev table (a prime; 0 = none written yet).
    pub maglev_size: u32,
}

/// Value of the backend map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// Backend (pod) IP, network byte order.
    pub addr: u32,
    /// Backend port, network byte order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// Reserved for backend state flags; zero in this layout version.
    pub flags: u8,
}

/// Per-CPU counters of one service port (index: its `service_id`). User space sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceStats {
    /// Connections (and unconnected UDP messages) translated to a backend.
    pub connections: u64,
    /// Connections refused because the service had no ready backend.
    pub refused: u64,
    /// Packets translated by the per-packet path (client → service direction).
    pub packets: u64,
    /// Bytes of those packets, Ethernet header included.
    pub bytes: u64,
}

/// Key of the reverse map: this socket talks to this backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReverseKey {
    /// `bpf_get_socket_cookie`: unique per socket for the life of the host.
    pub cookie: u64,
    /// Backend IP, network byte order.
    pub addr: u32,
    /// Backend port, network byte order.
    pub port: u16,
    /// Always zero.
    pub pad: u16,
}

/// Value of the reverse map: the ClusterIP and port the socket dialled.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReverseValue {
    /// Service IP, network byte order.
    pub vip: u32,
    /// Service port, network byte order.
    pub port: u16,
    /// Always zero.
    pub pad: u16,
}

/// Value of the SNAT settings map (key 0). All addresses in network byte order; a zero
/// `node_ip` turns SNAT off (a node outside a cluster: every backend is local or routed
/// back through it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnatConfig {
    /// The address flows to remote backends leave with.
    pub node_ip: u32,
    /// This node's pod network: backends inside it are local and need no SNAT.
    pub local_net: u32,
    pub local_mask: u32,
}

/// Key of the Maglev map: chunk `chunk` of service `service_id`'s lookup table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaglevKey {
    pub service_id: u32,
    pub chunk: u32,
}

/// Value of the Maglev map: table entries `chunk * MAGLEV_CHUNK ..` as backend ids.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaglevChunk {
    pub backend_ids: [u32; MAGLEV_CHUNK],
}

/// Key of the affinity map: this client of this service. Socket-level translation knows the
/// client by its network namespace (one pod), per-packet translation by its IP; the other field
/// is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// `bpf_get_netns_cookie` of the client's socket, or 0.
    pub netns_cookie: u64,
    pub service_id: u32,
    /// Client IP, network byte order, or 0.
    pub client_ip: u32,
}

/// Value of the affinity map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AffinityValue {
    /// `bpf_ktime_get_ns` of the client's last new flow.
    pub last_used_ns: u64,
    pub backend_id: u32,
    /// Always zero.
    pub pad: u32,
}

/// Key of the affinity membership map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AffinityMatchKey {
    pub service_id: u32,
    pub backend_id: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all three are `#[repr(C)]`, made only of integers, with every padding byte
    // spelled out as a field, so any bit pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::ServiceStats {}
    unsafe impl aya::Pod for super::ReverseKey {}
    unsafe impl aya::Pod for super::ReverseValue {}
    unsafe impl aya::Pod for super::AffinityKey {}
    unsafe impl aya::Pod for super::AffinityValue {}
    unsafe impl aya::Pod for super::AffinityMatchKey {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtValue {}
    unsafe impl aya::Pod for super::SnatConfig {}
    unsafe impl aya::Pod for super::MaglevKey {}
    unsafe impl aya::Pod for super::MaglevChunk {}
    unsafe impl aya::Pod for super::OomEvent {}
    unsafe impl aya::Pod for super::monitor::MonitorEvent {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for super::FragPorts {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    /// The sizes are part of the ABI: a change here must come with a new map version.
    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<ServiceKey>(), 12);
        assert_eq!(size_of::<ServiceValue>(), 24);
        assert_eq!(size_of::<CtKey>(), 16);
        assert_eq!(size_of::<CtValue>(), 28);
        assert_eq!(size_of::<SnatConfig>(), 12);
        assert_eq!(size_of::<MaglevKey>(), 8);
        assert_eq!(size_of::<MaglevChunk>(), 4 * MAGLEV_CHUNK);
        assert_eq!(size_of::<AffinityKey>(), 16);
        assert_eq!(size_of::<AffinityValue>(), 16);
        assert_eq!(size_of::<AffinityMatchKey>(), 8);
        assert_eq!(size_of::<Backend>(), 8);
        assert_eq!(size_of::<ServiceStats>(), 32);
        assert_eq!(size_of::<monitor::MonitorEvent>(), 48);
        assert_eq!(size_of::<ReverseKey>(), 16);
        assert_eq!(size_of::<ReverseValue>(), 8);
        assert_eq!(size_of::<OomEvent>(), 56);
        assert_eq!(size_of::<FragKey>(), 12);
        assert_eq!(size_of::<FragPorts>(), 4);
    }

    /// Values from an independent rendering of the kernel's `jhash2()` (lib/jhash.h) over the
    /// words (saddr, daddr, sport << 16 | dport, proto): the hash is lookup3, not a look-alike.
    #[test]
    fn flow_hash_is_jhash2_of_the_tuple() {
        assert_eq!(flow_hash(1, 2, 0, 3, 4, 0), 0x6649_1246);
        assert_eq!(
            flow_hash(
                0x0a00_0001,
                0x0a60_000a,
                40_000,
                80,
                PROTO_TCP,
                DEFAULT_MAGLEV_HASH_SEED
            ),
            0x2665_86b2
        );
    }

    #[test]
    fn flow_hash_depends_on_every_field_and_the_seed() {
        let base = flow_hash(1, 2, 3, 4, PROTO_TCP, 5);
        for other in [
            flow_hash(9, 2, 3, 4, PROTO_TCP, 5),
            flow_hash(1, 9, 3, 4, PROTO_TCP, 5),
            flow_hash(1, 2, 9, 4, PROTO_TCP, 5),
            flow_hash(1, 2, 3, 9, PROTO_TCP, 5),
            flow_hash(1, 2, 3, 4, PROTO_UDP, 5),
            flow_hash(1, 2, 3, 4, PROTO_TCP, 9),
        ] {
            assert_ne!(base, other);
        }
    }

    /// A conntrack value that only says when its direction last passed and in what state.
    fn ct_value(last_seen: u32, state: u8) -> CtValue {
        CtValue {
            addr: 0,
            port: 0,
            nat_port: 0,
            backend_id: 0,
            service_id: 0,
            nat_addr: 0,
            last_seen,
            state,
            pad: [0; 3],
        }
    }

    #[test]
    fn a_flow_lives_by_its_latest_direction_and_furthest_state() {
        let syn = ct_value(100, CT_STATE_SYN);
        assert!(!ct_flow_expired(PROTO_TCP, &syn, None, 160));
        assert!(ct_flow_expired(PROTO_TCP, &syn, None, 161));
        // The reply direction passed later: the flow lives from then.
        assert!(!ct_flow_expired(
            PROTO_TCP,
            &syn,
            Some(&ct_value(150, CT_STATE_SYN)),
            200
        ));
        // Established on one side: 6 h.
        let established = ct_value(100, CT_STATE_ESTABLISHED);
        assert!(!ct_flow_expired(
            PROTO_TCP,
            &syn,
            Some(&established),
            100 + CT_LIFETIME_TCP
        ));
        // A FIN on either side: 10 s.
        assert!(ct_flow_expired(
            PROTO_TCP,
            &established,
            Some(&ct_value(100, CT_STATE_CLOSING)),
            111
        ));
        assert!(
            ct_flow_expired(PROTO_UDP, &established, None, 161),
            "UDP has no TCP state"
        );
        // A last-seen time just ahead of the reader's clock (another CPU) is not expired.
        assert!(!ct_flow_expired(PROTO_UDP, &ct_value(u32::MAX, 0), None, 5));
    }

    #[test]
    fn only_an_expired_flow_or_a_closing_one_met_by_a_syn_gives_up_its_reply_key() {
        let established = ct_value(100, CT_STATE_ESTABLISHED);
        let closing = ct_value(100, CT_STATE_CLOSING);
        // A live established flow keeps its key, against a SYN or anything else.
        for syn in [true, false] {
            assert!(!ct_flow_yields_reply_key(
                PROTO_TCP,
                syn,
                &established,
                None,
                101
            ));
        }
        // Closing on either side, met by a SYN: taken over at once.
        assert!(ct_flow_yields_reply_key(
            PROTO_TCP,
            true,
            &established,
            Some(&closing),
            101
        ));
        assert!(ct_flow_yields_reply_key(
            PROTO_TCP, true, &closing, None, 100
        ));
        // Closing, met by a mid-connection packet: kept until its FIN lifetime ends.
        assert!(!ct_flow_yields_reply_key(
            PROTO_TCP, false, &closing, None, 101
        ));
        assert!(ct_flow_yields_reply_key(
            PROTO_TCP,
            false,
            &closing,
            None,
            100 + CT_LIFETIME_TCP_FIN + 1
        ));
        // A SYN-state flow is a handshake in progress, not a closed one.
        assert!(!ct_flow_yields_reply_key(
            PROTO_TCP,
            true,
            &ct_value(100, CT_STATE_SYN),
            None,
            101
        ));
        // UDP has no closing state; a UDP value with TCP's number in it is not read as one.
        assert!(!ct_flow_yields_reply_key(
            PROTO_UDP, true, &closing, None, 101
        ));
        assert!(ct_flow_yields_reply_key(
            PROTO_UDP, true, &closing, None, 161
        ));
    }

    #[test]
    fn forward_and_reply_keys_find_each_other() {
        let forward = CtKey {
            saddr: 1,
            daddr: 2,
            sport: 3,
            dport: 4,
            proto: PROTO_TCP,
            direction: CT_FORWARD,
            pad: 0,
        };
        for (nat_addr, nat_port) in [(0, 0), (9, 61_000)] {
            let to_backend = CtValue {
                addr: 5,
                port: 6,
                nat_port,
                backend_id: 1,
                service_id: 1,
                nat_addr,
                last_seen: 0,
                state: 0,
                pad: [0; 3],
            };
            let reply = forward
                .reply_of_forward(&to_backend)
                .expect("a forward key");
            let to_client = CtValue {
                addr: 2,
                port: 4,
                nat_port: if nat_addr == 0 { 0 } else { 3 },
                backend_id: 0,
                service_id: 0,
                nat_addr: if nat_addr == 0 { 0 } else { 1 },
                last_seen: 0,
                state: 0,
                pad: [0; 3],
            };
            assert_eq!(reply.forward_of_reply(&to_client), Some(forward));
            assert_eq!(reply.reply_of_forward(&to_client), None);
        }
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        let maps = [
            SERVICE_MAP,
            BACKEND_MAP,
            STATS_MAP,
            REVERSE_MAP,
            AFFINITY_MAP,
            AFFINITY_MATCH_MAP,
            CT_MAP,
            CT_SYN_MAP,
            MAGLEV_MAP,
            NODE_IP_MAP,
            SNAT_CONFIG_MAP,
            FRAG_MAP,
            OOM_EVENTS_MAP,
            OOM_CONFIG_MAP,
        ];
        let programs = [PROG_TC_INGRESS, PROG_TC_EGRESS];
        for name in maps
            .iter()
            .chain(SOCKET_PROGRAMS.iter())
            .chain(programs.iter())
        {
            assert!(
                name.len() <= 15,
                "{name} is longer than BPF_OBJ_NAME_LEN - 1"
            );
        }
    }
}
