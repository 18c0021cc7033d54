//! A sync applies what fits and reports the rest by name; no service is ever half-written.
//! The fake checks the reader's invariants after every write, and refuses writes the way a full
//! (or failing) kernel map does.

use super::{
    fake::CheckedMaps,
    tests::{frontend, table, with_affinity, LIMITS},
    *,
};

/// 32 chunks a table.
const SIZE: u32 = maglev::SIZES[0];

/// A writer whose Maglev map holds `tables` tables, and a fake map of exactly that size.
fn writer(tables: u32) -> MapWriter<CheckedMaps> {
    let maps = CheckedMaps {
        max_chunks: Some((tables * chunks(SIZE)) as usize),
        ..CheckedMaps::default()
    };
    MapWriter::new(maps, LIMITS)
        .with_maglev(SIZE)
        .with_maglev_capacity(tables * chunks(SIZE))
}

fn heads(writer: &MapWriter<CheckedMaps>) -> Vec<Frontend> {
    let mut heads: Vec<Frontend> = writer
        .maps()
        .services
        .keys()
        .filter(|k| k.slot == 0)
        .filter_map(frontend_of)
        .collect();
    heads.sort();
    heads
}

fn names(writer: &MapWriter<CheckedMaps>) -> Vec<(&str, &'static str)> {
    writer
        .unprogrammed()
        .iter()
        .map(|u| (u.service.as_str(), u.reason.label()))
        .collect()
}

/// Nothing in the maps belongs to a service without a head: no slot, chunk or backend of a
/// skipped service got in.
fn assert_nothing_half_written(writer: &MapWriter<CheckedMaps>) {
    let maps = writer.maps();
    let heads: BTreeMap<ServiceKey, ServiceValue> = maps
        .services
        .iter()
        .filter(|(k, _)| k.slot == 0)
        .map(|(k, v)| (*k, *v))
        .collect();
    for (key, _) in maps.services.iter().filter(|(k, _)| k.slot != 0) {
        let head = heads.get(&ServiceKey { slot: 0, ..*key });
        assert!(
            head.is_some_and(|h| u32::from(key.slot) <= h.count),
            "slot {key:?} belongs to no service"
        );
    }
    let owned: BTreeMap<u32, u32> = heads
        .values()
        .map(|h| (h.service_id, chunks(h.maglev_size)))
        .collect();
    for key in maps.chunks.keys() {
        assert!(
            owned.get(&key.service_id).is_some_and(|n| key.chunk < *n),
            "chunk {key:?} belongs to no table"
        );
    }
    let named: BTreeSet<u32> = maps
        .services
        .iter()
        .filter(|(k, _)| k.slot != 0)
        .map(|(_, v)| v.backend_id)
        .collect();
    let stored: BTreeSet<u32> = maps.backends.keys().copied().collect();
    assert_eq!(stored, named, "backends are exactly those the slots name");
}

#[test]
fn more_services_than_fit_are_skipped_whole_and_reported_by_name() -> Result<(), ProxyError> {
    let mut writer = writer(3);
    let five: &[(u8, &[u8])] = &[
        (1, &[1, 2]),
        (2, &[3]),
        (3, &[4, 5]),
        (4, &[6, 7]),
        (5, &[8]),
    ];
    writer.sync(&table(five))?;
    assert_eq!(heads(&writer), [frontend(1), frontend(2), frontend(3)]);
    assert_eq!(
        names(&writer),
        [("svc4", "capacity"), ("svc5", "capacity")],
        "{:?}",
        writer.unprogrammed()
    );
    assert!(writer.unprogrammed().iter().all(|u| !u.kept_previous));
    assert_eq!(writer.maps().chunks.len() as u32, 3 * chunks(SIZE));
    assert_nothing_half_written(&writer);

    // The same table again: nothing changes, the same two are reported.
    assert_eq!(writer.sync(&table(five))?, SyncStats::default());
    assert_eq!(names(&writer).len(), 2);

    // Removing two frees room: the skipped ones are programmed by the next sync.
    writer.sync(&table(&five[2..]))?;
    assert_eq!(heads(&writer), [frontend(3), frontend(4), frontend(5)]);
    assert!(
        writer.unprogrammed().is_empty(),
        "{:?}",
        writer.unprogrammed()
    );
    assert_eq!(writer.maps().chunks.len() as u32, 3 * chunks(SIZE));
    assert_nothing_half_written(&writer);
    Ok(())
}

#[test]
fn a_service_emptied_in_the_same_sync_makes_room_for_one_before_it() -> Result<(), ProxyError> {
    let mut writer = writer(2);
    writer.sync(&table(&[(2, &[1]), (3, &[2])]))?;
    // 1 sorts first and finds the map full; 3 gives its table up later in the same sync.
    writer.sync(&table(&[(1, &[3]), (2, &[1]), (3, &[])]))?;
    assert!(
        writer.unprogrammed().is_empty(),
        "{:?}",
        writer.unprogrammed()
    );
    assert_eq!(heads(&writer), [frontend(1), frontend(2), frontend(3)]);
    assert_eq!(
        writer.maps().services[&key(&frontend(1), 0)].maglev_size,
        SIZE
    );
    assert_nothing_half_written(&writer);
    Ok(())
}

#[test]
fn out_of_service_ids_skips_the_rest_without_wedging() -> Result<(), ProxyError> {
    let limits = Limits {
        max_services: 2,
        max_backends: 100,
    };
    let mut writer = MapWriter::new(CheckedMaps::default(), limits);
    writer.sync(&table(&[(1, &[1]), (2, &[2]), (3, &[3])]))?;
    assert_eq!(names(&writer), [("svc3", "capacity")]);
    // A later change still applies.
    writer.sync(&table(&[(1, &[1, 4]), (2, &[2]), (3, &[3])]))?;
    assert_eq!(writer.maps().services[&key(&frontend(1), 0)].count, 2);
    assert_nothing_half_written(&writer);
    Ok(())
}

#[test]
fn a_failed_update_keeps_the_programmed_service_consistent() -> Result<(), ProxyError> {
    let mut writer = writer(10);
    writer.sync(&table(&[(1, &[1, 2])]))?;
    let before = writer.maps().services[&key(&frontend(1), 0)];
    writer.maps.fail_chunks_of = Some(before.service_id);

    // Its table breaks off after the first chunk; the other service goes in anyway, and the
    // error says a retry is due.
    let result = writer.sync(&table(&[(1, &[3, 4, 5]), (2, &[6])]));
    assert!(
        matches!(result, Err(ProxyError::Incomplete { failed: 1, .. })),
        "{result:?}"
    );
    assert_eq!(names(&writer), [("svc1", "write_error")]);
    assert!(writer.unprogrammed()[0].kept_previous);
    assert_eq!(
        writer.maps().services[&key(&frontend(1), 0)],
        before,
        "the head is untouched"
    );
    assert_eq!(heads(&writer), [frontend(1), frontend(2)]);
    // Every entry the old head reaches names a backend that exists (the fake checked it after
    // every write), and nothing was collected from under it.
    writer.maps().check();

    // The retry converges: exactly the new backends, nothing left over.
    writer.maps.fail_chunks_of = None;
    writer.sync(&table(&[(1, &[3, 4, 5]), (2, &[6])]))?;
    assert!(writer.unprogrammed().is_empty());
    assert_eq!(writer.maps().services[&key(&frontend(1), 0)].count, 3);
    assert_eq!(writer.maps().backends.len(), 4);
    assert_eq!(writer.maps().chunks.len() as u32, 2 * chunks(SIZE));
    assert_nothing_half_written(&writer);
    Ok(())
}

#[test]
fn a_failed_new_service_leaves_nothing_behind() -> Result<(), ProxyError> {
    let mut writer = writer(10);
    writer.sync(&table(&[(1, &[1])]))?;
    // The next service id is 2.
    writer.maps.fail_chunks_of = Some(2);
    let result = writer.sync(&table(&[(1, &[1]), (2, &[2, 3])]));
    assert!(result.is_err(), "{result:?}");
    assert_eq!(names(&writer), [("svc2", "write_error")]);
    assert!(!writer.unprogrammed()[0].kept_previous);
    assert_eq!(heads(&writer), [frontend(1)]);
    assert_eq!(writer.maps().chunks.len() as u32, chunks(SIZE));
    assert_nothing_half_written(&writer);

    writer.maps.fail_chunks_of = None;
    writer.sync(&table(&[(1, &[1]), (2, &[2, 3])]))?;
    assert_eq!(heads(&writer), [frontend(1), frontend(2)]);
    assert_nothing_half_written(&writer);
    Ok(())
}

#[test]
fn a_full_kernel_map_counts_as_capacity() -> Result<(), ProxyError> {
    // The writer believes in room for 5 tables; the map (pinned smaller, say) holds 2.
    let maps = CheckedMaps {
        max_chunks: Some(2 * chunks(SIZE) as usize),
        ..CheckedMaps::default()
    };
    let mut writer = MapWriter::new(maps, LIMITS)
        .with_maglev(SIZE)
        .with_maglev_capacity(5 * chunks(SIZE));
    writer.sync(&table(&[(1, &[1]), (2, &[2]), (3, &[3])]))?;
    assert_eq!(names(&writer), [("svc3", "capacity")]);
    assert_nothing_half_written(&writer);
    Ok(())
}

#[test]
fn a_failed_update_with_affinity_converges_to_exactly_the_new_memberships() -> Result<(), ProxyError>
{
    let mut writer = writer(10);
    writer.sync(&with_affinity(table(&[(1, &[1, 2])]), 60))?;
    let service_id = writer.maps().services[&key(&frontend(1), 0)].service_id;
    writer.maps.fail_chunks_of = Some(service_id);
    // The membership of the new backend is written before the table breaks off.
    let result = writer.sync(&with_affinity(table(&[(1, &[2, 3])]), 60));
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        writer.maps().matches.len(),
        3,
        "old ones stay, the new one is in"
    );
    writer.maps().check();

    writer.maps.fail_chunks_of = None;
    writer.sync(&with_affinity(table(&[(1, &[2, 3])]), 60))?;
    let slots: BTreeSet<u32> = writer
        .maps()
        .services
        .iter()
        .filter(|(k, _)| k.slot > 0)
        .map(|(_, v)| v.backend_id)
        .collect();
    let matches: BTreeSet<u32> = writer.maps().matches.iter().map(|m| m.backend_id).collect();
    assert_eq!(matches, slots);
    assert_nothing_half_written(&writer);
    Ok(())
}
