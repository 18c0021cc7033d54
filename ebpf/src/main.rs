//! keel's kernel programs.
//!
//! # Layout
//! - [`sock`]: socket-level service translation (`cgroup/connect4`): the destination of a
//!   `connect()` to a ClusterIP:port is rewritten to a backend before the socket is connected,
//!   so no packet ever carries the ClusterIP.
//! - [`tc`]: per-packet translation on tc ingress/egress with connection tracking, for traffic
//!   no local socket made (other namespaces, other nodes, NodePorts).
//! - [`ct`]: the connection tracking maps of [`tc`]: TCP state, last-seen times, and a SYN
//!   map apart so a SYN flood does not evict established flows.
//! - [`tc_icmp`]: ICMP errors about flows [`tc`] translated get their quoted packet translated
//!   back.
//! - [`lb`]: the service and backend maps and backend selection, shared by every program.
//! - [`monitor`]: datapath events for `node-daemon monitor`, written only while it listens.
//! - [`debug_log`]: `aya-log` debug records, compiled in but removed by the verifier unless
//!   the daemon runs with `--bpf-debug-log`.
//!
//! Every program entry point is thin: `fn x(ctx) -> i32 { match try_x(&ctx) { ... } }`, so the
//! logic reads as ordinary `Result`-returning Rust.
#![no_std]
#![no_main]

mod ct;
mod debug_log;
mod lb;
mod monitor;
mod sock;
mod tc;
mod tc_icmp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is never called.
    loop {}
}

// The kernel refuses GPL-only helpers (bpf_set_retval among them) to non-GPL programs.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
