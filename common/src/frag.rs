//! IPv4 fragments on the per-packet path: the ports of a datagram, learnt from its first
//! fragment, for the later ones that carry no L4 header.

/// Name of the IPv4 fragment map ([`FragKey`] → [`FragPorts`]), an LRU: the ports of a
/// fragmented datagram, learnt from its first fragment, for its later fragments, which carry no
/// L4 header and would otherwise pass untranslated.
pub const FRAG_MAP: &str = "keel_frag4_v1";
/// Default capacity of the fragment map: datagrams in reassembly at once (Cilium: 8192).
pub const DEFAULT_FRAG_MAP_ENTRIES: u32 = 8_192;

/// Key of the fragment map: one IP datagram (RFC 791 names a datagram by these four).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source IP, network byte order.
    pub saddr: u32,
    /// Destination IP, network byte order.
    pub daddr: u32,
    /// The IP identification field, network byte order.
    pub id: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// Always zero.
    pub pad: u8,
}

/// Value of the fragment map: the datagram's ports, network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragPorts {
    pub sport: u16,
    pub dport: u16,
}
