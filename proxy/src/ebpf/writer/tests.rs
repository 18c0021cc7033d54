use std::net::{Ipv4Addr, SocketAddrV4};

use super::{fake::CheckedMaps, *};
use crate::service_table::{ServicePortEntry, ServiceTable};

pub(super) const LIMITS: Limits = Limits {
    max_services: 1000,
    max_backends: 1000,
};

pub(super) fn frontend(last: u8) -> Frontend {
    Frontend {
        vip: Ipv4Addr::new(10, 96, 0, last),
        port: 80,
        protocol: L4Protocol::Tcp,
    }
}

pub(super) fn table(services: &[(u8, &[u8])]) -> ServiceTable {
    let mut table = ServiceTable::default();
    for (vip, backends) in services {
        let backends = backends
            .iter()
            .map(|b| SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, *b), 8080))
            .collect();
        table.services.insert(
            frontend(*vip),
            ServicePortEntry {
                name: format!("svc{vip}"),
                backends,
                affinity_timeout: None,
            },
        );
    }
    table
}

#[test]
fn every_intermediate_state_is_consistent() -> Result<(), ProxyError> {
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS);
    let steps: [&[(u8, &[u8])]; 6] = [
        &[(1, &[1, 2, 3]), (2, &[3, 4])],
        &[(1, &[2, 3]), (2, &[3, 4, 5, 6])],
        &[(1, &[]), (2, &[6])],
        &[(1, &[7, 8, 9, 10]), (3, &[1])],
        &[(3, &[1])],
        &[],
    ];
    for step in steps {
        writer.sync(&table(step))?;
    }
    assert!(
        writer.maps().services.is_empty(),
        "{:?}",
        writer.maps().services
    );
    assert!(
        writer.maps().backends.is_empty(),
        "{:?}",
        writer.maps().backends
    );
    Ok(())
}

#[test]
fn shared_backends_are_written_once_and_unchanged_services_cost_nothing() -> Result<(), ProxyError>
{
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS);
    let stats = writer.sync(&table(&[(1, &[1, 2]), (2, &[1, 2])]))?;
    // 2 backends + 2 × (2 slots + head)
    assert_eq!(
        stats,
        SyncStats {
            written: 8,
            removed: 0
        }
    );
    assert_eq!(writer.maps().backends.len(), 2);
    let again = writer.sync(&table(&[(1, &[1, 2]), (2, &[1, 2])]))?;
    assert_eq!(again, SyncStats::default());
    assert_eq!(writer.maps().writes, 8);
    Ok(())
}

#[test]
fn a_service_without_backends_keeps_its_head() -> Result<(), ProxyError> {
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS);
    writer.sync(&table(&[(1, &[])]))?;
    let head = writer.maps().services.values().next().copied();
    assert_eq!(
        head.map(|h| h.count),
        Some(0),
        "an empty service refuses, it does not vanish"
    );
    Ok(())
}

#[test]
fn a_restarted_writer_adopts_the_maps_and_changes_only_the_difference() -> Result<(), ProxyError> {
    let mut first = MapWriter::new(CheckedMaps::default(), LIMITS);
    first.sync(&table(&[(1, &[1, 2, 3]), (2, &[3, 4])]))?;
    let mut maps = first.maps;
    // Debris a crash could leave: a slot past the count, a backend nobody uses.
    let stray = ServiceKey {
        slot: 9,
        ..key(&frontend(1), 0)
    };
    maps.services.insert(
        stray,
        ServiceValue {
            backend_id: 1,
            ..ServiceValue::default()
        },
    );
    maps.backends.insert(
        77,
        Backend {
            addr: 1,
            port: 1,
            proto: 6,
            flags: 0,
        },
    );
    let writes_before = maps.writes;

    let mut second = MapWriter::adopt(maps, LIMITS)?;
    let stats = second.sync(&table(&[(1, &[1, 2, 3]), (2, &[3, 4])]))?;
    assert_eq!(stats.written, 0, "nothing rewritten: {stats:?}");
    assert_eq!(
        stats.removed, 2,
        "the stray slot and backend are gone: {stats:?}"
    );
    assert!(!second.maps().services.contains_key(&stray));
    assert!(!second.maps().backends.contains_key(&77));
    assert_eq!(second.maps().writes, writes_before + 2);

    // New ids do not collide with adopted ones.
    second.sync(&table(&[(1, &[1, 2, 3]), (2, &[3, 4]), (3, &[5])]))?;
    assert_eq!(second.maps().backends.len(), 5);
    second.sync(&table(&[]))?;
    assert!(second.maps().services.is_empty() && second.maps().backends.is_empty());
    Ok(())
}

#[test]
fn a_damaged_service_is_rewritten_on_adoption() -> Result<(), ProxyError> {
    let mut first = MapWriter::new(CheckedMaps::default(), LIMITS);
    first.sync(&table(&[(1, &[1, 2])]))?;
    let mut maps = first.maps;
    maps.services.remove(&key(&frontend(1), 2)); // slot 2 lost
    maps.unchecked = true;
    let mut second = MapWriter::adopt(maps, LIMITS)?;
    let stats = second.sync(&table(&[(1, &[1, 2])]))?;
    assert_eq!(
        stats.written, 3,
        "two slots and the head rewritten: {stats:?}"
    );
    second.maps.unchecked = false;
    second.maps().check();
    Ok(())
}

#[test]
fn a_damaged_service_that_should_be_empty_is_emptied() -> Result<(), ProxyError> {
    let mut first = MapWriter::new(CheckedMaps::default(), LIMITS);
    first.sync(&table(&[(1, &[1, 2])]))?;
    let mut maps = first.maps;
    maps.services.remove(&key(&frontend(1), 1));
    maps.unchecked = true;
    let mut second = MapWriter::adopt(maps, LIMITS)?;
    second.sync(&table(&[(1, &[])]))?;
    second.maps.unchecked = false;
    second.maps().check();
    let head = second.maps().services.get(&key(&frontend(1), 0)).copied();
    assert_eq!(head.map(|h| h.count), Some(0));
    assert_eq!(second.maps().services.len(), 1, "only the head is left");
    Ok(())
}

pub(super) fn with_affinity(mut table: ServiceTable, timeout: u32) -> ServiceTable {
    for entry in table.services.values_mut() {
        entry.affinity_timeout = Some(timeout);
    }
    table
}

#[test]
fn affinity_membership_follows_the_backends() -> Result<(), ProxyError> {
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS);
    writer.sync(&with_affinity(table(&[(1, &[1, 2, 3])]), 60))?;
    assert_eq!(writer.maps().matches.len(), 3);
    let head = writer.maps().services[&key(&frontend(1), 0)];
    assert_eq!(head.affinity_timeout, 60);

    writer.sync(&with_affinity(table(&[(1, &[2, 3, 4])]), 60))?;
    let ids: BTreeSet<u32> = writer.maps().matches.iter().map(|m| m.backend_id).collect();
    let expected: BTreeSet<u32> = writer
        .maps()
        .services
        .iter()
        .filter(|(k, _)| k.slot > 0)
        .map(|(_, v)| v.backend_id)
        .collect();
    assert_eq!(
        ids, expected,
        "memberships are exactly the current backends"
    );

    // Adoption keeps them; turning affinity off removes them.
    let mut adopted = MapWriter::adopt(writer.maps, LIMITS)?;
    assert_eq!(
        adopted.sync(&with_affinity(table(&[(1, &[2, 3, 4])]), 60))?,
        SyncStats::default()
    );
    adopted.sync(&table(&[(1, &[2, 3, 4])]))?;
    assert!(adopted.maps().matches.is_empty());
    assert_eq!(
        adopted.maps().services[&key(&frontend(1), 0)].affinity_timeout,
        0
    );

    adopted.sync(&with_affinity(table(&[(1, &[2])]), 5))?;
    adopted.sync(&table(&[]))?;
    assert!(adopted.maps().matches.is_empty() && adopted.maps().services.is_empty());
    Ok(())
}

#[test]
fn maglev_tables_are_complete_at_every_step() -> Result<(), ProxyError> {
    let size = maglev::SIZES[0];
    let mut writer = MapWriter::new(CheckedMaps::default(), LIMITS).with_maglev(size);
    writer.sync(&table(&[(1, &[1, 2, 3])]))?;
    assert_eq!(writer.maps().chunks.len() as u32, chunks(size));
    assert_eq!(
        writer.maps().services[&key(&frontend(1), 0)].maglev_size,
        size
    );
    writer.sync(&table(&[(1, &[2, 3, 4]), (2, &[5])]))?;
    assert_eq!(writer.maps().chunks.len() as u32, 2 * chunks(size));
    // No backends: no table; the head says so before the chunks go.
    writer.sync(&table(&[(1, &[]), (2, &[5])]))?;
    assert_eq!(writer.maps().services[&key(&frontend(1), 0)].maglev_size, 0);
    assert_eq!(writer.maps().chunks.len() as u32, chunks(size));
    let mut adopted = MapWriter::adopt(writer.maps, LIMITS)?.with_maglev(size);
    assert_eq!(
        adopted.sync(&table(&[(1, &[]), (2, &[5])]))?,
        SyncStats::default()
    );
    adopted.sync(&table(&[]))?;
    assert!(adopted.maps().chunks.is_empty());
    Ok(())
}
