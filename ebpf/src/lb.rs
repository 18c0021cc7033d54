//! Service and backend maps, per-service counters, and the choice of a backend for a new flow.

use aya_ebpf::{
    helpers::bpf_get_prandom_u32,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use keel_common::{
    Backend, ServiceKey, ServiceStats, ServiceValue, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_SERVICES,
    DEFAULT_SERVICE_MAP_ENTRIES,
};

/// `BPF_F_NO_PREALLOC`: elements are freed through RCU, so an entry that user space deletes
/// while a program reads it is never reused under the reader's feet (a preallocated hash map
/// gives no such guarantee). It also keeps a large, mostly empty map from pinning memory.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Services: `(vip, port, proto, slot)` → slot 0 holds the count, slots 1..=count a backend id.
/// Name must equal `keel_common::SERVICE_MAP`.
#[map(name = "keel_svc_v1")]
static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(DEFAULT_SERVICE_MAP_ENTRIES, BPF_F_NO_PREALLOC);

/// Backends by id. Name must equal `keel_common::BACKEND_MAP`.
#[map(name = "keel_backend_v1")]
static BACKENDS: HashMap<u32, Backend> =
    HashMap::with_max_entries(DEFAULT_MAX_BACKENDS, BPF_F_NO_PREALLOC);

/// Counters by service id (ids start at 1). Name must equal `keel_common::STATS_MAP`.
#[map(name = "keel_stats_v1")]
static STATS: PerCpuArray<ServiceStats> = PerCpuArray::with_max_entries(DEFAULT_MAX_SERVICES + 1, 0);

/// What a lookup of a destination found.
pub enum Lookup {
    /// The destination is no service: leave it alone.
    NotAService,
    /// The destination is a service with no ready backend: refuse the flow.
    NoBackend,
    /// Send the flow here.
    Backend(Backend),
}

/// Looks up `vip:port/proto` (network byte order), picks a backend at random and counts the
/// outcome against the service.
///
/// Every value is copied out of the map before use. User space writes a service
/// make-before-break (backends, then slots, then the count in slot 0), so any count read here
/// names slots that exist; if a slot or backend vanished between two lookups (a service shrank
/// mid-way), the flow is refused rather than sent somewhere stale.
#[inline(always)]
pub fn select_backend(vip: u32, port: u16, proto: u8) -> Lookup {
    // SAFETY: the value is copied at once; see BPF_F_NO_PREALLOC above for why the
    // memory stays valid while it is read.
    let Some(service) = (unsafe { SERVICES.get(ServiceKey::new(vip, port, proto, 0)) }).copied()
    else {
        return Lookup::NotAService;
    };
    let lookup = pick(vip, port, proto, service.count);
    count(service.service_id, &lookup);
    lookup
}

#[inline(always)]
fn pick(vip: u32, port: u16, proto: u8, count: u32) -> Lookup {
    if count == 0 {
        return Lookup::NoBackend;
    }
    // Slots are 1-based; count < 2^16, so the slot fits a u16.
    let slot = (unsafe { bpf_get_prandom_u32() } % count) as u16 + 1;
    // SAFETY: as above.
    let Some(entry) = (unsafe { SERVICES.get(ServiceKey::new(vip, port, proto, slot)) }).copied()
    else {
        return Lookup::NoBackend;
    };
    // SAFETY: as above.
    match unsafe { BACKENDS.get(entry.backend_id) } {
        Some(backend) => Lookup::Backend(*backend),
        None => Lookup::NoBackend,
    }
}

/// Per-CPU, so a plain increment is race-free.
#[inline(always)]
fn count(service_id: u32, lookup: &Lookup) {
    let Some(stats) = STATS.get_ptr_mut(service_id) else {
        return;
    };
    // SAFETY: the pointer is this CPU's slot of a live array element.
    let stats = unsafe { &mut *stats };
    match lookup {
        Lookup::Backend(_) => stats.connections += 1,
        Lookup::NoBackend => stats.refused += 1,
        Lookup::NotAService => {}
    }
}
