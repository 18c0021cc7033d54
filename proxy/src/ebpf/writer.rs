//! Writes a [`ServiceTable`](crate::service_table::ServiceTable) into the service and backend maps, make-before-break.
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
//! A sync applies everything that fits, one service at a time: removals first (what they free
//! is room for the rest), then additions and updates. A service that does not fit (ids, the
//! Maglev map) is skipped whole before anything of it is written; one whose write fails half-way
//! is rolled back to what readers could already see (see [`capacity`]). Either way it is
//! reported in [`MapWriter::unprogrammed`] and the others go on. Every write is idempotent, so
//! the next sync repairs what a failure left.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use keel_common::{AffinityMatchKey, Backend, MaglevChunk, MaglevKey, ServiceKey, ServiceValue};

use self::ids::IdAllocator;
use super::maglev;
use crate::{
    service_table::{Frontend, L4Protocol, ServicePortEntry},
    ProxyError, SyncStats, Unprogrammed, UnprogrammedReason,
};

mod adopt;
mod capacity;
mod garbage;
mod ids;
mod sync;
mod tables;

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
    /// stays cheap). `None` for a damaged service found at adoption, or one whose update
    /// failed half-way: it is always rewritten.
    backends: Option<Vec<Backend>>,
    /// Session affinity timeout in seconds (0: none), as written in the head.
    affinity_timeout: u32,
    /// Backend ids with an affinity membership entry for this service.
    matches: BTreeSet<u32>,
    /// Size of the Maglev table written for this service (0: none); after a failed update, the
    /// larger of the old and the attempted size, so that every chunk written is accounted for.
    maglev_size: u32,
    /// Backend references held besides `slots`: after a failed update, every backend a
    /// reachable entry may still name (empty otherwise).
    extra_refs: Vec<u32>,
}

/// What a service write got into the maps before it finished or failed.
struct Progress {
    /// Backend ids taken for the wanted backends, in slot order (one reference each).
    acquired: Vec<u32>,
    /// Backend id of each slot `i + 1` as the maps now hold it.
    slots: Vec<u32>,
    /// Affinity memberships the maps now hold.
    matches: BTreeSet<u32>,
    /// Chunks up to this size may have been written.
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
    /// Changed only through [`Self::record`] and [`Self::forget`], which keep the indexes
    /// below in step.
    services: BTreeMap<Frontend, Written>,
    /// The frontend each service id is written for.
    owners: HashMap<u32, Frontend>,
    /// Maglev chunks the services in `services` hold.
    chunks_held: u64,
    backends: HashMap<Backend, BackendRef>,
    backend_by_id: HashMap<u32, Backend>,
    /// Backends whose last user left: the garbage collector looks at these, not at every
    /// backend, so a sync that changed one service stays cheap.
    released: HashSet<Backend>,
    service_ids: IdAllocator,
    backend_ids: IdAllocator,
    /// Entries no service reaches any more (slots past a count, slots of removed services,
    /// debris found at adoption): removed after the removals and at the end of the sync,
    /// unless a service reused them.
    garbage: Vec<ServiceKey>,
    /// Affinity membership entries to remove at the end of the sync.
    garbage_matches: Vec<AffinityMatchKey>,
    /// Maglev chunks to remove at the end of the sync.
    garbage_chunks: Vec<MaglevKey>,
    /// Size of the Maglev tables to write; 0 when no per-packet path reads them.
    maglev_size: u32,
    /// Chunks the Maglev map holds (its `max_entries`).
    maglev_capacity: u64,
    limits: Limits,
    /// The service ports the last sync could not program.
    unprogrammed: Vec<Unprogrammed>,
}

impl<M: ServiceMaps> MapWriter<M> {
    /// A writer for empty maps.
    pub fn new(maps: M, limits: Limits) -> Self {
        Self {
            maps,
            services: BTreeMap::new(),
            owners: HashMap::new(),
            chunks_held: 0,
            backends: HashMap::new(),
            backend_by_id: HashMap::new(),
            released: HashSet::new(),
            // Id 0 is never handed out: a zeroed value must not name a real backend.
            service_ids: IdAllocator::new("service ids", limits.max_services),
            backend_ids: IdAllocator::new("backend ids", limits.max_backends),
            garbage: Vec::new(),
            garbage_matches: Vec::new(),
            garbage_chunks: Vec::new(),
            maglev_size: 0,
            maglev_capacity: 0,
            limits,
            unprogrammed: Vec::new(),
        }
    }

    /// Also write a Maglev table of `size` entries (one of [`super::maglev::SIZES`]) for every
    /// service: the per-packet path reads them.
    /// The Maglev map is taken to have room for a table per service id; see
    /// [`Self::with_maglev_capacity`].
    pub fn with_maglev(mut self, size: u32) -> Self {
        self.maglev_size = size;
        self.maglev_capacity = u64::from(self.limits.max_services) * u64::from(chunks(size));
        self
    }

    /// How many chunks the Maglev map holds: a service whose table would not fit is skipped.
    pub fn with_maglev_capacity(mut self, chunks: u32) -> Self {
        self.maglev_capacity = u64::from(chunks);
        self
    }

    /// The service ports the last sync left out (or at their previous state), by frontend
    /// order.
    pub fn unprogrammed(&self) -> &[Unprogrammed] {
        &self.unprogrammed
    }

    #[cfg(test)]
    pub fn maps(&self) -> &M {
        &self.maps
    }

    /// Remembers what was written for `frontend`, replacing what was.
    fn record(&mut self, frontend: Frontend, written: Written) {
        self.chunks_held += u64::from(chunks(written.maglev_size));
        self.owners.insert(written.service_id, frontend);
        if let Some(old) = self.services.insert(frontend, written) {
            self.chunks_held -= u64::from(chunks(old.maglev_size));
        }
    }

    /// Forgets `frontend`: its service is no longer in the maps.
    fn forget(&mut self, frontend: &Frontend) -> Option<Written> {
        let old = self.services.remove(frontend)?;
        self.chunks_held -= u64::from(chunks(old.maglev_size));
        if self.owners.get(&old.service_id) == Some(frontend) {
            self.owners.remove(&old.service_id);
        }
        Some(old)
    }

    /// What is written for the service with id `service_id`, if it is in the maps.
    fn written_for(&self, service_id: u32) -> Option<&Written> {
        self.services
            .get(self.owners.get(&service_id)?)
            .filter(|w| w.service_id == service_id)
    }

    /// Writes one service port, or leaves it as it was and says why.
    fn write_entry(
        &mut self,
        frontend: &Frontend,
        entry: &ServicePortEntry,
        maglev_room: &mut u64,
        stats: &mut SyncStats,
    ) -> Result<(), UnprogrammedReason> {
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
        let maglev_size = self.maglev_size_for(&wanted);
        let old = self.services.get(frontend);
        if old.is_some_and(|old| {
            old.backends.as_deref() == Some(&wanted[..])
                && old.affinity_timeout == affinity
                && old.maglev_size == maglev_size
        }) {
            return Ok(());
        }
        // Counted before anything is written: a service is written whole or not at all.
        let need = self.room_needed(old, &wanted, maglev_size)?;
        if need > *maglev_room {
            return Err(self.maglev_full());
        }
        match self.write_service(frontend, &wanted, affinity, maglev_size, stats) {
            Ok(()) => {
                *maglev_room -= need;
                Ok(())
            }
            Err(error) => Err(capacity::classify(error)),
        }
    }

    /// Writes a service make-before-break. On an error, what was written is rolled back to
    /// what readers could already see ([`Self::roll_back`]).
    fn write_service(
        &mut self,
        frontend: &Frontend,
        wanted: &[Backend],
        affinity_timeout: u32,
        maglev_size: u32,
        stats: &mut SyncStats,
    ) -> Result<(), ProxyError> {
        let (old, new) = match self.services.get(frontend) {
            Some(old) => (old.clone(), false),
            None => {
                let service_id = self.service_ids.allocate()?;
                // A reused id must not carry its previous owner's counters.
                if let Err(error) = self.maps.reset_stats(service_id) {
                    self.service_ids.release(service_id);
                    return Err(error);
                }
                let written = Written {
                    service_id,
                    ..Written::default()
                };
                (written, true)
            }
        };
        let mut progress = Progress {
            acquired: Vec::with_capacity(wanted.len()),
            slots: old.slots.clone(),
            matches: old.matches.clone(),
            maglev_size: old.maglev_size,
        };
        let steps = self.write_steps(
            frontend,
            &old,
            wanted,
            affinity_timeout,
            maglev_size,
            &mut progress,
            stats,
        );
        if let Err(error) = steps {
            self.roll_back(frontend, old, new, progress);
            return Err(error);
        }
        // 4. (deferred to the end of the sync) slots past the new count, memberships of
        // backends that left, unused backends.
        let slots = progress.acquired;
        let matches = progress.matches;
        self.garbage
            .extend((slots.len()..old.slots.len()).map(|i| key(frontend, i + 1)));
        self.garbage_matches
            .extend(
                old.matches
                    .iter()
                    .filter(|id| !matches.contains(id))
                    .map(|id| AffinityMatchKey {
                        service_id: old.service_id,
                        backend_id: *id,
                    }),
            );
        self.garbage_chunks
            .extend(
                (chunks(maglev_size)..chunks(old.maglev_size)).map(|chunk| MaglevKey {
                    service_id: old.service_id,
                    chunk,
                }),
            );
        self.release_backends(&old.slots);
        self.release_backends(&old.extra_refs);
        self.record(
            *frontend,
            Written {
                service_id: old.service_id,
                slots,
                backends: Some(wanted.to_vec()),
                affinity_timeout,
                matches,
                maglev_size,
                extra_refs: Vec::new(),
            },
        );
        Ok(())
    }

    /// Steps 1 to 3, recording in `progress` what reached the maps.
    #[allow(clippy::too_many_arguments)]
    fn write_steps(
        &mut self,
        frontend: &Frontend,
        old: &Written,
        wanted: &[Backend],
        affinity_timeout: u32,
        maglev_size: u32,
        progress: &mut Progress,
        stats: &mut SyncStats,
    ) -> Result<(), ProxyError> {
        // 1. backends, each written once whatever the number of services using it.
        for backend in wanted {
            let id = self.acquire_backend(backend, stats)?;
            progress.acquired.push(id);
        }
        // 2. slots that changed, and membership of new backends for affinity lookups.
        for (i, id) in progress.acquired.iter().enumerate() {
            if old.slots.get(i) != Some(id) {
                let value = ServiceValue {
                    backend_id: *id,
                    ..ServiceValue::default()
                };
                self.maps.set_service(&key(frontend, i + 1), &value)?;
                stats.written += 1;
                match progress.slots.get_mut(i) {
                    Some(slot) => *slot = *id,
                    None => progress.slots.push(*id),
                }
            }
        }
        let matches: BTreeSet<u32> = if affinity_timeout > 0 {
            progress.acquired.iter().copied().collect()
        } else {
            BTreeSet::new()
        };
        for id in matches.difference(&old.matches) {
            let key = AffinityMatchKey {
                service_id: old.service_id,
                backend_id: *id,
            };
            self.maps.set_affinity_match(&key)?;
            progress.matches.insert(*id);
            stats.written += 1;
        }
        progress.maglev_size = progress.maglev_size.max(maglev_size);
        let slots = progress.acquired.clone();
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
        // From here on the service's memberships are exactly the wanted ones.
        progress.matches = matches;
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
        self.forget(frontend);
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
        self.release_backends(&old.extra_refs);
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

    /// Takes one reference per id (each names a known backend).
    fn add_refs(&mut self, ids: &[u32]) {
        for id in ids {
            let Some(backend) = self.backend_by_id.get(id) else {
                continue;
            };
            if let Some(entry) = self.backends.get_mut(backend) {
                entry.users += 1;
            }
        }
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
                if entry.users == 0 {
                    self.released.insert(*backend);
                }
            }
        }
    }
}

/// Chunks of a Maglev table of `size` entries.
fn chunks(size: u32) -> u32 {
    super::sizing::chunks_per_table(size)
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

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_capacity;
#[cfg(test)]
mod tests_changes;
