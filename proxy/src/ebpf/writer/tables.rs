//! The Maglev part of a service: its table, written in chunks, and the room they take.

use std::net::SocketAddrV4;

use keel_common::{Backend, MaglevChunk, MaglevKey, MAGLEV_CHUNK};

use super::{chunks, maglev, MapWriter, ServiceMaps, Written};
use crate::{ProxyError, SyncStats, UnprogrammedReason};

impl<M: ServiceMaps> MapWriter<M> {
    /// Chunks the Maglev map has room for now: what the services hold and the chunks not yet
    /// collected count as used.
    pub(super) fn maglev_room(&self) -> u64 {
        if self.maglev_size == 0 {
            return u64::MAX; // no tables written
        }
        let used = self.chunks_held + self.garbage_chunks.len() as u64;
        self.maglev_capacity.saturating_sub(used)
    }

    /// Chunks a service needs beyond what it holds: its table's chunks are overwritten in
    /// place, so only a service gaining a table (new, or no longer empty) needs more.
    pub(super) fn chunks_needed(&self, old: Option<&Written>, maglev_size: u32) -> u64 {
        let held = old.map_or(0, |w| chunks(w.maglev_size));
        u64::from(chunks(maglev_size).saturating_sub(held))
    }

    pub(super) fn maglev_full(&self) -> UnprogrammedReason {
        UnprogrammedReason::Capacity {
            what: "the Maglev map (--max-maglev-services)",
            limit: self.maglev_capacity / u64::from(chunks(self.maglev_size).max(1)),
        }
    }

    /// The Maglev table size a service with `wanted` backends gets.
    pub(super) fn maglev_size_for(&self, wanted: &[Backend]) -> u32 {
        if wanted.is_empty() {
            0
        } else {
            self.maglev_size
        }
    }

    /// Writes the service's Maglev table, every chunk: a backend change reshuffles entries
    /// across nearly all chunks anyway. Every id written names a backend written in step 1.
    pub(super) fn write_maglev(
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
}

fn backend_addr(backend: &Backend) -> SocketAddrV4 {
    SocketAddrV4::new(
        std::net::Ipv4Addr::from(u32::from_be(backend.addr)),
        u16::from_be(backend.port),
    )
}
