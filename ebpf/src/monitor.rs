//! Datapath events for `node-daemon monitor`, written only while a listener's heartbeat is
//! fresh (see `keel_common::monitor`): with nobody listening, an event site costs one array
//! lookup.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, RingBuf},
};
use keel_common::monitor::{
    MonitorEvent, CTL_ENTRIES, CTL_HEARTBEAT, CTL_LOST, HEARTBEAT_TIMEOUT_NS, MONITOR_EVENTS_BYTES,
};

/// Name must equal `keel_common::monitor::MONITOR_EVENTS_MAP`.
#[map(name = "keel_mon_ev_v1")]
static EVENTS: RingBuf = RingBuf::with_byte_size(MONITOR_EVENTS_BYTES, 0);

/// Name must equal `keel_common::monitor::MONITOR_CONTROL_MAP`.
#[map(name = "keel_mon_ctl_v1")]
static CONTROL: Array<u64> = Array::with_max_entries(CTL_ENTRIES, 0);

/// The time now, if someone listens: the event's timestamp. `None` costs one lookup.
#[inline(always)]
pub fn listening() -> Option<u64> {
    let heartbeat = *CONTROL.get(CTL_HEARTBEAT)?;
    if heartbeat == 0 {
        return None;
    }
    // SAFETY: bpf_ktime_get_ns is callable from every program type keel uses.
    let now = unsafe { bpf_ktime_get_ns() };
    (now.saturating_sub(heartbeat) < HEARTBEAT_TIMEOUT_NS).then_some(now)
}

/// Sends `event` (its timestamp set here) if someone listens; a full ring buffer counts the
/// loss instead.
#[inline(always)]
pub fn report(event: impl FnOnce() -> MonitorEvent) {
    let Some(now) = listening() else {
        return;
    };
    let mut event = event();
    event.timestamp_ns = now;
    if EVENTS.output::<MonitorEvent>(&event, 0).is_err() {
        if let Some(lost) = CONTROL.get_ptr_mut(CTL_LOST) {
            // SAFETY: a live array element. Not atomic (the BPF target's core has no atomic
            // read-modify-write): two CPUs losing at once may count one. It is a hint that
            // the listener is slow, not an account.
            unsafe { *lost += 1 };
        }
    }
}
