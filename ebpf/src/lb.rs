//! Service and backend maps, and the choice of a backend for a new flow.

use aya_ebpf::{helpers::bpf_get_prandom_u32, macros::map, maps::HashMap};
use keel_common::{
    Backend, ServiceKey, ServiceValue, BACKEND_MAP_ENTRIES, SERVICE_MAP_ENTRIES,
};

/// `BPF_F_NO_PREALLOC`: elements are freed through RCU, so an entry that user space deletes
/// while a program reads it is never reused under the reader's feet (a preallocated hash map
/// gives no such guarantee). It also keeps an empty 300k-entry map from pinning memory.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Services: `(vip, port, proto, slot)` → slot 0 holds the count, slots 1..=count a backend id.
/// Name must equal `keel_common::SERVICE_MAP`.
#[map(name = "keel_svc_v1")]
static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(SERVICE_MAP_ENTRIES, BPF_F_NO_PREALLOC);

/// Backends by id. Name must equal `keel_common::BACKEND_MAP`.
#[map(name = "keel_backend_v1")]
static BACKENDS: HashMap<u32, Backend> =
    HashMap::with_max_entries(BACKEND_MAP_ENTRIES, BPF_F_NO_PREALLOC);

/// What a lookup of a destination found.
pub enum Lookup {
    /// The destination is no service: leave it alone.
    NotAService,
    /// The destination is a service with no ready backend: refuse the flow.
    NoBackend,
    /// Send the flow here.
    Backend(Backend),
}

/// Looks up `vip:port/proto` (network byte order) and picks a backend at random.
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
    if service.count == 0 {
        return Lookup::NoBackend;
    }
    // Slots are 1-based; the bound keeps the index within u16 for the verifier too.
    let slot = (unsafe { bpf_get_prandom_u32() } % service.count) as u16 + 1;
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
