//! Taking over maps a previous daemon pinned: what is there is taken as written.

use std::collections::{BTreeMap, BTreeSet};

use keel_common::{ServiceKey, ServiceValue};

use super::{chunks, frontend_of, BackendRef, Limits, MapWriter, ServiceMaps, Written};
use crate::ProxyError;

impl<M: ServiceMaps> MapWriter<M> {
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
            writer.record(
                frontend,
                Written {
                    service_id: head.service_id,
                    slots,
                    backends,
                    affinity_timeout: head.affinity_timeout,
                    matches,
                    maglev_size: head.maglev_size,
                    extra_refs: Vec::new(),
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
        // Backends no adopted slot names are collected by the first sync, unless it takes
        // them again.
        writer.released = writer
            .backends
            .iter()
            .filter(|(_, r)| r.users == 0)
            .map(|(b, _)| *b)
            .collect();
        Ok(writer)
    }
}
