//! Writes a [`ServiceTable`] into the service and backend maps, make-before-break.
//!
//! The program reads slot 0 (count), then one slot in `1..=count`, then that backend. So that
//! a reader racing a writer never sees half a service, every change is ordered:
//! 1. new backends are written;
//! 2. the service's slots `1..=n` are written (only those that changed);
//! 3. slot 0 is written with the new count `n` — the flip;
//! 4. slots above `n` are deleted, then backends no service uses any more.
//!
//! A removed service is withdrawn slot 0 first, so readers stop looking at its slots before
//! they go. The writer remembers what it wrote, so an unchanged service costs nothing.
//!
//! Every write is idempotent, so a sync that failed half-way is repaired by the next one. The
//! one thing a failure can leave behind is a backend entry nobody references (its reference
//! count was taken before the failing write): harmless to readers, and bounded by the map size.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddrV4,
};

use keel_common::{
    AffinityMatchKey, Backend, MaglevChunk, MaglevKey, ServiceKey, ServiceValue, MAGLEV_CHUNK,
};

use super::maglev;
use crate::{
    service_table::{Frontend, L4Protocol, ServiceTable},
    ProxyError, SyncStats,
};

/// The two maps, as the writer needs them. The kernel implementation wraps aya's maps; tests use
/// an in-memory one that checks the reader's invariants after every single write.
pub trait ServiceMaps {
    /// Everything in the service and backend maps, for adopting them after a restart.
    fn read_all(&self) -> Result<MapContents, ProxyError>;
    /// Zeroes the counters of a service id about to be given to a new service.
    fn reset_stats(&mut self, service_id: u32) -> Result<(), ProxyError>;
    fn set_affinity_match(&mut self, key: &AffinityMatchKey) -> Result<(), ProxyError>;
    fn remove_affinity_match(&mut self, key: &AffinityMatchKey) -> Result<(), ProxyError>;
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), ProxyError>;
    fn remove_backend(&mut self, id: u32) -> Result<(), ProxyError>;
    fn set_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), ProxyError>;
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), ProxyError>;
    fn set_maglev_chunk(&mut self, key: &MaglevKey, chunk: &MaglevChunk) -> Result<(), ProxyError>;
    fn remove_maglev_chunk(&mut self, key: &MaglevKey) -> Result<(), ProxyError>;
}

/// A snapshot of the maps.
#[derive(Clone, Debug, Default)]
pub struct MapContents {
    pub services: Vec<(ServiceKey, ServiceValue)>,
    pub backends: Vec<(u32, Backend)>,
    pub affinity_matches: Vec<AffinityMatchKey>,
    pub maglev_chunks: Vec<MaglevKey>,
}

/// How many ids the maps have room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_services: u32,
    pub max_backends: u32,
}

/// What the writer put in the maps for one frontend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Written {
    service_id: u32,
    /// Backend id of slot `i + 1`.
    slots: Vec<u32>,
    /// The backends the slots were written from: an unchanged service is recognised by one
    /// comparison, without touching reference counts (a sync of 10k services where one changed
    /// stays cheap). `None` for a damaged service found at adoption: it is always rewritten.
    backends: Option<Vec<Backend>>,
    /// Session affinity timeout in seconds (0: none), as written in the head.
    affinity_timeout: u32,
    /// Backend ids with an affinity membership entry for this service.
    matches: BTreeSet<u32>,
    /// Size of the Maglev table written for this service (0: none).
    maglev_size: u32,
}

/// A backend id and how many slots point at it.
#[derive(Clone, Copy, Debug)]
struct BackendRef {
    id: u32,
    users: usize,
}

pub struct MapWriter<M> {
    maps: M,
    services: BTreeMap<Frontend, Written>,
    backends: HashMap<Backend, BackendRef>,
    backend_by_id: HashMap<u32, Backend>,
    service_ids: IdAllocator,
    backend_ids: IdAllocator,
    /// Entries no service reaches any more (slots past a count, slots of removed services,
    /// debris found at adoption): removed at the end of the sync, unless it reused them.
    garbage: Vec<ServiceKey>,
    /// Affinity membership entries to remove at the end of the sync.
    garbage_matches: Vec<AffinityMatchKey>,
    /// Maglev chunks to remove at the end of the sync.
    garbage_chunks: Vec<MaglevKey>,
    /// Size of the Maglev tables to write; 0 when no per-packet path reads them.
    maglev_size: u32,
}

impl<M: ServiceMaps> MapWriter<M> {
    /// A writer for empty maps.
    pub fn new(maps: M, limits: Limits) -> Self {
        Self {
            maps,
            services: BTreeMap::new(),
            backends: HashMap::new(),
            backend_by_id: HashMap::new(),
            // Id 0 is never handed out: a zeroed value must not name a real backend.
            service_ids: IdAllocator::new("service ids", limits.max_services),
            backend_ids: IdAllocator::new("backend ids", limits.max_backends),
            garbage: Vec::new(),
            garbage_matches: Vec::new(),
            garbage_chunks: Vec::new(),
            maglev_size: 0,
        }
    }

    /// A writer for maps that already hold a datapath (pinned by a previous daemon): what is
    /// there is taken as written, so the first sync changes only what differs and traffic
    /// never sees the maps emptied. A damaged service (a slot or backend missing) is
    /// rewritten whole by that sync.
    pub fn adopt(maps: M, limits: Limits) -> Result<Self, ProxyError> {
        let contents = maps.read_all()?;
        let mut writer = Self::new(maps, limits);
        for (id, backend) in contents.backends {
            if writer.backends.contains_key(&backend) || !writer.backend_ids.reserve(id) {
                writer.maps.remove_backend(id)?; // a duplicate or out of range: unreachable
                continue;
            }
            writer.backends.insert(backend, BackendRef { id, users: 0 });
            writer.backend_by_id.insert(id, backend);
        }
        let entries: BTreeMap<ServiceKey, ServiceValue> = contents.services.into_iter().collect();
        for (key, head) in entries.iter().filter(|(k, _)| k.slot == 0) {
            let Some(frontend) = frontend_of(key) else {
                writer.garbage.push(*key);
                continue;
            };
            if !writer.service_ids.reserve(head.service_id) {
                writer.garbage.push(*key);
                continue;
            }
            let slots: Option<Vec<u32>> = (1..=head.count)
                .map(|slot| {
                    let slot = u16::try_from(slot).ok()?;
                    let id = entries.get(&ServiceKey { slot, ..*key })?.backend_id;
                    writer.backend_by_id.contains_key(&id).then_some(id)
                })
                .collect();
            let damaged = slots.is_none();
            let slots = slots.unwrap_or_default();
            for id in &slots {
                if let Some(backend) = writer.backend_by_id.get(id) {
                    if let Some(entry) = writer.backends.get_mut(backend) {
                        entry.users += 1;
                    }
                }
            }
            let backends = (!damaged).then(|| {
                slots
                    .iter()
                    .filter_map(|id| writer.backend_by_id.get(id).copied())
                    .collect()
            });
            let matches = contents
                .affinity_matches
                .iter()
                .filter(|m| m.service_id == head.service_id)
                .map(|m| m.backend_id)
                .collect();
            writer.services.insert(
                frontend,
                Written {
                    service_id: head.service_id,
                    slots,
                    backends,
                    affinity_timeout: head.affinity_timeout,
                    matches,
                    maglev_size: head.maglev_size,
                },
            );
        }
        let owned: BTreeSet<u32> = writer.services.values().map(|w| w.service_id).collect();
        writer.garbage_matches.extend(
            contents
                .affinity_matches
                .iter()
                .filter(|m| !owned.contains(&m.service_id)),
        );
        let sizes: BTreeMap<u32, u32> = writer
            .services
            .values()
            .map(|w| (w.service_id, w.maglev_size))
            .collect();
        writer
            .garbage_chunks
            .extend(contents.maglev_chunks.iter().filter(|k| {
                sizes
                    .get(&k.service_id)
                    .is_none_or(|size| k.chunk >= chunks(*size))
            }));
        for key in entries.keys().filter(|k| k.slot != 0) {
            let reachable = frontend_of(key)
                .and_then(|f| writer.services.get(&f))
                .is_some_and(|w| usize::from(key.slot) <= w.slots.len());
            if !reachable {
                writer.garbage.push(*key);
            }
        }
        Ok(writer)
    }

    /// Also write a Maglev table of `size` entries (one of [`super::maglev::SIZES`]) for every
    /// service: the per-packet path reads them.
    pub fn with_maglev(mut self, size: u32) -> Self {
        self.maglev_size = size;
        self
    }

    #[cfg(test)]
    pub fn maps(&self) -> &M {
        &self.maps
    }

    pub fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        let mut stats = SyncStats::default();
        for (frontend, entry) in &table.services {
            let wanted: Vec<Backend> = entry
                .backends
                .iter()
                .map(|b| Backend {
                    addr: u32::from(*b.ip()).to_be(),
                    port: b.port().to_be(),
                    proto: frontend.protocol.number(),
                    flags: 0,
                })
                .collect();
            let affinity = entry.affinity_timeout.unwrap_or(0);
            self.write_service(frontend, &wanted, affinity, &mut stats)?;
        }
        let gone: Vec<Frontend> = self
            .services
            .keys()
            .filter(|f| !table.services.contains_key(f))
            .copied()
            .collect();
        for frontend in gone {
            self.remove_service(&frontend, &mut stats)?;
        }
        self.collect_garbage(&mut stats)?;
        Ok(stats)
    }

    /// Step 4, for the whole sync at once: removes slots past their service's count and
    /// backends no slot names. Deferring it to the end of the sync leaves readers that looked
    /// at an old count the longest possible time to finish.
    fn collect_garbage(&mut self, stats: &mut SyncStats) -> Result<(), ProxyError> {
        for key in std::mem::take(&mut self.garbage) {
            let reused = frontend_of(&key)
                .and_then(|f| self.services.get(&f))
                .is_some_and(|w| key.slot != 0 && usize::from(key.slot) <= w.slots.len());
            if !reused {
                self.maps.remove_service(&key)?;
                stats.removed += 1;
            }
        }
        for key in std::mem::take(&mut self.garbage_chunks) {
            let reused = self
                .services
                .values()
                .any(|w| w.service_id == key.service_id && key.chunk < chunks(w.maglev_size));
            if !reused {
                self.maps.remove_maglev_chunk(&key)?;
                stats.removed += 1;
            }
        }
        for key in std::mem::take(&mut self.garbage_matches) {
            let reused = self
                .services
                .values()
                .any(|w| w.service_id == key.service_id && w.matches.contains(&key.backend_id));
            if !reused {
                self.maps.remove_affinity_match(&key)?;
                stats.removed += 1;
            }
        }
        let unused: Vec<Backend> = self
            .backends
            .iter()
            .filter(|(_, r)| r.users == 0)
            .map(|(b, _)| *b)
            .collect();
        for backend in unused {
            if let Some(entry) = self.backends.remove(&backend) {
                self.maps.remove_backend(entry.id)?;
                self.backend_by_id.remove(&entry.id);
                self.backend_ids.release(entry.id);
                stats.removed += 1;
            }
        }
        Ok(())
    }

    fn write_service(
        &mut self,
        frontend: &Frontend,
        wanted: &[Backend],
        affinity_timeout: u32,
        stats: &mut SyncStats,
    ) -> Result<(), ProxyError> {
        if wanted.len() > usize::from(u16::MAX) {
            return Err(ProxyError::TooManyBackends {
                count: wanted.len(),
                max: usize::from(u16::MAX),
            });
        }
        let old = match self.services.get(frontend) {
            Some(old)
                if old.backends.as_deref() == Some(wanted)
                    && old.affinity_timeout == affinity_timeout
                    && old.maglev_size == self.maglev_size_for(wanted) =>
            {
                return Ok(());
            }
            Some(old) => old.clone(),
            None => {
                let service_id = self.service_ids.allocate()?;
                // A reused id must not carry its previous owner's counters.
                self.maps.reset_stats(service_id)?;
                Written {
                    service_id,
                    slots: Vec::new(),
                    backends: None,
                    affinity_timeout: 0,
                    matches: BTreeSet::new(),
                    maglev_size: 0,
                }
            }
        };
        // 1. backends, each written once whatever the number of services using it.
        let mut slots = Vec::with_capacity(wanted.len());
        for backend in wanted {
            slots.push(self.acquire_backend(backend, stats)?);
        }
        // 2. slots that changed, and membership of new backends for affinity lookups.
        for (i, id) in slots.iter().enumerate() {
            if old.slots.get(i) != Some(id) {
                let value = ServiceValue {
                    backend_id: *id,
                    ..ServiceValue::default()
                };
                self.maps.set_service(&key(frontend, i + 1), &value)?;
                stats.written += 1;
            }
        }
        let matches: BTreeSet<u32> = if affinity_timeout > 0 {
            slots.iter().copied().collect()
        } else {
            BTreeSet::new()
        };
        for id in matches.difference(&old.matches) {
            let key = AffinityMatchKey {
                service_id: old.service_id,
                backend_id: *id,
            };
            self.maps.set_affinity_match(&key)?;
            stats.written += 1;
        }
        let maglev_size = self.maglev_size_for(wanted);
        self.write_maglev(old.service_id, wanted, &slots, maglev_size, stats)?;
        // 3. the flip.
        let head = ServiceValue {
            count: slots.len() as u32,
            service_id: old.service_id,
            affinity_timeout,
            maglev_size,
            ..ServiceValue::default()
        };
        self.maps.set_service(&key(frontend, 0), &head)?;
        stats.written += 1;
        // 4. (deferred to the end of the sync) slots past the new count, memberships of
        // backends that left, unused backends.
        self.garbage
            .extend((slots.len()..old.slots.len()).map(|i| key(frontend, i + 1)));
        self.garbage_matches
            .extend(old.matches.difference(&matches).map(|id| AffinityMatchKey {
                service_id: old.service_id,
                backend_id: *id,
            }));
        self.garbage_chunks
            .extend(
                (chunks(maglev_size)..chunks(old.maglev_size)).map(|chunk| MaglevKey {
                    service_id: old.service_id,
                    chunk,
                }),
            );
        self.release_backends(&old.slots);
        self.services.insert(
            *frontend,
            Written {
                service_id: old.service_id,
                slots,
                backends: Some(wanted.to_vec()),
                affinity_timeout,
                matches,
                maglev_size,
            },
        );
        Ok(())
    }

    /// The Maglev table size a service with `wanted` backends gets.
    fn maglev_size_for(&self, wanted: &[Backend]) -> u32 {
        if wanted.is_empty() {
            0
        } else {
            self.maglev_size
        }
    }

    /// Writes the service's Maglev table, every chunk: a backend change reshuffles entries
    /// across nearly all chunks anyway. Every id written names a backend written in step 1.
    fn write_maglev(
        &mut self,
        service_id: u32,
        wanted: &[Backend],
        slots: &[u32],
        size: u32,
        stats: &mut SyncStats,
    ) -> Result<(), ProxyError> {
        if size == 0 {
            return Ok(());
        }
        let addrs: Vec<SocketAddrV4> = wanted.iter().map(backend_addr).collect();
        let table = maglev::table(&addrs, size);
        for (index, entries) in table.chunks(MAGLEV_CHUNK).enumerate() {
            let mut chunk = MaglevChunk {
                backend_ids: [0; MAGLEV_CHUNK],
            };
            for (slot, entry) in chunk.backend_ids.iter_mut().zip(entries) {
                *slot = slots[*entry as usize];
            }
            let key = MaglevKey {
                service_id,
                chunk: index as u32,
            };
            self.maps.set_maglev_chunk(&key, &chunk)?;
            stats.written += 1;
        }
        Ok(())
    }

    /// Withdraws a service: its head goes first, so readers stop at once; its slots and
    /// backends go with the garbage at the end of the sync.
    fn remove_service(
        &mut self,
        frontend: &Frontend,
        stats: &mut SyncStats,
    ) -> Result<(), ProxyError> {
        let Some(old) = self.services.get(frontend).cloned() else {
            return Ok(());
        };
        self.maps.remove_service(&key(frontend, 0))?;
        self.services.remove(frontend);
        stats.removed += 1;
        self.garbage_matches
            .extend(old.matches.iter().map(|id| AffinityMatchKey {
                service_id: old.service_id,
                backend_id: *id,
            }));
        self.garbage
            .extend((0..old.slots.len()).map(|i| key(frontend, i + 1)));
        self.garbage_chunks
            .extend((0..chunks(old.maglev_size)).map(|chunk| MaglevKey {
                service_id: old.service_id,
                chunk,
            }));
        self.service_ids.release(old.service_id);
        self.release_backends(&old.slots);
        Ok(())
    }

    fn acquire_backend(
        &mut self,
        backend: &Backend,
        stats: &mut SyncStats,
    ) -> Result<u32, ProxyError> {
        if let Some(existing) = self.backends.get_mut(backend) {
            existing.users += 1;
            return Ok(existing.id);
        }
        let id = self.backend_ids.allocate()?;
        if let Err(err) = self.maps.set_backend(id, backend) {
            self.backend_ids.release(id);
            return Err(err);
        }
        stats.written += 1;
        self.backends.insert(*backend, BackendRef { id, users: 1 });
        self.backend_by_id.insert(id, *backend);
        Ok(id)
    }

    /// Drops one reference per slot; a backend left with none is removed by
    /// [`Self::collect_garbage`] (unless a later service of the same sync takes it again).
    fn release_backends(&mut self, slots: &[u32]) {
        for id in slots {
            let Some(backend) = self.backend_by_id.get(id) else {
                continue;
            };
            if let Some(entry) = self.backends.get_mut(backend) {
                entry.users = entry.users.saturating_sub(1);
            }
        }
    }
}

/// Chunks of a Maglev table of `size` entries.
fn chunks(size: u32) -> u32 {
    size.div_ceil(MAGLEV_CHUNK as u32)
}

fn backend_addr(backend: &Backend) -> SocketAddrV4 {
    SocketAddrV4::new(
        std::net::Ipv4Addr::from(u32::from_be(backend.addr)),
        u16::from_be(backend.port),
    )
}

/// The frontend a key belongs to; `None` for a protocol keel does not write.
fn frontend_of(key: &ServiceKey) -> Option<Frontend> {
    let protocol = match key.proto {
        keel_common::PROTO_TCP => L4Protocol::Tcp,
        keel_common::PROTO_UDP => L4Protocol::Udp,
        _ => return None,
    };
    Some(Frontend {
        vip: std::net::Ipv4Addr::from(u32::from_be(key.vip)),
        port: u16::from_be(key.port),
        protocol,
    })
}

fn key(frontend: &Frontend, slot: usize) -> ServiceKey {
    ServiceKey::new(
        u32::from(frontend.vip).to_be(),
        frontend.port.to_be(),
        frontend.protocol.number(),
        // Bounded by the u16::MAX check in write_service.
        slot as u16,
    )
}

/// Hands out ids `1..=limit`, lowest released id first.
struct IdAllocator {
    what: &'static str,
    limit: u32,
    /// Every id at or above `next` is free.
    next: u32,
    /// Free ids below `next`.
    free: BTreeSet<u32>,
}

impl IdAllocator {
    fn new(what: &'static str, limit: u32) -> Self {
        Self {
            what,
            limit,
            next: 1,
            free: BTreeSet::new(),
        }
    }

    /// Marks `id` as taken (adoption). False if it is out of range or already taken.
    fn reserve(&mut self, id: u32) -> bool {
        if id == 0 || id > self.limit {
            return false;
        }
        if id >= self.next {
            self.free.extend(self.next..id);
            self.next = id + 1;
            return true;
        }
        self.free.remove(&id)
    }

    fn allocate(&mut self) -> Result<u32, ProxyError> {
        if let Some(id) = self.free.pop_first() {
            return Ok(id);
        }
        if self.next > self.limit {
            return Err(ProxyError::Exhausted {
                what: self.what,
                limit: self.limit,
            });
        }
        self.next += 1;
        Ok(self.next - 1)
    }

    fn release(&mut self, id: u32) {
        self.free.insert(id);
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
