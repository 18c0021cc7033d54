//! Step 4 of every change: entries nobody reaches any more, removed at the end of the sync.

use super::{capacity::Failures, chunks, frontend_of, MapWriter, ServiceMaps};
use crate::SyncStats;

impl<M: ServiceMaps> MapWriter<M> {
    /// Step 4, for the whole sync at once: removes slots past their service's count and
    /// backends no slot names. Deferring it to the end of the sync leaves readers that looked
    /// at an old count the longest possible time to finish.
    /// Returns how many entries it removed; one it could not remove stays for the next sync.
    /// Backends are left alone with `backends` false: one nobody uses now may be taken again
    /// by a service written later in the sync (and after adoption, a damaged service may still
    /// reach it).
    pub(super) fn collect_garbage(
        &mut self,
        stats: &mut SyncStats,
        failures: &mut Failures,
        backends: bool,
    ) -> usize {
        let removed_before = stats.removed;
        for key in std::mem::take(&mut self.garbage) {
            let reused = frontend_of(&key)
                .and_then(|f| self.services.get(&f))
                .is_some_and(|w| key.slot != 0 && usize::from(key.slot) <= w.slots.len());
            if reused {
                continue;
            }
            match self.maps.remove_service(&key) {
                Ok(()) => stats.removed += 1,
                Err(error) => {
                    failures.add(error.to_string());
                    self.garbage.push(key);
                }
            }
        }
        for key in std::mem::take(&mut self.garbage_chunks) {
            let reused = self
                .written_for(key.service_id)
                .is_some_and(|w| key.chunk < chunks(w.maglev_size));
            if reused {
                continue;
            }
            match self.maps.remove_maglev_chunk(&key) {
                Ok(()) => stats.removed += 1,
                Err(error) => {
                    failures.add(error.to_string());
                    self.garbage_chunks.push(key);
                }
            }
        }
        for key in std::mem::take(&mut self.garbage_matches) {
            let reused = self
                .written_for(key.service_id)
                .is_some_and(|w| w.matches.contains(&key.backend_id));
            if reused {
                continue;
            }
            match self.maps.remove_affinity_match(&key) {
                Ok(()) => stats.removed += 1,
                Err(error) => {
                    failures.add(error.to_string());
                    self.garbage_matches.push(key);
                }
            }
        }
        if !backends {
            return stats.removed - removed_before;
        }
        for backend in std::mem::take(&mut self.released) {
            let Some(entry) = self.backends.get(&backend).copied() else {
                continue;
            };
            if entry.users > 0 {
                continue; // taken again later in the sync
            }
            match self.maps.remove_backend(entry.id) {
                Ok(()) => {
                    self.backends.remove(&backend);
                    self.backend_by_id.remove(&entry.id);
                    self.backend_ids.release(entry.id);
                    stats.removed += 1;
                }
                // Stays known with no users: the next sync tries again.
                Err(error) => {
                    failures.add(error.to_string());
                    self.released.insert(backend);
                }
            }
        }
        stats.removed - removed_before
    }
}
