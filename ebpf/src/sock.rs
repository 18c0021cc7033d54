//! Socket-level load balancing: translate the destination of `connect()` before any packet
//! is built. Attached to keel's cgroup, so it applies to every process placed there.

use aya_ebpf::{helpers::generated::bpf_set_retval, macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::lb::{select_backend, Lookup};

/// Let the syscall go on (with the address possibly rewritten).
const SYS_PROCEED: i32 = 1;
/// Fail the syscall; the error is what `bpf_set_retval` set (EPERM if nothing was set).
const SYS_REJECT: i32 = 0;
/// What `connect()` returns when a service has no ready backend: the same as connecting to a
/// closed port, so clients fail fast instead of waiting for a timeout.
const ECONNREFUSED: i32 = 111;

#[cgroup_sock_addr(connect4)]
pub fn keel_connect4(ctx: SockAddrContext) -> i32 {
    connect4(&ctx)
}

#[inline(always)]
fn connect4(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the kernel hands every cgroup/connect4 program a valid bpf_sock_addr.
    let addr = unsafe { &mut *ctx.sock_addr };
    let proto = addr.protocol as u8;
    // user_port holds the port in network byte order in its low 16 bits.
    let port = addr.user_port as u16;
    match select_backend(addr.user_ip4, port, proto) {
        Lookup::NotAService => SYS_PROCEED,
        Lookup::NoBackend => {
            // SAFETY: bpf_set_retval is available to cgroup programs since Linux 5.18.
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            SYS_REJECT
        }
        Lookup::Backend(backend) => {
            addr.user_ip4 = backend.addr;
            addr.user_port = u32::from(backend.port);
            SYS_PROCEED
        }
    }
}
