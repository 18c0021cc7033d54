//! The real `keelctl` binary against real `control-plane` processes on loopback: status and
//! membership, a snapshot saved from one member and restored into a new one, and a node's
//! kubeconfig used against the API server.
//!
//! `control-plane` is found beside the test binary (`keel_lab::bin`); `cargo xtask test`
//! builds the whole workspace first. Alone: `cargo build -p keel-control-plane --bin
//! control-plane && cargo test -p keel-keelctl`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use keel_lab::{Child, Placement};
use support::{client, control_plane, etcd, free_addr, keelctl, runtime, Member};

#[test]
fn usage_errors_exit_2_and_help_and_completion_exit_0() {
    let help = keelctl(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("snapshot"));
    let bad = keelctl(&["member", "add", "", "--peer-urls", "http://127.0.0.1:1"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    // Several groups are fine; each must be a name.
    let groups = keelctl(&["kubeconfig", "--user", "u1", "--groups", "a,b c"]);
    assert_eq!(groups.status.code(), Some(2), "{groups:?}");
    assert!(String::from_utf8_lossy(&groups.stderr).contains("\"b c\""));
    for shell in ["bash", "zsh", "fish"] {
        let out = keelctl(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("keelctl"));
    }
    // Nobody listens there: a failure (1), quickly, not a hang.
    let started = Instant::now();
    let out = keelctl(&[
        "--endpoints",
        &format!("http://{}", free_addr()),
        "--command-timeout",
        "1s",
        "cluster",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn status_and_membership_of_one_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m0 = Member::start("m0", &dir.path().join("m0"), &[]);
    let rows = m0.wait_leader();
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "m0");
    assert_eq!(rows[0]["healthy"], true);
    assert_eq!(rows[0]["client_url"], m0.endpoint());
    assert!(rows[0]["raft_term"].as_u64().is_some_and(|t| t >= 1));
    let id = rows[0]["id"].as_str().expect("an id").to_owned();

    let table = m0.keelctl_ok(&["cluster", "status"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("NAME   ID "), "{table}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[0], "m0", "{table}");
    assert_eq!(cells[1], id, "{table}");
    assert_eq!(cells[3], "true", "leader: {table}");
    assert_eq!(cells.last().copied(), Some("true"), "healthy: {table}");

    let list: serde_json::Value =
        serde_json::from_str(&m0.keelctl_ok(&["member", "list", "-o", "json"])).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "started");
    assert_eq!(list[0]["peer_urls"][0], format!("http://{}", m0.peer));

    // A learner that never starts: listed, a status row with its error, then removed.
    let learner_url = format!("http://{}", free_addr());
    let added = m0.keelctl_ok(&[
        "member",
        "add",
        "m1",
        "--peer-urls",
        &learner_url,
        "--learner",
    ]);
    assert!(added.contains("as a learner"), "{added}");
    // Every member under its name, in the server's order (by id).
    let initial = added
        .lines()
        .find_map(|l| l.trim().strip_prefix("--initial-cluster="))
        .expect("an --initial-cluster line");
    let mut entries: Vec<&str> = initial.split(',').collect();
    entries.sort_unstable();
    assert_eq!(
        entries,
        [
            format!("m0=http://{}", m0.peer),
            format!("m1={learner_url}")
        ],
        "{added}"
    );
    let table = m0.keelctl_ok(&["member", "list"]);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("unstarted"), "{table}");
    let status = m0.keelctl(&["cluster", "status", "--command-timeout", "2s"]);
    assert!(status.status.success(), "one member answered: {status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.lines().next().is_some_and(|h| h.ends_with("ERROR")),
        "{text}"
    );
    assert!(text.contains("not started"), "{text}");

    let learner_id = text
        .lines()
        .find(|l| l.contains("not started"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the learner's row")
        .to_owned();
    let removed = m0.keelctl_ok(&["member", "remove", &learner_id]);
    assert!(
        removed.starts_with(&format!("Member {learner_id} removed")),
        "{removed}"
    );
    // The member list is raft's published membership, which may trail the removal a little.
    let deadline = Instant::now() + Duration::from_secs(5);
    while m0.keelctl_ok(&["member", "list"]).lines().count() != 2 {
        assert!(Instant::now() < deadline, "the learner is still listed");
        std::thread::sleep(Duration::from_millis(100));
    }

    let missing = m0.keelctl(&["member", "remove", "no-such-member"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no member has"));
}

#[test]
fn a_saved_snapshot_restores_into_a_new_member_with_the_same_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let m0 = Member::start("m0", &dir.path().join("m0"), &[]);
    m0.wait_leader();
    let keys: Vec<(String, String)> = (0..20)
        .map(|i| (format!("/registry/things/t{i:02}"), format!("value {i}")))
        .collect();
    let revision = rt.block_on(async {
        let mut client = etcd(&m0.endpoint()).await;
        let mut revision = 0;
        for (k, v) in &keys {
            let put = client.put(k.as_str(), v.as_str(), None).await.expect("put");
            revision = put.header().map_or(0, |h| h.revision());
        }
        client
            .delete("/registry/things/t00", None)
            .await
            .expect("delete");
        revision
    });

    let file = dir.path().join("backup.snap");
    let saved = m0.keelctl_ok(&["snapshot", "save", file.to_str().expect("utf-8")]);
    assert!(saved.starts_with("Snapshot saved at"), "{saved}");
    assert!(saved.contains("19 keys"), "{saved}");
    assert!(file.exists() && !dir.path().join("backup.snap.part").exists());

    // The new member: its own name, directory and peer URL.
    let restored_dir = dir.path().join("r0");
    let peer = free_addr();
    let peer_url = format!("http://{peer}");
    let out = keelctl(&[
        "snapshot",
        "restore",
        file.to_str().expect("utf-8"),
        "--data-dir",
        restored_dir.to_str().expect("utf-8"),
        "--name",
        "r0",
        "--initial-advertise-peer-urls",
        &peer_url,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("19 keys"));
    // Not twice into the same directory.
    let again = keelctl(&[
        "snapshot",
        "restore",
        file.to_str().expect("utf-8"),
        "--data-dir",
        restored_dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // A file that is not a snapshot.
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"definitely not a snapshot").expect("written");
    let refused = keelctl(&[
        "snapshot",
        "restore",
        garbage.to_str().expect("utf-8"),
        "--data-dir",
        dir.path().join("g").to_str().expect("utf-8"),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a keel snapshot"));

    drop(m0);
    let mut command = Command::new(control_plane());
    command
        .args(["--name", "r0", "--data-dir"])
        .arg(&restored_dir)
        .args(["--listen-peer", &peer.to_string()]);
    let client = free_addr();
    command.args(["--listen-client", &client.to_string()]);
    command.env("RUST_LOG", "info,openraft=warn");
    let mut r0 = Child::spawn("r0", command, &Placement::default()).expect("r0 starts");
    if let Err(e) = r0.wait_for_line("serving etcd's v3 API", Duration::from_secs(30)) {
        panic!("r0 did not start: {e}\n{}", r0.output().join("\n"));
    }
    let r0 = Member {
        client,
        peer,
        data_dir: restored_dir,
        process: r0,
    };
    r0.wait_leader();
    rt.block_on(async {
        let mut client = etcd(&r0.endpoint()).await;
        let all = client
            .get(
                "/registry/things/",
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .expect("a range");
        let got: Vec<(String, String)> = all
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap_or_default().to_owned(),
                    kv.value_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, keys[1..].to_vec());
        // Revisions carry on after the backup's.
        let put = client
            .put("/after", "restore", None)
            .await
            .expect("a write");
        assert!(put.header().map_or(0, |h| h.revision()) > revision + 1);
    });
    let list: serde_json::Value =
        serde_json::from_str(&r0.keelctl_ok(&["member", "list", "-o", "json"])).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["peer_urls"][0], peer_url.as_str());
    assert!(r0.data_dir.join("raft-log").exists());
}

#[test]
fn a_node_kubeconfig_is_authorized_as_that_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("m0");
    let (m0, api) = Member::start_with_api("m0", &data_dir);
    let path = dir.path().join("n1.kubeconfig");
    let out = m0.keelctl(&[
        "kubeconfig",
        "--user",
        "system:node:n1",
        "--group",
        "system:nodes",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "-o",
        path.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // Without a CA: refused, and none is made.
    let elsewhere = dir.path().join("elsewhere");
    let refused = keelctl(&[
        "kubeconfig",
        "--user",
        "system:node:n1",
        "--server",
        &format!("https://{api}"),
        "--data-dir",
        elsewhere.to_str().expect("utf-8"),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(!elsewhere.exists());

    runtime().block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("it reads");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("a kube-rs config");
        let url = config.cluster_url.to_string();
        assert!(url.starts_with(&format!("https://{api}")), "{url}");
        let client = kube::Client::try_from(config).expect("a client");
        use k8s_openapi::api::core::v1::{Node, Secret};
        let nodes: kube::Api<Node> = kube::Api::all(client.clone());
        nodes
            .list(&Default::default())
            .await
            .expect("a node may list nodes");
        let secrets: kube::Api<Secret> = kube::Api::all(client);
        match secrets.list(&Default::default()).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
            other => panic!("a node listed every secret: {other:?}"),
        }
    });
}

/// `keelctl get | delete | logs` against a member's API with its admin kubeconfig: the
/// server's own columns, `-o wide|name|json|yaml`, `-A`, selectors, kubectl's words for what
/// is missing or unknown, and hostile names kept in one path segment.
#[test]
fn get_delete_and_logs_speak_the_kubernetes_api_as_kubectl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("m0");
    let (m0, _api) = Member::start_with_api("m0", &data_dir);
    let admin = data_dir.join("admin.kubeconfig");
    let kubeconfig = admin.to_str().expect("utf-8");
    runtime().block_on(async {
        let client = client(&admin).await;
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(client.clone());
        namespaces
            .create(
                &Default::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": "shop"}}))
                    .expect("ns"),
            )
            .await
            .expect("create namespace");
        for (ns, name, tier) in [
            ("default", "web", "fe"),
            ("default", "db", "be"),
            ("shop", "cart", "fe"),
        ] {
            let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                kube::Api::namespaced(client.clone(), ns);
            maps.create(
                &Default::default(),
                &serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {"tier": tier}},
                    "data": {"k": "v"}}))
                .expect("cm"),
            )
            .await
            .expect("create configmap");
        }
    });
    let run = |args: &[&str]| keelctl(&[args, &["--kubeconfig", kubeconfig]].concat());
    let ok = |args: &[&str]| m0.keelctl_api_ok(kubeconfig, args);

    let table = ok(&["get", "configmaps"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("DATA") && lines[0].ends_with("AGE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("db ") && lines[2].starts_with("web "),
        "{table}"
    );
    let everywhere = ok(&["get", "cm", "-A", "-l", "tier=fe"]);
    assert!(everywhere.starts_with("NAMESPACE"), "{everywhere}");
    assert!(
        everywhere.contains("shop") && everywhere.contains("cart"),
        "{everywhere}"
    );
    assert!(
        !everywhere.contains("db"),
        "the selector holds: {everywhere}"
    );
    assert_eq!(
        ok(&["get", "configmap", "web", "-o", "name"]),
        "configmap/web\n"
    );
    let one: serde_json::Value = serde_json::from_str(&ok(&[
        "get",
        "ConfigMap",
        "cart",
        "-n",
        "shop",
        "-o",
        "json",
    ]))
    .expect("JSON");
    assert_eq!(one["data"]["k"], "v");
    let list: serde_json::Value =
        serde_yaml_ng::from_str(&ok(&["get", "cm", "-o", "yaml"])).expect("YAML");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    assert!(ok(&["get", "namespaces"]).contains("shop"));

    // Nothing found: kubectl's line on stderr, success.
    let none = run(&["get", "pods"]);
    assert!(none.status.success());
    assert_eq!(
        String::from_utf8_lossy(&none.stderr).trim(),
        "No resources found in default namespace."
    );
    // A missing object, an unknown kind, a hostile name: exit 1 with the server's words.
    for (args, words) in [
        (
            &["get", "cm", "nope"][..],
            "Error from server (NotFound): configmaps \"nope\" not found",
        ),
        (
            &["get", "widgets"][..],
            "the server doesn't have a resource type \"widgets\"",
        ),
        (&["get", "cm", "../../secrets"][..], "Error from server ("),
        (
            &["delete", "cm", "nope"][..],
            "Error from server (NotFound)",
        ),
        (
            &["logs", "nope"][..],
            "Error from server (NotFound): pods \"nope\" not found",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
    // No name to delete: refused before anything is asked.
    let out = run(&["delete", "cm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no name was specified"));
    assert_eq!(ok(&["get", "cm/web", "-o", "name"]), "configmap/web\n");

    assert_eq!(
        ok(&["delete", "cm", "web", "db"]),
        "configmap \"web\" deleted\nconfigmap \"db\" deleted\n"
    );
    assert_eq!(ok(&["get", "cm", "-o", "name"]), "");
}
