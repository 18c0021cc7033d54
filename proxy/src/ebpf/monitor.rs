//! The listening end of the datapath monitor (`node-daemon monitor`): opens the ring buffer
//! and control array the daemon pinned, keeps a heartbeat in the control array so that the
//! programs report while it listens, and decodes what they report.
//!
//! The ring buffer has one reader: two listeners at once would each see part of the stream.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsFd, BorrowedFd},
    path::Path,
};

use aya::maps::{Array, Map, MapData, MapError, RingBuf};
use keel_common::{
    monitor::{
        reason_name, MonitorEvent, CTL_HEARTBEAT, CTL_LOST, EVENT_CONNTRACK, EVENT_DROP,
        EVENT_TRANSLATE, MONITOR_CONTROL_MAP, MONITOR_EVENTS_MAP, PATH_CONNECT, PATH_SENDMSG,
        PATH_TC_EGRESS, PATH_TC_INGRESS,
    },
    PROTO_TCP, PROTO_UDP,
};
use serde::Serialize;

use crate::ProxyError;

/// A listener on the pinned monitor maps. Dropping it tells the programs to stop at once.
pub struct Listener {
    ring: RingBuf<MapData>,
    control: Array<MapData, u64>,
}

fn map_error(map: &'static str, operation: &'static str) -> impl FnOnce(MapError) -> ProxyError {
    move |source| ProxyError::Map {
        map,
        operation,
        source,
    }
}

impl Listener {
    /// Opens the monitor maps pinned in `bpf_dir` and starts listening.
    pub fn open(bpf_dir: &Path) -> Result<Self, ProxyError> {
        let ring = MapData::from_pin(bpf_dir.join(MONITOR_EVENTS_MAP))
            .map_err(map_error(MONITOR_EVENTS_MAP, "open pinned"))?;
        let ring = RingBuf::try_from(Map::RingBuf(ring))
            .map_err(map_error(MONITOR_EVENTS_MAP, "open pinned"))?;
        let control = MapData::from_pin(bpf_dir.join(MONITOR_CONTROL_MAP))
            .map_err(map_error(MONITOR_CONTROL_MAP, "open pinned"))?;
        let control = Array::try_from(Map::Array(control))
            .map_err(map_error(MONITOR_CONTROL_MAP, "open pinned"))?;
        let mut listener = Self { ring, control };
        listener.heartbeat()?;
        Ok(listener)
    }

    /// Tells the programs someone still listens; call at least every second (they stop
    /// `HEARTBEAT_TIMEOUT_NS` after the last one).
    pub fn heartbeat(&mut self) -> Result<(), ProxyError> {
        self.control
            .set(CTL_HEARTBEAT, monotonic_ns(), 0)
            .map_err(map_error(MONITOR_CONTROL_MAP, "write"))
    }

    /// Events the programs could not report for want of room (a slow reader), since the
    /// maps were created.
    pub fn lost(&self) -> u64 {
        self.control.get(&CTL_LOST, 0).unwrap_or(0)
    }

    /// The next reported event, if one is waiting.
    pub fn next_event(&mut self) -> Option<MonitorEvent> {
        let item = self.ring.next()?;
        decode(&item)
    }

    /// Readable when events are waiting (for poll).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Nobody listens any more: the programs stop at their next event, not in seconds.
        let _ = self.control.set(CTL_HEARTBEAT, 0, 0);
    }
}

fn decode(bytes: &[u8]) -> Option<MonitorEvent> {
    if bytes.len() < std::mem::size_of::<MonitorEvent>() {
        return None;
    }
    // SAFETY: MonitorEvent is plain integers (any bit pattern is valid) and the length was
    // checked; read_unaligned makes no alignment assumption about the ring buffer.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<MonitorEvent>()) })
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// An event as `node-daemon monitor` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatapathEvent {
    /// Monotonic nanoseconds (the kernel's clock).
    pub time_ns: u64,
    /// `translate`, `drop` or `conntrack`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// `connect`, `sendmsg` (the socket path), `tc-ingress` or `tc-egress` (the packet path).
    pub path: &'static str,
    pub protocol: &'static str,
    pub service_id: u32,
    /// The client's address and port (the packet path only: a socket has no source yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<SocketAddrV4>,
    /// What the client dialled: a ClusterIP or node address and port.
    pub destination: SocketAddrV4,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<SocketAddrV4>,
    /// The client socket's network namespace (the socket path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_cookie: Option<u64>,
}

impl DatapathEvent {
    pub fn from_raw(raw: &MonitorEvent) -> Self {
        let address = |addr: u32, port: u16| {
            SocketAddrV4::new(Ipv4Addr::from(u32::from_be(addr)), u16::from_be(port))
        };
        Self {
            time_ns: raw.timestamp_ns,
            kind: match raw.kind {
                EVENT_TRANSLATE => "translate",
                EVENT_DROP => "drop",
                EVENT_CONNTRACK => "conntrack",
                _ => "unknown",
            },
            reason: Some(reason_name(raw.reason)).filter(|r| !r.is_empty()),
            path: match raw.path {
                PATH_CONNECT => "connect",
                PATH_SENDMSG => "sendmsg",
                PATH_TC_INGRESS => "tc-ingress",
                PATH_TC_EGRESS => "tc-egress",
                _ => "unknown",
            },
            protocol: match raw.protocol {
                PROTO_TCP => "TCP",
                PROTO_UDP => "UDP",
                _ => "unknown",
            },
            service_id: raw.service_id,
            client: (raw.saddr != 0).then(|| address(raw.saddr, raw.sport)),
            destination: address(raw.daddr, raw.dport),
            backend: (raw.backend_addr != 0).then(|| address(raw.backend_addr, raw.backend_port)),
            netns_cookie: (raw.netns_cookie != 0).then_some(raw.netns_cookie),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_common::monitor::REASON_NO_BACKEND;

    #[test]
    fn raw_events_decode_in_host_order() {
        let raw = MonitorEvent {
            timestamp_ns: 7,
            netns_cookie: 4096,
            service_id: 3,
            daddr: u32::from(Ipv4Addr::new(10, 96, 0, 10)).to_be(),
            dport: 80u16.to_be(),
            backend_addr: u32::from(Ipv4Addr::new(10, 244, 0, 5)).to_be(),
            backend_port: 8080u16.to_be(),
            kind: EVENT_TRANSLATE,
            path: PATH_CONNECT,
            protocol: PROTO_TCP,
            ..MonitorEvent::default()
        };
        let bytes = unsafe_bytes(&raw);
        let event = DatapathEvent::from_raw(&decode(&bytes).expect("whole"));
        assert_eq!(
            serde_json::to_string(&event).expect("json"),
            r#"{"time_ns":7,"kind":"translate","path":"connect","protocol":"TCP","service_id":3,"destination":"10.96.0.10:80","backend":"10.244.0.5:8080","netns_cookie":4096}"#
        );
        // A record shorter than an event (a damaged or foreign ring) is skipped, not read.
        assert_eq!(decode(&bytes[..47]), None);
        // Unknown codes print as unknown rather than failing.
        let odd = MonitorEvent {
            kind: 200,
            reason: 200,
            path: 200,
            protocol: 200,
            ..MonitorEvent::default()
        };
        let event = DatapathEvent::from_raw(&odd);
        assert_eq!(
            (event.kind, event.reason, event.path, event.protocol),
            ("unknown", None, "unknown", "unknown")
        );
        let drop = MonitorEvent {
            kind: EVENT_DROP,
            reason: REASON_NO_BACKEND,
            ..MonitorEvent::default()
        };
        assert_eq!(DatapathEvent::from_raw(&drop).reason, Some("no-backend"));
    }

    fn unsafe_bytes(event: &MonitorEvent) -> Vec<u8> {
        // SAFETY: MonitorEvent is #[repr(C)] with explicit padding: every byte is initialised.
        unsafe {
            std::slice::from_raw_parts(
                (event as *const MonitorEvent).cast::<u8>(),
                std::mem::size_of::<MonitorEvent>(),
            )
        }
        .to_vec()
    }
}
