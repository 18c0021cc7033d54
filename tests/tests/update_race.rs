//! Make-before-break, proven against the kernel: a service is rewritten 10,000 times while a
//! client in keel's cgroup connects without pause, and not one connect may fail.
//!
//! The test drives the eBPF proxy directly (no daemon, no manifests) so that the updates come
//! as fast as the map writer can make them.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use keel_proxy::{
    ebpf::Limits,
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable},
    ServiceProxy,
};
use keel_tests::{finish_client, start_client, Client, ProxyLab, Run, TestResult, BACKEND_PORT};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const PORT: u16 = 80;
const UPDATES: usize = 10_000;

fn table(backends: &[Ipv4Addr]) -> ServiceTable {
    let mut table = ServiceTable::default();
    let frontend = Frontend {
        vip: VIP,
        port: PORT,
        protocol: L4Protocol::Tcp,
    };
    let backends = backends
        .iter()
        .map(|ip| SocketAddrV4::new(*ip, BACKEND_PORT))
        .collect();
    table.services.insert(
        frontend,
        ServicePortEntry {
            name: "default/race:http".into(),
            backends,
            affinity_timeout: None,
        },
    );
    table
}

#[test]
fn ten_thousand_updates_under_continuous_connects_lose_no_connection() -> TestResult {
    let mut setup = ProxyLab::new(
        "race",
        &["a", "b", "c", "d"],
        Limits {
            max_services: 64,
            max_backends: 64,
        },
    )?;
    let pods = setup.pods.clone();
    let (a, b, c, d) = (pods[0], pods[1], pods[2], pods[3]);
    // Growing, shrinking, replacing outright, and back: every kind of change the writer makes.
    let shapes: [&[Ipv4Addr]; 6] = [&[a, b], &[b, c, d], &[d], &[a, b, c, d], &[c], &[a, d]];
    setup.proxy.sync(&table(shapes[0]))?;

    let client = start_client(
        &setup.lab,
        setup.cgroup.path(),
        SocketAddrV4::new(VIP, PORT),
        Client::Tcp { check_peer: false },
        Run::ForMs(3000),
    )?;
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for update in 1..=UPDATES {
        setup.proxy.sync(&table(shapes[update % shapes.len()]))?;
        // Spread the updates over the client's run rather than finishing before it warms up.
        std::thread::sleep(Duration::from_micros(150));
    }
    let updating = started.elapsed();
    let run = finish_client(client)?;

    let counts = run.counts();
    let failed: usize = counts
        .iter()
        .filter(|(k, _)| k.starts_with("err:"))
        .map(|(_, n)| n)
        .sum();
    println!(
        "{UPDATES} updates in {updating:?}; {} connects: {counts:?}",
        run.attempts.len()
    );
    assert_eq!(
        failed, 0,
        "connects failed while the service was rewritten: {counts:?}"
    );
    assert!(
        run.attempts.len() > 200,
        "the client connected continuously: {counts:?}"
    );
    assert_eq!(
        counts.len(),
        4,
        "every backend took connections: {counts:?}"
    );
    Ok(())
}
