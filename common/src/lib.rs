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
#![no_std]

/// Name of the service map (key [`ServiceKey`], value [`ServiceValue`]).
/// The kernel keeps at most 15 characters of a map name.
pub const SERVICE_MAP: &str = "keel_svc_v1";
/// Name of the backend map (key: backend id `u32`, value [`Backend`]).
pub const BACKEND_MAP: &str = "keel_backend_v1";

/// Capacity of the service map, counted in entries (one per service port plus one per
/// backend slot): 65,536 service ports with room for 262,144 backend slots.
pub const SERVICE_MAP_ENTRIES: u32 = 65_536 + 262_144;
/// Capacity of the backend map.
pub const BACKEND_MAP_ENTRIES: u32 = 262_144;

/// Name of the program that translates `connect()` on IPv4 sockets.
pub const PROG_CONNECT4: &str = "keel_connect4";

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
    /// Reserved for service flags (session affinity, …); zero in this layout version.
    pub flags: u32,
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

#[cfg(feature = "user")]
mod user {
    // SAFETY: all three are `#[repr(C)]`, made only of integers, with every padding byte
    // spelled out as a field, so any bit pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::Backend {}
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
        assert_eq!(size_of::<ServiceValue>(), 16);
        assert_eq!(size_of::<Backend>(), 8);
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for name in [SERVICE_MAP, BACKEND_MAP, PROG_CONNECT4] {
            assert!(
                name.len() <= 15,
                "{name} is longer than BPF_OBJ_NAME_LEN - 1"
            );
        }
    }
}
