//! 10,000 services × 10 endpoints in the kernel maps: how long programming them takes, how long
//! one endpoint change takes at that size, and a sample of services checked end to end.
//!
//! The numbers are printed (run with `--nocapture`); they are reported, not asserted, since
//! timing belongs in benchmarks. What is asserted is correctness at scale.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use keel_proxy::{
    ebpf::{read_services, Limits},
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable, TableChanges},
    ServiceProxy,
};
use keel_tests::{finish_client, start_client, Client, ProxyLab, Run, TestResult, BACKEND_PORT};

const SERVICES: u32 = 10_000;
const ENDPOINTS: usize = 10;

/// Service `i` has ClusterIP 10.96.x.y and port 80; its endpoints are all the pods, rotated by
/// `i` so slot order differs between services.
fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i + 1)
}

fn table(pods: &[Ipv4Addr], not_ready: Option<(u32, usize)>) -> ServiceTable {
    let mut table = ServiceTable::default();
    for i in 0..SERVICES {
        let frontend = Frontend {
            vip: vip(i),
            port: 80,
            protocol: L4Protocol::Tcp,
        };
        let backends = (0..ENDPOINTS)
            .filter(|e| not_ready != Some((i, *e)))
            .map(|e| SocketAddrV4::new(pods[(e + i as usize) % pods.len()], BACKEND_PORT))
            .collect();
        table.services.insert(
            frontend,
            ServicePortEntry {
                name: format!("default/svc-{i}:http"),
                backends,
                affinity_timeout: None,
            },
        );
    }
    table
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[test]
fn ten_thousand_services_with_ten_endpoints_each() -> TestResult {
    let names: Vec<String> = (0..ENDPOINTS).map(|n| format!("p{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut setup = ProxyLab::new(
        "scale",
        &names,
        Limits {
            max_services: 65_536,
            max_backends: 262_144,
        },
    )?;
    let pods = setup.pods.clone();

    let full = table(&pods, None);
    let started = Instant::now();
    let stats = setup.proxy.sync(&full)?;
    let programming = started.elapsed();
    assert_eq!(
        stats.written,
        SERVICES as usize * (ENDPOINTS + 1) + ENDPOINTS,
        "{stats:?}"
    );

    // One endpoint change at a time, each on a different service, then back: as a whole-table
    // sync, then as the daemon syncs, told which frontends changed (the diff timed apart).
    let mut whole = Vec::new();
    let mut told = Vec::new();
    let mut diffs = Vec::new();
    let mut previous = full.clone();
    for k in 0..200 {
        let changed = table(&pods, Some((k * 97 % SERVICES, k as usize % ENDPOINTS)));
        let started = Instant::now();
        if k % 2 == 0 {
            setup.proxy.sync(&changed)?;
            whole.push(started.elapsed());
        } else {
            let changes = TableChanges::Frontends(changed.changed_since(&previous));
            diffs.push(started.elapsed());
            let started = Instant::now();
            let stats = setup.proxy.sync_changes(&changed, &changes)?;
            told.push(started.elapsed());
            // This change and the undoing of the last one: two services, slots and heads.
            assert!(
                stats.written <= 2 * (ENDPOINTS + 1),
                "{changes:?}: {stats:?}"
            );
        }
        previous = changed;
    }
    setup.proxy.sync(&full)?;
    for times in [&mut whole, &mut told, &mut diffs] {
        times.sort();
    }
    println!(
        "programmed {SERVICES} services x {ENDPOINTS} endpoints in {programming:?}; one endpoint \
         change at {SERVICES} services (this build's profile): whole-table sync p50 {:?} p99 {:?}; \
         told the changes p50 {:?} p99 {:?}; finding the changes (table diff) p50 {:?} p99 {:?}",
        percentile(&whole, 0.5),
        percentile(&whole, 0.99),
        percentile(&told, 0.5),
        percentile(&told, 0.99),
        percentile(&diffs, 0.5),
        percentile(&diffs, 0.99),
    );

    // What the kernel holds matches, service by service.
    let dump = read_services(&setup.pins.0)?;
    assert_eq!(dump.len(), SERVICES as usize);
    assert!(dump
        .iter()
        .all(|s| s.backends.len() == ENDPOINTS && s.backends.iter().all(Option::is_some)));

    // A sample, end to end: every connection to a sampled ClusterIP reaches a pod.
    for i in (0..SERVICES).step_by(499) {
        let client = start_client(
            &setup.lab,
            setup.cgroup.path(),
            SocketAddrV4::new(vip(i), 80),
            Client::Tcp { check_peer: true },
            Run::Count(10),
        )?;
        let counts = finish_client(client)?.counts();
        assert_eq!(counts.values().sum::<usize>(), 10, "{counts:?}");
        assert!(
            counts.keys().all(|k| k.starts_with('p')),
            "service {i} ({}): {counts:?}",
            vip(i)
        );
    }
    Ok(())
}
