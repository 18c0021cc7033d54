//! keel's OOM watcher: a program on the `oom/mark_victim` tracepoint that reports every OOM
//! kill, the moment the kernel picks its victim, through a ring buffer.
//!
//! A separate object from the service programs: it is loaded in every proxy mode, and
//! loading the service object twice would create its (large) maps twice.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{Array, RingBuf},
    programs::TracePointContext,
};
use keel_common::{
    OomEvent, OOM_CFG_ANON_RSS, OOM_CFG_ENTRIES, OOM_CFG_FILE_RSS, OOM_CFG_PID, OOM_CFG_SHMEM_RSS,
    OOM_CFG_TOTAL_VM, OOM_EVENTS_BYTES,
};

/// Kills, oldest first.
#[map(name = "keel_oom_ev_v1")]
static EVENTS: RingBuf = RingBuf::with_byte_size(OOM_EVENTS_BYTES, 0);

/// Field offsets of the tracepoint record (written by the daemon from the `format` file).
#[map(name = "keel_oom_cfg_v1")]
static CONFIG: Array<u32> = Array::with_max_entries(OOM_CFG_ENTRIES, 0);

#[tracepoint]
pub fn keel_oom_victim(ctx: TracePointContext) -> u32 {
    let event = OomEvent {
        // SAFETY: both helpers are always callable from a tracepoint program.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        total_vm_kb: field_u64(&ctx, OOM_CFG_TOTAL_VM),
        anon_rss_kb: field_u64(&ctx, OOM_CFG_ANON_RSS),
        file_rss_kb: field_u64(&ctx, OOM_CFG_FILE_RSS),
        shmem_rss_kb: field_u64(&ctx, OOM_CFG_SHMEM_RSS),
        pid: field_u32(&ctx, OOM_CFG_PID),
        pad: 0,
    };
    // A full ring buffer drops the event; the daemon's cgroup counters still see the kill.
    let _ = EVENTS.output::<OomEvent>(&event, 0);
    0
}

fn offset(index: u32) -> Option<usize> {
    match CONFIG.get(index) {
        Some(&offset) if offset != 0 => Some(offset as usize),
        _ => None,
    }
}

fn field_u64(ctx: &TracePointContext, index: u32) -> u64 {
    // SAFETY: read_at uses bpf_probe_read; a bad offset reads an error, not memory.
    offset(index).and_then(|at| unsafe { ctx.read_at::<u64>(at) }.ok()).unwrap_or(0)
}

fn field_u32(ctx: &TracePointContext, index: u32) -> u32 {
    // SAFETY: as above.
    offset(index).and_then(|at| unsafe { ctx.read_at::<u32>(at) }.ok()).unwrap_or(0)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
