//! What does not fit, and what failed: a service is written whole or not at all, and one that
//! cannot be written never holds back the others.
//!
//! Room that can be counted (ids, Maglev chunks) is checked before a service's first write. A
//! write the kernel refuses anyway (a full map it shares with others, memory) is rolled back:
//! a new service was never reachable (its head is written last), so all it wrote is garbage; a
//! service already programmed keeps its head, so readers see its old count and table, partly
//! overwritten with new backends that are written and held, never a missing one.

use std::collections::BTreeSet;

use keel_common::Backend;

use super::{chunks, key, MapWriter, Progress, ServiceMaps, Written};
use crate::{service_table::Frontend, ProxyError, SyncStats, UnprogrammedReason};

/// Writes that failed during a sync; it goes on, and reports them at the end.
#[derive(Default)]
pub(super) struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    pub(super) fn add(&mut self, what: String) {
        self.count += 1;
        self.first.get_or_insert(what);
    }

    pub(super) fn into_result(self, stats: SyncStats) -> Result<SyncStats, ProxyError> {
        match self.first {
            None => Ok(stats),
            Some(first) => Err(ProxyError::Incomplete {
                failed: self.count,
                first,
            }),
        }
    }
}

/// Capacity is not worth retrying until the table changes; anything else is.
pub(super) fn classify(error: ProxyError) -> UnprogrammedReason {
    match error {
        ProxyError::Exhausted { what, limit } => UnprogrammedReason::Capacity {
            what,
            limit: u64::from(limit),
        },
        ProxyError::Map {
            map,
            source: aya::maps::MapError::SyscallError(ref err),
            ..
        } if err.io_error.raw_os_error() == Some(libc::E2BIG) => {
            UnprogrammedReason::MapFull { map }
        }
        other => UnprogrammedReason::WriteFailed(other.to_string()),
    }
}

impl<M: ServiceMaps> MapWriter<M> {
    /// What a service needs that can be counted before writing: ids, and Maglev chunks.
    pub(super) fn room_needed(
        &self,
        old: Option<&Written>,
        wanted: &[Backend],
        maglev_size: u32,
    ) -> Result<u64, UnprogrammedReason> {
        if wanted.len() > usize::from(u16::MAX) {
            return Err(UnprogrammedReason::Capacity {
                what: "the slots of one service",
                limit: u64::from(u16::MAX),
            });
        }
        if old.is_none() && self.service_ids.available() == 0 {
            return Err(UnprogrammedReason::Capacity {
                what: "service ids (--max-services)",
                limit: u64::from(self.service_ids.limit()),
            });
        }
        let new_backends: BTreeSet<&Backend> = wanted
            .iter()
            .filter(|b| !self.backends.contains_key(*b))
            .collect();
        if new_backends.len() > self.backend_ids.available() as usize {
            return Err(UnprogrammedReason::Capacity {
                what: "backend ids (--max-backends)",
                limit: u64::from(self.backend_ids.limit()),
            });
        }
        Ok(self.chunks_needed(old, maglev_size))
    }

    /// Undoes the bookkeeping of a failed service write so that memory matches the maps.
    pub(super) fn roll_back(
        &mut self,
        frontend: &Frontend,
        old: Written,
        new: bool,
        progress: Progress,
    ) {
        if new {
            // No head was written: nothing of it was reachable, all of it goes.
            self.garbage
                .extend((0..progress.slots.len()).map(|i| key(frontend, i + 1)));
            self.garbage_matches
                .extend(
                    progress
                        .matches
                        .iter()
                        .map(|id| keel_common::AffinityMatchKey {
                            service_id: old.service_id,
                            backend_id: *id,
                        }),
                );
            self.garbage_chunks
                .extend(
                    (0..chunks(progress.maglev_size)).map(|chunk| keel_common::MaglevKey {
                        service_id: old.service_id,
                        chunk,
                    }),
                );
            self.release_backends(&progress.acquired);
            self.service_ids.release(old.service_id);
            return;
        }
        // The old head stays: its slots and table may now name old or new backends, so all
        // of them stay held until the service is next written or removed. Its description
        // is dropped, so that the next sync rewrites it whole.
        let held: Vec<u32> = old
            .slots
            .iter()
            .chain(&old.extra_refs)
            .chain(&progress.acquired)
            .copied()
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect();
        self.add_refs(&held);
        self.add_refs(&progress.slots);
        self.release_backends(&old.slots);
        self.release_backends(&old.extra_refs);
        self.release_backends(&progress.acquired);
        self.record(
            *frontend,
            Written {
                service_id: old.service_id,
                slots: progress.slots,
                backends: None,
                affinity_timeout: old.affinity_timeout,
                matches: progress.matches,
                maglev_size: progress.maglev_size,
                extra_refs: held,
            },
        );
    }
}
