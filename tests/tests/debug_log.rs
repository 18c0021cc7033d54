//! `node-daemon --bpf-debug-log`: the programs' `aya-log` records in the daemon's log, and
//! what they cost the verifier: nothing with the flag off (the loader fixes the programs'
//! read-only `DEBUG_LOG` global, and the verifier removes the dead log calls).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use keel_lab::{lab::UPLINK, Cgroup, Lab, NodePlacement};
use keel_tests::{
    finish_client, service_yaml, slice_yaml, start_client_at, write_manifest, Client, Daemon, Run,
    TestResult, BACKEND_PORT, SERVICE_PORT, VIP,
};

/// A UDP service without endpoints: the per-packet path drops what is sent to it.
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);

/// What one daemon logged while a client on the node and one beyond it used the services.
struct Observed {
    log: Vec<String>,
    /// Program name → instructions the verifier processed.
    verified: BTreeMap<String, u64>,
    /// Program name → bytes the kernel kept (dead code removed).
    xlated: BTreeMap<String, u64>,
    backend: SocketAddrV4,
    remote: Ipv4Addr,
}

fn observe(test: &str, extra: &[&str]) -> Result<Observed, Box<dyn std::error::Error>> {
    keel_tests::require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let pod = lab.add_pod("a")?;
    pod.serve(BACKEND_PORT)?;
    let backend = SocketAddrV4::new(pod.addr(), BACKEND_PORT);
    let remote = lab.add_remote("remote")?;
    let remote_addr = remote.addr();
    let remote_at = remote.placement();
    let cgroup = Cgroup::create(&format!("keel-test-{test}-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    write_manifest(
        manifests.path(),
        "web.yaml",
        &service_yaml("web", VIP, SERVICE_PORT, BACKEND_PORT),
    )?;
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml("web", BACKEND_PORT, &[(*backend.ip(), true)]),
    )?;
    write_manifest(
        manifests.path(),
        "empty.yaml",
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  clusterIP: {EMPTY_VIP}\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n"),
    )?;
    let daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &[&["--tc-interface", UPLINK][..], extra].concat(),
    )?;
    daemon.wait_for_log(&["synced", "service_ports=3"], Duration::from_secs(20))?;
    // connect4, from a process in keel's cgroup on the node.
    let local = keel_tests::connect(
        &lab,
        cgroup.path(),
        SocketAddrV4::new(VIP, SERVICE_PORT),
        Run::Count(2),
    )?;
    assert_eq!(local.counts().get("a"), Some(&2), "{:?}", local.counts());
    // tc ingress: a drop, from beyond the node.
    finish_client(start_client_at(
        &remote_at,
        SocketAddrV4::new(EMPTY_VIP, 53),
        Client::UdpFrom {
            source_port: 5353,
            timeout_ms: 200,
        },
        Run::Count(1),
    )?)?;
    // Records are read asynchronously: give the reader a moment.
    std::thread::sleep(Duration::from_millis(500));
    let log = daemon.log();
    let mut verified = BTreeMap::new();
    let mut xlated = BTreeMap::new();
    for line in log.iter().filter(|l| l.contains("program loaded")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
        };
        if let (Some(name), Some(n)) = (field("program"), field("verified_insns")) {
            verified.insert(name.clone(), n.parse()?);
            if let Some(bytes) = field("xlated_bytes") {
                xlated.insert(name, bytes.parse()?);
            }
        }
    }
    Ok(Observed {
        log,
        verified,
        xlated,
        backend,
        remote: remote_addr,
    })
}

#[test]
fn debug_log_shows_connections_and_drops_and_costs_nothing_when_off() -> TestResult {
    let on = observe("dbglog-on", &["--bpf-debug-log"])?;
    let off = observe("dbglog-off", &[])?;
    let records = |o: &Observed| -> Vec<String> {
        o.log
            .iter()
            .filter(|l| l.contains("keel::bpf"))
            .cloned()
            .collect()
    };
    let on_records = records(&on);
    let connect = format!("{VIP}:{SERVICE_PORT} proto 6 -> backend {}", on.backend);
    assert!(
        on_records.iter().any(|l| l.contains(&connect)),
        "no connect4 record with `{connect}`: {on_records:#?}\ndaemon log:\n{}",
        on.log.join("\n")
    );
    let drop = format!(
        "tc ingress drop {}:5353 -> {EMPTY_VIP}:53 proto 17: reason 1",
        on.remote
    );
    assert!(
        on_records.iter().any(|l| l.contains(&drop)),
        "no drop record with `{drop}`: {on_records:#?}"
    );
    assert!(records(&off).is_empty(), "{:#?}", records(&off));
    println!("verified instructions, flag off: {:?}", off.verified);
    println!("verified instructions, flag on:  {:?}", on.verified);
    println!("translated bytes, flag off: {:?}", off.xlated);
    println!("translated bytes, flag on:  {:?}", on.xlated);
    for program in ["keel_connect4", "keel_tc_in"] {
        let (Some(off_n), Some(on_n)) = (off.verified.get(program), on.verified.get(program))
        else {
            return Err(format!(
                "no verifier count for {program}: {:?} {:?}",
                off.verified, on.verified
            )
            .into());
        };
        // The log calls are only verified when on.
        assert!(on_n > off_n, "{program}: on {on_n}, off {off_n}");
    }
    Ok(())
}
