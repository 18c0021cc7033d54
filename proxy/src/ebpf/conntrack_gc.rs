//! Expiry of the per-packet path's conntrack: the programs record when each direction of a
//! flow last passed and its TCP state; this walks both conntrack maps (main and SYN) and
//! deletes the flows past their lifetime (`keel_common::ct_lifetime`, Cilium's defaults), in
//! both directions. Without it a flow would leave only when the LRU needs its room.
//!
//! A flow lives while either of its directions passes: an entry is judged together with its
//! peer (the other direction), so a one-way stream keeps its silent direction too.

use std::{
    borrow::BorrowMut,
    collections::HashMap as StdHashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap, Map, MapData, MapError};
use keel_common::{
    ct_flow_expired, CtKey, CtValue, CT_MAP, CT_STATE_CLOSING, CT_STATE_ESTABLISHED, CT_STATE_NONE,
    CT_STATE_SYN, CT_SYN_MAP,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use crate::ProxyError;

/// Cilium starts its adaptive GC interval here; keel keeps it fixed.
pub const DEFAULT_GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The conntrack states, as the metric labels them, indexed by `CT_STATE_*`.
pub const STATE_LABELS: [&str; 4] = ["udp", "syn", "established", "closing"];

/// What one sweep found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Entries deleted (each direction counts).
    pub deleted: u64,
    /// Entries kept, by `CT_STATE_*`.
    pub live: [u64; 4],
}

/// CLOCK_MONOTONIC in seconds: the clock of `bpf_ktime_get_ns`, as entries record it.
pub fn monotonic_seconds() -> Result<u32, ProxyError> {
    let now =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_err(ProxyError::Clock)?;
    // Truncation is the programs' too: u32 seconds wrap after 136 years of uptime.
    Ok(now.tv_sec() as u32)
}

type CtMap<T> = HashMap<T, CtKey, CtValue>;

fn failed(map: &'static str, operation: &'static str) -> impl Fn(MapError) -> ProxyError {
    move |source| ProxyError::Map {
        map,
        operation,
        source,
    }
}

/// Deletes the expired flows of both maps at `now` (monotonic seconds).
pub fn sweep<T: BorrowMut<MapData>>(
    main: &mut CtMap<T>,
    syn: &mut CtMap<T>,
    now: u32,
) -> Result<Sweep, ProxyError> {
    let read = |map: &CtMap<T>, name| -> Result<Vec<(CtKey, CtValue)>, ProxyError> {
        map.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed(name, "read"))
    };
    let main_entries = read(main, CT_MAP)?;
    let syn_entries = read(syn, CT_SYN_MAP)?;
    // Peers are looked up across both maps: a flow being promoted may straddle them.
    let all: StdHashMap<CtKey, CtValue> = syn_entries
        .iter()
        .chain(main_entries.iter())
        .copied()
        .collect();
    let mut result = Sweep::default();
    for (map, name, entries) in [
        (&mut *main, CT_MAP, &main_entries),
        (&mut *syn, CT_SYN_MAP, &syn_entries),
    ] {
        for (key, value) in entries {
            let peer = key
                .reply_of_forward(value)
                .or_else(|| key.forward_of_reply(value))
                .and_then(|peer| all.get(&peer));
            if ct_flow_expired(key.proto, value, peer, now) {
                match map.remove(key) {
                    Ok(()) => result.deleted += 1,
                    // Evicted or deleted by the programs since it was read: gone anyway.
                    Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(failed(name, "delete")(e)),
                }
            } else {
                let state = usize::from(value.state.min(CT_STATE_CLOSING));
                result.live[state] += 1;
            }
        }
    }
    Ok(result)
}

const _: () = assert!(
    CT_STATE_NONE == 0 && CT_STATE_SYN == 1 && CT_STATE_ESTABLISHED == 2 && CT_STATE_CLOSING == 3
);

/// The daemon's collector: sweeps the pinned maps on demand and shows the last sweep's
/// figures on `/metrics`.
#[derive(Clone, Debug)]
pub struct ConntrackGc {
    bpf_dir: PathBuf,
    totals: Arc<Mutex<(Sweep, u64)>>,
}

impl ConntrackGc {
    pub fn new(bpf_dir: PathBuf) -> Self {
        Self {
            bpf_dir,
            totals: Arc::default(),
        }
    }

    /// One sweep of the pinned maps, now.
    pub fn run_once(&self) -> Result<Sweep, ProxyError> {
        let open = |name: &'static str| -> Result<CtMap<MapData>, ProxyError> {
            let data =
                MapData::from_pin(self.bpf_dir.join(name)).map_err(failed(name, "open pinned"))?;
            HashMap::try_from(Map::LruHashMap(data)).map_err(failed(name, "open pinned"))
        };
        let mut main = open(CT_MAP)?;
        let mut syn = open(CT_SYN_MAP)?;
        let sweep = sweep(&mut main, &mut syn, monotonic_seconds()?)?;
        let mut totals = self
            .totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        totals.0 = sweep;
        totals.1 += sweep.deleted;
        Ok(sweep)
    }
}

impl Collector for ConntrackGc {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (last, deleted) = *self
            .totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "conntrack_entries",
            "Per-packet conntrack entries (both directions, main and SYN maps) at the last GC, by state",
            None,
            gauge.metric_type(),
        )?;
        for (state, count) in STATE_LABELS.iter().zip(last.live) {
            let labels = [("state", *state)];
            ConstGauge::new(count as i64).encode(family.encode_family(&labels)?)?;
        }
        let counter = ConstCounter::new(deleted);
        let family = encoder.encode_descriptor(
            "conntrack_gc_deleted",
            "Expired conntrack entries the GC deleted",
            None,
            counter.metric_type(),
        )?;
        counter.encode(family)?;
        Ok(())
    }
}
