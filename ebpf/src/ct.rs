//! Connection tracking of the per-packet path: two LRU maps of the same layout.
//!
//! - the main map holds flows past their handshake (and UDP flows, and TCP flows first seen
//!   mid-connection);
//! - the SYN map holds TCP flows that have sent only a SYN. A flow moves to the main map on
//!   its client's first ACK, so a SYN flood churns the SYN map alone and never evicts an
//!   established flow.
//!
//! Each entry carries when its direction last passed and a TCP state; the daemon's garbage
//! collector deletes flows past their lifetime (`keel_common::ct_lifetime`). A packet writes
//! its entry only when the state changes or the last-seen time is [`CT_REPORT_INTERVAL`] old,
//! so most packets cause no map write.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns, macros::map, maps::LruHashMap};
use keel_common::{
    ct_flow_yields_reply_key, CtKey, CtValue, CT_REPORT_INTERVAL, CT_STATE_CLOSING, CT_STATE_ESTABLISHED,
    CT_STATE_SYN, DEFAULT_CT_MAP_ENTRIES, DEFAULT_CT_SYN_MAP_ENTRIES, PROTO_TCP,
};

/// Flows in both directions. Name must equal `keel_common::CT_MAP`.
#[map(name = "keel_ct4_v3")]
static CONNTRACK: LruHashMap<CtKey, CtValue> =
    LruHashMap::with_max_entries(DEFAULT_CT_MAP_ENTRIES, 0);

/// TCP flows that have sent only a SYN. Name must equal `keel_common::CT_SYN_MAP`.
#[map(name = "keel_ct4_syn_v1")]
static CT_SYN: LruHashMap<CtKey, CtValue> =
    LruHashMap::with_max_entries(DEFAULT_CT_SYN_MAP_ENTRIES, 0);

const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_RST: u8 = 0x04;
const TCP_FLAG_ACK: u8 = 0x10;

/// Which map an entry lives in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Main,
    Syn,
}

impl Table {
    #[inline(always)]
    fn map(self) -> &'static LruHashMap<CtKey, CtValue> {
        match self {
            Table::Main => &CONNTRACK,
            Table::Syn => &CT_SYN,
        }
    }

    #[inline(always)]
    fn other(self) -> Table {
        match self {
            Table::Main => Table::Syn,
            Table::Syn => Table::Main,
        }
    }
}

/// The monotonic clock in seconds, as entries record it.
#[inline(always)]
pub fn now() -> u32 {
    // SAFETY: bpf_ktime_get_ns is callable from every program type keel uses.
    (unsafe { bpf_ktime_get_ns() } / 1_000_000_000) as u32
}

/// `key`'s entry in `table`, copied.
#[inline(always)]
pub fn get(table: Table, key: &CtKey) -> Option<CtValue> {
    // SAFETY: copied at once; LRU entries are RCU-freed.
    (unsafe { table.map().get(key) }).copied()
}

/// `key`'s entry, from the main map, else the SYN map.
#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<(CtValue, Table)> {
    if let Some(value) = get(Table::Main, key) {
        return Some((value, Table::Main));
    }
    get(Table::Syn, key).map(|value| (value, Table::Syn))
}

#[inline(always)]
pub fn insert(table: Table, key: &CtKey, value: &CtValue) {
    let _ = table.map().insert(key, value, 0);
}

#[inline(always)]
pub fn remove(table: Table, key: &CtKey) {
    let _ = table.map().remove(key);
}

/// Inserts `key` into `table` unless `table` holds it already. False when it did.
#[inline(always)]
pub fn insert_new(table: Table, key: &CtKey, value: &CtValue) -> bool {
    table.map().insert(key, value, u64::from(BPF_NOEXIST)).is_ok()
}

/// Inserts `key` into `table` only if no flow holds it in either map: a source-NATed flow's
/// port is claimed this way. True when claimed.
#[inline(always)]
pub fn claim(table: Table, key: &CtKey, value: &CtValue) -> bool {
    if get(table.other(), key).is_some() {
        return false;
    }
    table
        .map()
        .insert(key, value, u64::from(BPF_NOEXIST))
        .is_ok()
}

/// The TCP state after a packet with `flags` in `direction` (forward: from the client).
#[inline(always)]
pub fn next_state(proto: u8, state: u8, flags: u8, forward: bool) -> u8 {
    if proto != PROTO_TCP {
        return state;
    }
    if flags & (TCP_FLAG_FIN | TCP_FLAG_RST) != 0 {
        return CT_STATE_CLOSING;
    }
    if forward && flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0 {
        // A new connection reusing a closed flow's ports starts over.
        return if state == CT_STATE_CLOSING {
            CT_STATE_SYN
        } else {
            state
        };
    }
    if forward && state == CT_STATE_SYN && flags & TCP_FLAG_ACK != 0 {
        return CT_STATE_ESTABLISHED;
    }
    state
}

/// Records a packet of `key`'s direction: its state and last-seen time, written in place and
/// only when they change enough to matter.
#[inline(always)]
pub fn touch(table: Table, key: &CtKey, value: &CtValue, flags: u8, forward: bool) {
    let now = now();
    let state = next_state(key.proto, value.state, flags, forward);
    if state == value.state && now.wrapping_sub(value.last_seen) < CT_REPORT_INTERVAL {
        return;
    }
    if let Some(entry) = table.map().get_ptr_mut(key) {
        // SAFETY: the pointer is the map's live element for this program run; the two fields
        // are plain integers, and a racing writer on another CPU writes the same kind of
        // values (the GC reads either).
        unsafe {
            (*entry).last_seen = now;
            (*entry).state = state;
        }
    }
}

/// Whether the flow whose reply entry is `reply` (`value` its value) must give the key up to
/// a new flow of another service (`newcomer_syn`: that flow opens with a SYN), judged by its
/// own time and state and those of its forward entry, where that is still there
/// (`keel_common::ct_flow_yields_reply_key`). When it yields, its forward entry is deleted: a
/// straggler of the old flow then finds no entry, instead of reaching the backend on the
/// four-tuple the new flow now owns.
#[inline(always)]
pub fn reply_flow_yields(reply: &CtKey, value: &CtValue, newcomer_syn: bool) -> bool {
    let forward_key = reply.forward_of_reply(value);
    let forward = forward_key.as_ref().and_then(lookup);
    let forward_value = forward.as_ref().map(|(v, _)| v);
    let yields = ct_flow_yields_reply_key(reply.proto, newcomer_syn, value, forward_value, now());
    if yields {
        if let (Some(key), Some((_, table))) = (forward_key, forward) {
            remove(table, &key);
        }
    }
    yields
}
