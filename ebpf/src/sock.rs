//! Socket-level load balancing: translate addresses at the socket layer, before any packet is
//! built, for every process in keel's cgroup.
//!
//! - `connect4`: TCP and connected UDP dial a backend instead of the ClusterIP.
//! - `sendmsg4`: each datagram an unconnected UDP socket sends to a ClusterIP goes to a backend.
//! - `recvmsg4`: a datagram from that backend is reported as coming from the ClusterIP, or the
//!   application (a DNS resolver, say) would drop the reply as unsolicited.
//! - `getpeername4`: a connected socket's peer reads as the ClusterIP it dialled.
//!
//! The last two need to know what a socket dialled: the forward programs record it in an LRU
//! map keyed by socket cookie and backend address.

use aya_ebpf::{
    helpers::{
        bpf_get_socket_cookie,
        generated::{bpf_get_netns_cookie, bpf_set_retval},
    },
    macros::{cgroup_sock_addr, map},
    maps::LruHashMap,
    programs::SockAddrContext,
    EbpfContext,
};
use keel_common::{
    monitor::{MonitorEvent, EVENT_DROP, EVENT_TRANSLATE, PATH_CONNECT, PATH_SENDMSG, REASON_NO_BACKEND},
    ReverseKey, ReverseValue, DEFAULT_REVERSE_MAP_ENTRIES,
};

use aya_log_ebpf::debug;

use crate::debug_log;
use crate::lb::{lookup_service_id, select_backend, Choice, Client, Lookup};
use crate::monitor;

/// Let the syscall go on (with the address possibly rewritten).
const SYS_PROCEED: i32 = 1;
/// Fail the syscall; the error is what `bpf_set_retval` set (EPERM if nothing was set).
const SYS_REJECT: i32 = 0;
/// What a service without ready backends answers: the same as a closed port, so clients fail
/// fast instead of waiting for a timeout.
const ECONNREFUSED: i32 = 111;

/// Socket cookie + backend → ClusterIP:port. Name must equal `keel_common::REVERSE_MAP`.
#[map(name = "keel_revsk_v1")]
static REVERSE: LruHashMap<ReverseKey, ReverseValue> =
    LruHashMap::with_max_entries(DEFAULT_REVERSE_MAP_ENTRIES, 0);

#[cgroup_sock_addr(connect4)]
pub fn keel_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, PATH_CONNECT)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn keel_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, PATH_SENDMSG)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn keel_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    // recvmsg hooks must return 1: the datagram is already received.
    SYS_PROCEED
}

#[cgroup_sock_addr(getpeername4)]
pub fn keel_getpeer4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    SYS_PROCEED
}

/// Forward translation, shared by connect and sendmsg (`path` says which, for the monitor).
#[inline(always)]
fn translate(ctx: &SockAddrContext, path: u8) -> i32 {
    // SAFETY: the kernel hands every cgroup sock_addr program a valid bpf_sock_addr.
    let addr = unsafe { &mut *ctx.sock_addr };
    let proto = addr.protocol as u8;
    // user_port holds the port in network byte order in its low 16 bits.
    let port = addr.user_port as u16;
    let vip = addr.user_ip4;
    // The socket's network namespace stands for the client: one pod, whatever its source IP
    // turns out to be (routing has not chosen one yet).
    // SAFETY: bpf_get_netns_cookie accepts a sock_addr context.
    let client = Client { netns_cookie: unsafe { bpf_get_netns_cookie(ctx.as_ptr()) }, ip: 0 };
    let event = |kind, reason, service_id, backend_addr, backend_port| MonitorEvent {
        netns_cookie: client.netns_cookie,
        service_id,
        daddr: vip,
        dport: port,
        backend_addr,
        backend_port,
        kind,
        reason,
        path,
        protocol: proto,
        ..MonitorEvent::default()
    };
    match select_backend(vip, port, proto, &client, &Choice::Random) {
        Lookup::NotAService => SYS_PROCEED,
        Lookup::NoBackend => {
            monitor::report(|| event(EVENT_DROP, REASON_NO_BACKEND, lookup_service_id(vip, port, proto), 0, 0));
            if debug_log::enabled() {
                debug!(ctx, "sock path {} refused {:i}:{} proto {}: no ready backend", path, u32::from_be(vip), u16::from_be(port), proto);
            }
            // SAFETY: bpf_set_retval is available to cgroup programs since Linux 5.18.
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            SYS_REJECT
        }
        Lookup::Backend { backend, service_id, .. } => {
            monitor::report(|| event(EVENT_TRANSLATE, 0, service_id, backend.addr, backend.port));
            if debug_log::enabled() {
                debug!(
                    ctx,
                    "sock path {} {:i}:{} proto {} -> backend {:i}:{} (service {})",
                    path,
                    u32::from_be(vip),
                    u16::from_be(port),
                    proto,
                    u32::from_be(backend.addr),
                    u16::from_be(backend.port),
                    service_id
                );
            }
            remember(ctx, backend.addr, backend.port, vip, port);
            addr.user_ip4 = backend.addr;
            addr.user_port = u32::from(backend.port);
            SYS_PROCEED
        }
    }
}

/// Records what the socket dialled. A failed insert only costs the reverse translation (the
/// LRU evicts old entries rather than failing when full), so it is not an error.
#[inline(always)]
fn remember(ctx: &SockAddrContext, backend_addr: u32, backend_port: u16, vip: u32, port: u16) {
    let key = ReverseKey {
        // SAFETY: bpf_get_socket_cookie accepts a sock_addr context.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        addr: backend_addr,
        port: backend_port,
        pad: 0,
    };
    let value = ReverseValue { vip, port, pad: 0 };
    let _ = REVERSE.insert(&key, &value, 0);
}

/// Reverse translation: a backend address this socket reached through a ClusterIP reads as
/// that ClusterIP. Only UDP replies and peer names pass through here.
#[inline(always)]
fn reverse(ctx: &SockAddrContext) {
    // SAFETY: as in `translate`.
    let addr = unsafe { &mut *ctx.sock_addr };
    let key = ReverseKey {
        // SAFETY: as in `remember`.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        addr: addr.user_ip4,
        port: addr.user_port as u16,
        pad: 0,
    };
    // SAFETY: copied at once; LRU entries are RCU-freed.
    if let Some(original) = unsafe { REVERSE.get(&key) }.copied() {
        addr.user_ip4 = original.vip;
        addr.user_port = u32::from(original.port);
    }
}

