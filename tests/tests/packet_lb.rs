//! The per-packet datapath, end to end: a client on a host beyond the node (its own namespace,
//! reaching the node through the uplink, outside keel's cgroup) uses a ClusterIP and a
//! NodePort; tc on the uplink translates the packets both ways.

use std::{net::SocketAddrV4, time::Duration};

use keel_lab::{
    lab::REMOTE_IP, lab::UPLINK, lab::UPLINK_NODE_IP, Cgroup, Lab, NodePlacement, Placement,
};
use keel_tests::{
    finish_client, require_root, slice_yaml, start_client_at, write_manifest, Client, Daemon, Run,
    TestResult, BACKEND_PORT, SERVICE_PORT, VIP,
};

const NODE_PORT: u16 = 30_080;

fn node_port_service() -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  clusterIP: {VIP}\n  ports:\n  - name: http\n    port: {SERVICE_PORT}\n    targetPort: {BACKEND_PORT}\n    nodePort: {NODE_PORT}\n  - name: dns\n    port: {SERVICE_PORT}\n    targetPort: {BACKEND_PORT}\n    protocol: UDP\n"
    )
}

#[test]
fn a_remote_client_reaches_cluster_ip_and_node_port_through_tc() -> TestResult {
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let mut backends = Vec::new();
    for name in ["a", "b"] {
        let pod = lab.add_pod(name)?;
        pod.serve(BACKEND_PORT)?;
        backends.push((pod.addr(), true));
    }
    let remote = lab.add_remote("remote")?;
    assert_eq!(remote.addr(), REMOTE_IP);
    let remote_at = Placement {
        netns: Some(remote.netns().path()),
        cgroup: None,
    };

    let cgroup = Cgroup::create(&format!("keel-test-tc-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    write_manifest(manifests.path(), "web.yaml", &node_port_service())?;
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml("web", BACKEND_PORT, &backends),
    )?;
    let daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--tc-interface", UPLINK],
    )?;

    // ClusterIP over TCP: every connection answered, both backends used, and the client's
    // socket sees the ClusterIP as its peer (the replies were reverse-translated).
    let vip = SocketAddrV4::new(VIP, SERVICE_PORT);
    let run = finish_client(start_client_at(
        &remote_at,
        vip,
        Client::Tcp { check_peer: true },
        Run::Count(200),
    )?)?;
    let counts = run.counts();
    assert_eq!(
        counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0),
        200,
        "{counts:?}"
    );
    assert_eq!(
        counts.len(),
        2,
        "Maglev spreads flows over both backends: {counts:?}"
    );

    // The same service on the NodePort of the node's uplink address.
    let node_port = SocketAddrV4::new(UPLINK_NODE_IP, NODE_PORT);
    let run = finish_client(start_client_at(
        &remote_at,
        node_port,
        Client::Tcp { check_peer: true },
        Run::Count(100),
    )?)?;
    let counts = run.counts();
    assert_eq!(
        counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0),
        100,
        "{counts:?}"
    );

    // UDP, unconnected: replies must come from the ClusterIP or the client drops them.
    let run = finish_client(start_client_at(
        &remote_at,
        vip,
        Client::Udp { connected: false },
        Run::Count(50),
    )?)?;
    let counts = run.counts();
    assert_eq!(
        counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0),
        50,
        "{counts:?}"
    );

    // The per-packet counters saw it all: at least a SYN, an ACK and a request per connection.
    let output = std::process::Command::new(keel_lab::bin("node-daemon"))
        .args(["services", "-o", "json", "--bpf-dir"])
        .arg(daemon.bpf_dir())
        .output()?;
    let services: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let tcp = services
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["protocol"] == "TCP" && s["port"] == SERVICE_PORT)
        })
        .ok_or("no TCP ClusterIP service in the dump")?;
    assert!(tcp["packets"].as_u64().unwrap_or(0) >= 600, "{tcp}");
    assert!(
        tcp["bytes"].as_u64().unwrap_or(0) > tcp["packets"].as_u64().unwrap_or(0) * 54,
        "{tcp}"
    );
    assert_eq!(tcp["connections"], 200, "{tcp}");
    let metrics = daemon.metrics()?;
    assert!(
        metrics.contains("keel_service_packets_total{service=\"default/web:http\""),
        "{metrics}"
    );

    // An endpoint turning unready gets no new flows from the packet path either.
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml(
            "web",
            BACKEND_PORT,
            &[(backends[0].0, true), (backends[1].0, false)],
        ),
    )?;
    daemon.wait_for_log(&["synced", "backends=3"], Duration::from_secs(2))?;
    let run = finish_client(start_client_at(
        &remote_at,
        vip,
        Client::Tcp { check_peer: false },
        Run::Count(50),
    )?)?;
    assert_eq!(run.counts().get("a"), Some(&50), "{:?}", run.counts());
    Ok(())
}
