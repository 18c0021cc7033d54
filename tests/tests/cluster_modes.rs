//! The whole cluster in every proxy mode the host has (`--proxy-mode iptables|nftables` on
//! every node, and eBPF with its tc programs on the nodes' uplinks; ipvs runs where the kernel
//! has it, in `cargo xtask vm test`): a Deployment spread over two nodes behind a NodePort
//! Service answers, from every pod, on its ClusterIP from either node and on its NodePort at
//! either node's address — a backend on the other node reached through the node asked, its
//! reply too (masqueraded by rule, or source-NATed by the tc program); and a pod is reached at
//! its own IP from the other node, over the host-gw routes.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use keel_tests::cluster::{deployment, is_ready, items, Cluster, DEMO_VIP};
use keel_tests::TestResult;

const NODE_PORT: u16 = 30_080;

/// Collects the pods answering `fetch` until all of `want` have, or 30 s pass.
fn answers(want: &BTreeSet<String>, mut fetch: impl FnMut() -> Option<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&seen) && Instant::now() < deadline {
        if let Some(body) = fetch() {
            seen.insert(body);
        }
    }
    seen
}

fn serves_across_nodes(mode: &str, node_args: &[&str]) -> TestResult {
    let cluster = Cluster::start_with(1, 2, mode, &[], node_args)?;
    let manifest = deployment("web", 4).replace(
        "  ports: [{port: 80, targetPort: http}]\n",
        &format!(
            "  type: NodePort\n  ports: [{{port: 80, targetPort: http, nodePort: {NODE_PORT}}}]\n"
        ),
    );
    assert!(manifest.contains("NodePort"), "the manifest changed shape");
    cluster.apply(&manifest)?;
    let pods = cluster.wait(
        "four pods Ready over both nodes",
        &["get", "pods", "-l", "app=web"],
        Duration::from_secs(120),
        |list| {
            let pods = items(list);
            let nodes: BTreeSet<&str> = pods
                .iter()
                .filter_map(|p| p["spec"]["nodeName"].as_str())
                .collect();
            pods.len() == 4 && nodes.len() == 2 && pods.iter().all(is_ready)
        },
    )?;
    let names: BTreeSet<String> = items(&pods)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();

    // ClusterIP, from either node.
    for from in 0..2 {
        let seen = answers(&names, || {
            cluster.curl_from_node(from, &format!("http://{DEMO_VIP}/"))
        });
        assert_eq!(
            seen,
            names,
            "{mode}: the ClusterIP from n{from} answered from only some pods\n{}",
            cluster.lab.logs()
        );
    }
    // NodePort, at either node's address, from the lab's switch (outside every node).
    let curl = Path::new("curl");
    for node in &cluster.lab.nodes {
        let url = format!("http://{}:{NODE_PORT}/", node.addr);
        let seen = answers(&names, || {
            let out = cluster
                .lab
                .run_on_switch(curl, &["-sf", "--max-time", "2", &url])
                .ok()?;
            let body = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !body.is_empty()).then_some(body)
        });
        assert_eq!(
            seen,
            names,
            "{mode}: the NodePort at {} answered from only some pods\n{}",
            node.name,
            cluster.lab.logs()
        );
    }
    // A pod on n1 at its own IP, from n0.
    let all = items(&pods);
    let pod = all
        .iter()
        .find(|p| p["spec"]["nodeName"] == "n1")
        .ok_or("no pod on n1")?;
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let direct = cluster.curl_from_node(0, &format!("http://{ip}:8080/"));
    assert_eq!(
        direct.as_deref(),
        Some(name),
        "{mode}: pod {name} at {ip} from n0\n{}",
        cluster.lab.logs()
    );
    Ok(())
}

#[test]
fn iptables_mode_serves_the_cluster_across_nodes() -> TestResult {
    serves_across_nodes("iptables", &[])
}

#[test]
fn nftables_mode_serves_the_cluster_across_nodes() -> TestResult {
    serves_across_nodes("nftables", &[])
}

#[test]
fn ebpf_mode_with_tc_serves_nodeports_across_nodes() -> TestResult {
    // The lab gives every eBPF node `--tc-interface eth0`, its uplink.
    serves_across_nodes("ebpf", &[])
}
