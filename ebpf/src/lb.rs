//! Service and backend maps, per-service counters, and the choice of a backend for a new flow.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
};
use keel_common::{
    AffinityKey, AffinityMatchKey, AffinityValue, Backend, MaglevChunk, MaglevKey, ServiceKey,
    ServiceStats, ServiceValue, DEFAULT_AFFINITY_MAP_ENTRIES, DEFAULT_MAGLEV_MAP_ENTRIES,
    DEFAULT_MAX_BACKENDS, DEFAULT_MAX_SERVICES, DEFAULT_SERVICE_MAP_ENTRIES, MAGLEV_CHUNK,
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

/// Who asks for a service: the key of its session affinity.
pub struct Client {
    /// The network namespace of the socket (socket-level translation), or 0.
    pub netns_cookie: u64,
    /// The source IP, network byte order (per-packet translation), or 0.
    pub ip: u32,
}

/// Remembered backends of clients of services with `sessionAffinity: ClientIP`.
/// Name must equal `keel_common::AFFINITY_MAP`.
#[map(name = "keel_affin_v1")]
static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::with_max_entries(DEFAULT_AFFINITY_MAP_ENTRIES, 0);

/// `(service id, backend id)` present while that backend is in that service (affinity services
/// only). Name must equal `keel_common::AFFINITY_MATCH_MAP`.
#[map(name = "keel_affmat_v1")]
static AFFINITY_MATCH: HashMap<AffinityMatchKey, u32> =
    HashMap::with_max_entries(DEFAULT_MAX_BACKENDS, BPF_F_NO_PREALLOC);

/// Chunked Maglev lookup tables, by service id. Name must equal `keel_common::MAGLEV_MAP`.
#[map(name = "keel_maglev_v1")]
static MAGLEV: HashMap<MaglevKey, MaglevChunk> =
    HashMap::with_max_entries(DEFAULT_MAGLEV_MAP_ENTRIES, BPF_F_NO_PREALLOC);

/// The node's addresses, where NodePorts answer. Name must equal `keel_common::NODE_IP_MAP`.
#[map(name = "keel_nodeip_v1")]
static NODE_IPS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// What a lookup of a destination found.
pub enum Lookup {
    /// The destination is no service: leave it alone.
    NotAService,
    /// The destination is a service with no ready backend: refuse the flow.
    NoBackend,
    /// Send the flow to this backend.
    Backend { backend: Backend, backend_id: u32, service_id: u32 },
}

/// How a new flow picks among a service's backends.
pub enum Choice {
    /// Uniformly at random: the socket path, where each connect is a new flow.
    Random,
    /// By the flow's hash through the service's Maglev table: the packet path, where the
    /// same flow must map to the same backend on any node and a backend change moves few flows.
    Maglev(u32),
}

/// A service's head and the address its entries are keyed by: the destination itself, or
/// 0 for a NodePort reached on one of the node's addresses.
#[inline(always)]
fn find_service(vip: u32, port: u16, proto: u8) -> Option<(ServiceValue, u32)> {
    // SAFETY: the value is copied at once; see BPF_F_NO_PREALLOC above for why the
    // memory stays valid while it is read.
    if let Some(head) = (unsafe { SERVICES.get(ServiceKey::new(vip, port, proto, 0)) }).copied() {
        return Some((head, vip));
    }
    // SAFETY: as above.
    (unsafe { NODE_IPS.get(vip) })?;
    // SAFETY: as above.
    let head = (unsafe { SERVICES.get(ServiceKey::new(0, port, proto, 0)) }).copied()?;
    Some((head, 0))
}

/// The id of the service at `vip:port/proto`, 0 if none (for the monitor's drop events,
/// where the lookup itself only said "no backend").
#[inline(always)]
pub fn lookup_service_id(vip: u32, port: u16, proto: u8) -> u32 {
    find_service(vip, port, proto).map_or(0, |(head, _)| head.service_id)
}

/// How often a lookup starts over when a slot or backend vanished under it.
const ATTEMPTS: usize = 3;

/// Looks up `vip:port/proto` (network byte order), picks a backend and counts the outcome
/// against the service.
///
/// Every value is copied out of the map before use. User space writes a service
/// make-before-break (backends, then slots, then the count in slot 0, and only then removes
/// surplus slots), so a count read here names slots that existed when it was read. If the
/// service shrank between the two lookups, the slot may be gone: the lookup then starts over
/// from the new count, which names only slots that exist. Only a service whose every attempt
/// raced a shrink (three updates within a few hundred nanoseconds) is refused.
///
/// With session affinity, a client's remembered backend wins while it is fresh and still in
/// the service; otherwise the new choice is remembered.
#[inline(always)]
pub fn select_backend(vip: u32, port: u16, proto: u8, client: &Client, choice: &Choice) -> Lookup {
    for _ in 0..ATTEMPTS {
        let Some((service, key_vip)) = find_service(vip, port, proto) else {
            return Lookup::NotAService;
        };
        if service.count == 0 {
            count(service.service_id, &Lookup::NoBackend);
            return Lookup::NoBackend;
        }
        let affinity = affinity_key(&service, client);
        if let Some(key) = &affinity {
            if let Some((backend, id)) = remembered(key, service.affinity_timeout) {
                let lookup = Lookup::Backend { backend, backend_id: id, service_id: service.service_id };
                count(service.service_id, &lookup);
                return lookup;
            }
        }
        let picked = match choice {
            Choice::Maglev(hash) => maglev(&service, *hash).or_else(|| pick(key_vip, port, proto, service.count)),
            Choice::Random => pick(key_vip, port, proto, service.count),
        };
        if let Some((backend, backend_id)) = picked {
            if let Some(key) = &affinity {
                remember(key, backend_id);
            }
            let lookup = Lookup::Backend { backend, backend_id, service_id: service.service_id };
            count(service.service_id, &lookup);
            return lookup;
        }
    }
    Lookup::NoBackend
}

/// The backend at `hash mod size` in the service's Maglev table; `None` if the table is not
/// written yet or names a backend that is gone (then the random path decides).
#[inline(always)]
fn maglev(service: &ServiceValue, hash: u32) -> Option<(Backend, u32)> {
    if service.maglev_size == 0 {
        return None;
    }
    let index = hash % service.maglev_size;
    let key = MaglevKey { service_id: service.service_id, chunk: index / MAGLEV_CHUNK as u32 };
    // SAFETY: as above.
    let chunk = MAGLEV.get_ptr(&key)?;
    let offset = (index % MAGLEV_CHUNK as u32) as usize;
    if offset >= MAGLEV_CHUNK {
        return None; // unreachable; keeps the verifier's bounds check explicit
    }
    // SAFETY: the pointer is to a live element (RCU-freed map); the offset is bounded above.
    let backend_id = unsafe { (*chunk).backend_ids[offset] };
    // SAFETY: as above.
    let backend = (unsafe { BACKENDS.get(backend_id) }).copied()?;
    Some((backend, backend_id))
}

/// The backend with id `id`, if it still exists.
#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    // SAFETY: copied at once.
    (unsafe { BACKENDS.get(id) }).copied()
}

#[inline(always)]
fn affinity_key(service: &ServiceValue, client: &Client) -> Option<AffinityKey> {
    (service.affinity_timeout != 0).then_some(AffinityKey {
        netns_cookie: client.netns_cookie,
        service_id: service.service_id,
        client_ip: client.ip,
    })
}

/// The client's backend, if it used this service within `timeout_s` and the backend is still
/// one of the service's. Refreshes the entry: the timeout runs from the last new flow.
#[inline(always)]
fn remembered(key: &AffinityKey, timeout_s: u32) -> Option<(Backend, u32)> {
    // SAFETY: copied at once; LRU entries are RCU-freed.
    let entry = (unsafe { AFFINITY.get(key) }).copied()?;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.saturating_sub(entry.last_used_ns) > u64::from(timeout_s) * 1_000_000_000 {
        return None;
    }
    let member = AffinityMatchKey { service_id: key.service_id, backend_id: entry.backend_id };
    // SAFETY: as above.
    (unsafe { AFFINITY_MATCH.get(&member) })?;
    let backend = backend(entry.backend_id)?;
    remember(key, entry.backend_id);
    Some((backend, entry.backend_id))
}

/// A full LRU evicts; a failed insert only costs stickiness, so it is not an error.
#[inline(always)]
fn remember(key: &AffinityKey, backend_id: u32) {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let value = AffinityValue { last_used_ns: unsafe { bpf_ktime_get_ns() }, backend_id, pad: 0 };
    let _ = AFFINITY.insert(key, &value, 0);
}

/// One attempt: `None` when the chosen slot or its backend vanished mid-way.
#[inline(always)]
fn pick(vip: u32, port: u16, proto: u8, count: u32) -> Option<(Backend, u32)> {
    // Slots are 1-based; count < 2^16, so the slot fits a u16.
    let slot = (unsafe { bpf_get_prandom_u32() } % count) as u16 + 1;
    // SAFETY: as above.
    let entry = (unsafe { SERVICES.get(ServiceKey::new(vip, port, proto, slot)) }).copied()?;
    let backend = backend(entry.backend_id)?;
    Some((backend, entry.backend_id))
}

/// Counts one translated packet of `bytes` against the service. Per-CPU, race-free.
#[inline(always)]
pub fn count_packet(service_id: u32, bytes: u32) {
    if let Some(stats) = STATS.get_ptr_mut(service_id) {
        // SAFETY: the pointer is this CPU's slot of a live array element.
        let stats = unsafe { &mut *stats };
        stats.packets += 1;
        stats.bytes += u64::from(bytes);
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
        Lookup::Backend { .. } => stats.connections += 1,
        Lookup::NoBackend => stats.refused += 1,
        Lookup::NotAService => {}
    }
}
