//! A fake of the kernel maps for the writer's tests: in memory, and checking after every
//! single write what a reader in the kernel relies on (make-before-break), so that a test
//! fails at the write that would have broken a connection.

use super::*;

/// In-memory maps that check, after every write, what a reader relies on: a service's
/// count names slots that exist, and every slot names a backend that exists.
#[derive(Default)]
pub(super) struct CheckedMaps {
    pub(super) services: BTreeMap<ServiceKey, ServiceValue>,
    pub(super) backends: BTreeMap<u32, Backend>,
    pub(super) matches: BTreeSet<AffinityMatchKey>,
    pub(super) chunks: BTreeMap<MaglevKey, MaglevChunk>,
    pub(super) writes: usize,
    /// Set while the maps hold damage planted by a test, which no write order can hide.
    pub(super) unchecked: bool,
    /// The Maglev map's `max_entries`: inserting a new chunk beyond it fails as the kernel's
    /// does (E2BIG).
    pub(super) max_chunks: Option<usize>,
    /// Writes of chunks 1 and above of this service id fail (a table left half-written).
    pub(super) fail_chunks_of: Option<u32>,
}

fn refused(errno: i32) -> ProxyError {
    ProxyError::Map {
        map: keel_common::MAGLEV_MAP,
        operation: "insert",
        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(errno),
        }),
    }
}

impl CheckedMaps {
    pub(super) fn check(&self) {
        if self.unchecked {
            return;
        }
        // Every Maglev entry a head makes reachable names an existing backend.
        for head in self
            .services
            .iter()
            .filter(|(k, _)| k.slot == 0)
            .map(|(_, v)| v)
        {
            for chunk in 0..chunks(head.maglev_size) {
                let key = MaglevKey {
                    service_id: head.service_id,
                    chunk,
                };
                let entry = self.chunks.get(&key).unwrap_or_else(|| {
                    panic!("after write {}: maglev chunk {key:?} missing", self.writes)
                });
                assert!(
                    entry
                        .backend_ids
                        .iter()
                        .all(|id| *id == 0 || self.backends.contains_key(id)),
                    "after write {}: maglev chunk {key:?} names a missing backend",
                    self.writes
                );
            }
        }
        for (key, head) in self.services.iter().filter(|(k, _)| k.slot == 0) {
            for slot in 1..=head.count as u16 {
                let slot_key = ServiceKey { slot, ..*key };
                let entry = self.services.get(&slot_key).unwrap_or_else(|| {
                    panic!(
                        "after write {}: {key:?} counts {} but slot {slot} is missing",
                        self.writes, head.count
                    )
                });
                assert!(
                    self.backends.contains_key(&entry.backend_id),
                    "after write {}: slot {slot} names missing backend {}",
                    self.writes,
                    entry.backend_id
                );
            }
        }
    }
}

impl ServiceMaps for CheckedMaps {
    fn read_all(&self) -> Result<MapContents, ProxyError> {
        Ok(MapContents {
            services: self.services.iter().map(|(k, v)| (*k, *v)).collect(),
            backends: self.backends.iter().map(|(k, v)| (*k, *v)).collect(),
            affinity_matches: self.matches.iter().copied().collect(),
            maglev_chunks: self.chunks.keys().copied().collect(),
        })
    }
    fn reset_stats(&mut self, _service_id: u32) -> Result<(), ProxyError> {
        Ok(())
    }
    fn set_maglev_chunk(&mut self, key: &MaglevKey, chunk: &MaglevChunk) -> Result<(), ProxyError> {
        if self.fail_chunks_of == Some(key.service_id) && key.chunk > 0 {
            return Err(refused(libc::ENOMEM));
        }
        let full = self
            .max_chunks
            .is_some_and(|max| self.chunks.len() >= max && !self.chunks.contains_key(key));
        if full {
            return Err(refused(libc::E2BIG));
        }
        self.chunks.insert(*key, *chunk);
        self.writes += 1;
        self.check();
        Ok(())
    }
    fn remove_maglev_chunk(&mut self, key: &MaglevKey) -> Result<(), ProxyError> {
        self.chunks.remove(key);
        self.writes += 1;
        self.check();
        Ok(())
    }
    fn set_affinity_match(&mut self, key: &AffinityMatchKey) -> Result<(), ProxyError> {
        self.matches.insert(*key);
        Ok(())
    }
    fn remove_affinity_match(&mut self, key: &AffinityMatchKey) -> Result<(), ProxyError> {
        self.matches.remove(key);
        Ok(())
    }
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), ProxyError> {
        self.backends.insert(id, *backend);
        self.writes += 1;
        self.check();
        Ok(())
    }
    fn remove_backend(&mut self, id: u32) -> Result<(), ProxyError> {
        self.backends.remove(&id);
        self.writes += 1;
        self.check();
        Ok(())
    }
    fn set_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), ProxyError> {
        self.services.insert(*key, *value);
        self.writes += 1;
        self.check();
        Ok(())
    }
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), ProxyError> {
        self.services.remove(key);
        self.writes += 1;
        self.check();
        Ok(())
    }
}
