//! A sync: which service ports it visits, in which order, and what it reports.
//!
//! A whole sync visits every frontend the maps or the table hold. A sync told which frontends
//! changed visits those, and the ones the last sync could not program (a removal may have made
//! room for them); everything else is as the last sync left it, and costs nothing, so one
//! endpoint change costs the same at any number of services.

use std::collections::BTreeSet;

use super::{capacity::Failures, MapWriter, ServiceMaps};
use crate::{
    service_table::{Frontend, ServicePortEntry, ServiceTable, TableChanges},
    ProxyError, SyncStats, Unprogrammed, UnprogrammedReason,
};

impl<M: ServiceMaps> MapWriter<M> {
    /// Makes the maps hold `table`, as much of it as fits. `Ok` when everything was either
    /// written or left out for want of room (reported in [`Self::unprogrammed`], retried when
    /// the table changes); an error when a write failed, after everything else was applied:
    /// that one is worth retrying.
    pub fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        let gone: Vec<Frontend> = self
            .services
            .keys()
            .filter(|f| !table.services.contains_key(f))
            .copied()
            .collect();
        self.apply(gone, table.services.iter().collect())
    }

    /// [`Self::sync`], visiting only `changes` (and what the last sync left unprogrammed).
    /// Correct when every other frontend of `table` is as the last sync was given it, and that
    /// sync returned `Ok`: after an error, the caller passes [`TableChanges::All`].
    pub fn sync_changes(
        &mut self,
        table: &ServiceTable,
        changes: &TableChanges,
    ) -> Result<SyncStats, ProxyError> {
        let TableChanges::Frontends(changed) = changes else {
            return self.sync(table);
        };
        let visit: BTreeSet<&Frontend> = changed
            .iter()
            .chain(self.unprogrammed.iter().map(|u| &u.frontend))
            .collect();
        let mut gone = Vec::new();
        let mut pending = Vec::new();
        for frontend in visit {
            match table.services.get_key_value(frontend) {
                Some(entry) => pending.push(entry),
                None if self.services.contains_key(frontend) => gone.push(*frontend),
                None => {} // never programmed, and no longer wanted
            }
        }
        self.apply(gone, pending)
    }

    /// Removes `gone`, then writes `pending` (in frontend order), and reports what did not fit.
    fn apply(
        &mut self,
        gone: Vec<Frontend>,
        mut pending: Vec<(&Frontend, &ServicePortEntry)>,
    ) -> Result<SyncStats, ProxyError> {
        let mut stats = SyncStats::default();
        let mut failures = Failures::default();
        for frontend in gone {
            if let Err(error) = self.remove_service(&frontend, &mut stats) {
                failures.add(format!("removing {frontend}: {error}"));
            }
        }
        self.collect_garbage(&mut stats, &mut failures, false);
        let mut unprogrammed = Vec::new();
        // A second pass gives the services that found no room what this pass freed (a service
        // emptied or shrunk earlier in frontend order than one that grew).
        for pass in 0..2 {
            let mut room = self.maglev_room();
            let mut no_room = Vec::new();
            for (frontend, entry) in pending {
                match self.write_entry(frontend, entry, &mut room, &mut stats) {
                    Ok(()) => {}
                    Err(reason @ UnprogrammedReason::WriteFailed(_)) => {
                        failures.add(format!("{} ({frontend}): {reason}", entry.name));
                        unprogrammed.push(self.report(frontend, entry, reason));
                    }
                    Err(reason) => no_room.push((frontend, entry, reason)),
                }
            }
            let freed = self.collect_garbage(&mut stats, &mut failures, true);
            if pass == 1 || freed == 0 || no_room.is_empty() {
                for (frontend, entry, reason) in no_room {
                    unprogrammed.push(self.report(frontend, entry, reason));
                }
                break;
            }
            pending = no_room.into_iter().map(|(f, e, _)| (f, e)).collect();
        }
        unprogrammed.sort_by_key(|u| u.frontend);
        self.unprogrammed = unprogrammed;
        failures.into_result(stats)
    }

    fn report(
        &self,
        frontend: &Frontend,
        entry: &ServicePortEntry,
        reason: UnprogrammedReason,
    ) -> Unprogrammed {
        Unprogrammed {
            service: entry.name.clone(),
            frontend: *frontend,
            kept_previous: self.services.contains_key(frontend),
            reason,
        }
    }
}
