//! The datapath monitor's ABI: what the programs report to `node-daemon monitor`, and how
//! they know someone listens.
//!
//! The programs write [`MonitorEvent`]s into a ring buffer only while a listener's heartbeat
//! is fresh: `MONITOR_CONTROL_MAP[CTL_HEARTBEAT]` holds the `bpf_ktime_get_ns` time (the
//! monotonic clock) a listener last wrote, and events stop [`HEARTBEAT_TIMEOUT_NS`] after it,
//! so a listener killed without a goodbye costs nothing for long. With no listener, the cost
//! on the datapath is one array lookup per event site.

/// The ring buffer of [`MonitorEvent`]s.
pub const MONITOR_EVENTS_MAP: &str = "keel_mon_ev_v1";
/// Its size in bytes (a power of two, a multiple of the page size): 64 bytes an event, so
/// about 16,000 events between two reads.
pub const MONITOR_EVENTS_BYTES: u32 = 1024 * 1024;
/// An array of `u64`, indexed by the `CTL_*` constants.
pub const MONITOR_CONTROL_MAP: &str = "keel_mon_ctl_v1";
/// The listener's last heartbeat (monotonic ns); 0: nobody listens.
pub const CTL_HEARTBEAT: u32 = 0;
/// Events the ring buffer had no room for (a slow listener).
pub const CTL_LOST: u32 = 1;
pub const CTL_ENTRIES: u32 = 2;
/// How long after a listener's last heartbeat the programs keep reporting.
pub const HEARTBEAT_TIMEOUT_NS: u64 = 3_000_000_000;

/// [`MonitorEvent::kind`]: a flow was sent to a backend.
pub const EVENT_TRANSLATE: u8 = 1;
/// A packet or connect was refused ([`MonitorEvent::reason`] says why).
pub const EVENT_DROP: u8 = 2;
/// The conntrack table did not hold what the packet needed ([`MonitorEvent::reason`]).
pub const EVENT_CONNTRACK: u8 = 3;

/// Drop: the service has no ready backend.
pub const REASON_NO_BACKEND: u8 = 1;
/// Drop: no source port was free for a source-NATed flow.
pub const REASON_NO_SNAT_PORT: u8 = 2;
/// Conntrack: a TCP packet in the middle of a connection had no entry (evicted, or the
/// connection predates the datapath): it was balanced as a new flow.
pub const REASON_CT_MISS: u8 = 3;
/// Conntrack: a tracked flow's reply entry was gone (evicted apart from its forward entry).
pub const REASON_CT_REPLY_EVICTED: u8 = 4;
/// Drop: a new flow's reply key is a live flow's (the same client address and port reaching
/// another service through the same backend): the backend could not tell them apart.
pub const REASON_CT_COLLISION: u8 = 5;

/// [`MonitorEvent::path`]: where in the datapath it happened.
pub const PATH_CONNECT: u8 = 1;
pub const PATH_SENDMSG: u8 = 2;
pub const PATH_TC_INGRESS: u8 = 3;
pub const PATH_TC_EGRESS: u8 = 4;

/// One datapath event. Addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MonitorEvent {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// The socket's network namespace (socket path); 0 on the packet path.
    pub netns_cookie: u64,
    pub service_id: u32,
    /// The client (packet path; 0 on the socket path, where no source is chosen yet).
    pub saddr: u32,
    /// What the client dialled: the ClusterIP or node address.
    pub daddr: u32,
    /// The backend it was sent to (0 for a drop).
    pub backend_addr: u32,
    pub sport: u16,
    pub dport: u16,
    pub backend_port: u16,
    pub kind: u8,
    pub reason: u8,
    pub path: u8,
    pub protocol: u8,
    pub pad: [u8; 6],
}

/// The reason's name, as `node-daemon monitor` prints and filters it.
pub fn reason_name(reason: u8) -> &'static str {
    match reason {
        REASON_NO_BACKEND => "no-backend",
        REASON_NO_SNAT_PORT => "no-snat-port",
        REASON_CT_MISS => "ct-miss",
        REASON_CT_REPLY_EVICTED => "ct-reply-evicted",
        REASON_CT_COLLISION => "ct-collision",
        _ => "",
    }
}

/// Every reason, for the listener's filters and help.
pub const REASONS: [u8; 5] = [
    REASON_NO_BACKEND,
    REASON_NO_SNAT_PORT,
    REASON_CT_MISS,
    REASON_CT_REPLY_EVICTED,
    REASON_CT_COLLISION,
];
