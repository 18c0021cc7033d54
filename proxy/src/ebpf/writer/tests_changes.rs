//! A sync told which frontends changed ends where a whole sync ends, and touches nothing else.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{
    fake::CheckedMaps,
    tests::{frontend, table, LIMITS},
    *,
};
use crate::service_table::{ServiceTable, TableChanges};

/// 32 chunks a table.
const SIZE: u32 = maglev::SIZES[0];

/// What the maps say, by meaning rather than by id: each frontend's backends in slot order,
/// affinity timeout, affinity members and Maglev table (as addresses), and how many entries
/// each map holds (so that a leak shows).
type Resolved = (
    BTreeMap<ServiceKey, (Vec<u32>, u32, Vec<u32>, Vec<u32>)>,
    [usize; 4],
);

fn resolve(maps: &CheckedMaps) -> Resolved {
    let addr = |id: &u32| {
        maps.backends
            .get(id)
            .map_or(0, |b| b.addr ^ u32::from(b.port))
    };
    let mut services = BTreeMap::new();
    for (key, head) in maps.services.iter().filter(|(k, _)| k.slot == 0) {
        let slots = (1..=head.count as u16)
            .map(|slot| addr(&maps.services[&ServiceKey { slot, ..*key }].backend_id))
            .collect();
        let mut members: Vec<u32> = maps
            .matches
            .iter()
            .filter(|m| m.service_id == head.service_id)
            .map(|m| addr(&m.backend_id))
            .collect();
        members.sort_unstable();
        let table = (0..chunks(head.maglev_size))
            .flat_map(|chunk| {
                let key = MaglevKey {
                    service_id: head.service_id,
                    chunk,
                };
                maps.chunks[&key].backend_ids.to_vec()
            })
            .map(|id| addr(&id))
            .collect();
        services.insert(*key, (slots, head.affinity_timeout, members, table));
    }
    let sizes = [
        maps.services.len(),
        maps.backends.len(),
        maps.matches.len(),
        maps.chunks.len(),
    ];
    (services, sizes)
}

/// A small deterministic generator (an LCG), so a failure names a reproducible step.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }

    /// The table after one random change to `table`: a service added, removed, emptied, or a
    /// backend added or removed, or affinity switched.
    fn change(&mut self, table: &ServiceTable) -> ServiceTable {
        let mut table = table.clone();
        let vip = self.next(24) as u8 + 1;
        let backend = SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, self.next(16) as u8 + 1), 8080);
        let entry = table
            .services
            .entry(frontend(vip))
            .or_insert(ServicePortEntry {
                name: format!("svc{vip}"),
                backends: Vec::new(),
                affinity_timeout: None,
            });
        match self.next(6) {
            0 => {
                table.services.remove(&frontend(vip));
            }
            1 => entry.backends.clear(),
            2 => entry.affinity_timeout = entry.affinity_timeout.xor(Some(30)),
            3 => entry.backends.retain(|b| *b != backend),
            _ => {
                if !entry.backends.contains(&backend) {
                    entry.backends.push(backend);
                    entry.backends.sort();
                }
            }
        }
        table
    }
}

#[test]
fn a_sync_told_the_changes_ends_where_a_whole_sync_ends() -> Result<(), ProxyError> {
    // Room for 10 Maglev tables among 24 services: some changes find no room, and later
    // removals make some.
    let writer = || {
        MapWriter::new(CheckedMaps::default(), LIMITS)
            .with_maglev(SIZE)
            .with_maglev_capacity(10 * chunks(SIZE))
    };
    let (mut whole, mut partial) = (writer(), writer());
    let mut steps = Steps(7);
    let mut current = ServiceTable::default();
    let mut skipped = 0;
    for step in 0..300 {
        let next = steps.change(&current);
        let changes = TableChanges::Frontends(next.changed_since(&current));
        whole.sync(&next)?;
        partial.sync_changes(&next, &changes)?;
        assert_eq!(
            resolve(partial.maps()),
            resolve(whole.maps()),
            "step {step}: {changes:?}"
        );
        let unprogrammed = |w: &MapWriter<CheckedMaps>| {
            w.unprogrammed()
                .iter()
                .map(|u| (u.frontend, u.kept_previous))
                .collect::<Vec<_>>()
        };
        assert_eq!(unprogrammed(&partial), unprogrammed(&whole), "step {step}");
        skipped += whole.unprogrammed().len();
        assert_eq!(
            partial.chunks_held,
            partial
                .services
                .values()
                .map(|w| u64::from(chunks(w.maglev_size)))
                .sum::<u64>(),
            "step {step}: the chunk count kept in step"
        );
        current = next;
    }
    assert!(skipped > 0, "the sequence never ran out of Maglev room");
    Ok(())
}

#[test]
fn a_sync_told_the_changes_touches_nothing_else() -> Result<(), ProxyError> {
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS);
    writer.sync(&table(&[(1, &[1, 2]), (2, &[3]), (3, &[4])]))?;
    let writes = writer.maps().writes;
    // Services 1 and 3 differ from what was written, but only 2 is named: the sync must take
    // the others as written (it is the caller's word that they did not change).
    let next = table(&[(1, &[9]), (2, &[3, 5]), (3, &[])]);
    let changes = TableChanges::Frontends([frontend(2)].into());
    let stats = writer.sync_changes(&next, &changes)?;
    // backend 5, slot 2, the head.
    assert_eq!(stats.written, 3, "{stats:?}");
    assert_eq!(writer.maps().writes, writes + 3);
    let heads = |w: &MapWriter<CheckedMaps>, vip| w.maps().services[&key(&frontend(vip), 0)].count;
    assert_eq!(
        (heads(&writer, 1), heads(&writer, 2), heads(&writer, 3)),
        (2, 2, 1)
    );
    // A whole sync then brings the rest.
    writer.sync(&next)?;
    assert_eq!(
        (heads(&writer, 1), heads(&writer, 2), heads(&writer, 3)),
        (1, 2, 0)
    );
    Ok(())
}

#[test]
fn a_removal_named_alone_makes_room_for_what_waited() -> Result<(), ProxyError> {
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS)
        .with_maglev(SIZE)
        .with_maglev_capacity(chunks(SIZE));
    writer.sync(&table(&[(1, &[1]), (2, &[2])]))?;
    let waiting: Vec<Frontend> = writer.unprogrammed().iter().map(|u| u.frontend).collect();
    assert_eq!(
        waiting,
        [frontend(2)],
        "one table fits, the first in frontend order"
    );
    // Only the removed service is named; the one left out is retried all the same.
    let next = table(&[(2, &[2])]);
    writer.sync_changes(&next, &TableChanges::Frontends([frontend(1)].into()))?;
    assert!(
        writer.unprogrammed().is_empty(),
        "{:?}",
        writer.unprogrammed()
    );
    assert_eq!(
        writer.maps().services[&key(&frontend(2), 0)].maglev_size,
        SIZE,
        "the waiting service got its table"
    );
    Ok(())
}

#[test]
fn all_changes_is_a_whole_sync() -> Result<(), ProxyError> {
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS);
    writer.sync(&table(&[(1, &[1]), (2, &[2])]))?;
    writer.sync_changes(&table(&[(2, &[3])]), &TableChanges::All)?;
    assert!(!writer.maps().services.contains_key(&key(&frontend(1), 0)));
    assert_eq!(
        writer.maps().backends.len(),
        1,
        "{:?}",
        writer.maps().backends
    );
    Ok(())
}
