//! Debian's `etcdctl` (etcd 3.4's own client, nobody here wrote it) against one keel store
//! member: every command an operator would type, its output checked as etcdctl prints it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{etcdctl, Cluster};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoint, args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(endpoint: &str, args: &[&str], expected: &str) {
    let out = etcdctl(endpoint, args);
    assert!(!out.status.success(), "etcdctl {args:?} should fail");
    assert!(
        text(&out).contains(expected),
        "etcdctl {args:?}: expected {expected:?} in {}",
        text(&out)
    );
}

fn txn(endpoint: &str, script: &str) -> String {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    let out = child.wait_with_output().expect("etcdctl txn");
    assert!(out.status.success(), "etcdctl txn failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn revision_of(endpoint: &str, key: &str) -> i64 {
    let json = ok(endpoint, &["get", key, "-w", "json"]);
    let field = "\"mod_revision\":";
    let at = json.find(field).expect("a mod_revision") + field.len();
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[test]
fn etcdctl_drives_the_store() {
    let cluster = Cluster::loopback(1, &[]);
    let ep = cluster.members[0].client.to_string();
    let ep = ep.as_str();

    // put / get / del
    assert_eq!(ok(ep, &["put", "/a", "1"]), "OK\n");
    assert_eq!(ok(ep, &["put", "/a", "2"]), "OK\n");
    assert_eq!(ok(ep, &["put", "/b", "x"]), "OK\n");
    assert_eq!(ok(ep, &["get", "--prefix", "/"]), "/a\n2\n/b\nx\n");
    let json = ok(ep, &["get", "/a", "-w", "json"]);
    assert!(json.contains("\"version\":2"), "{json}");
    assert!(json.contains("\"count\":1"), "{json}");
    assert_eq!(
        ok(ep, &["get", "/", "--prefix", "--keys-only", "--limit", "1"]),
        "/a\n\n"
    );
    assert!(ok(
        ep,
        &["get", "/", "--prefix", "--limit", "1", "-w", "fields"]
    )
    .contains("\"Count\" : 2"));
    assert!(ok(
        ep,
        &["get", "/", "--prefix", "--limit", "1", "-w", "fields"]
    )
    .contains("\"More\" : true"));
    assert_eq!(ok(ep, &["del", "/b"]), "1\n");
    assert_eq!(ok(ep, &["del", "/b"]), "0\n");

    // txn: compare on the mod revision (the API server's optimistic concurrency)
    let rev = revision_of(ep, "/a");
    let won = txn(
        ep,
        &format!("mod(\"/a\") = \"{rev}\"\n\nput /a 3\n\nput /a lost\n\n"),
    );
    assert_eq!(won, "SUCCESS\n\nOK\n");
    let lost = txn(
        ep,
        &format!("mod(\"/a\") = \"{rev}\"\n\nput /a 4\n\nget /a\n\n"),
    );
    assert_eq!(lost, "FAILURE\n\n/a\n3\n");

    // watch: live, and replayed from a revision
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={ep}"))
        .args(["watch", "--prefix", "/w/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl watch");
    std::thread::sleep(Duration::from_millis(500));
    ok(ep, &["put", "/w/1", "v1"]);
    ok(ep, &["del", "/w/1"]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        seen, "PUT\n/w/1\nv1\nDELETE\n/w/1\n\n",
        "live watch saw: {seen}"
    );
    let replay = Command::new("timeout")
        .args([
            "2",
            "etcdctl",
            &format!("--endpoints={ep}"),
            "watch",
            "--rev",
            "1",
            "/a",
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("etcdctl watch --rev");
    let replayed = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(
        replayed, "PUT\n/a\n1\nPUT\n/a\n2\nPUT\n/a\n3\n",
        "replay saw: {replayed}"
    );

    // leases: grant, attach, time-to-live, keep-alive, revoke, expiry
    let granted = ok(ep, &["lease", "grant", "30"]);
    let id = granted
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_owned();
    assert_eq!(granted, format!("lease {id} granted with TTL(30s)\n"));
    ok(ep, &["put", "--lease", &id, "/leased", "v"]);
    let ttl = ok(ep, &["lease", "timetolive", "--keys", &id]);
    assert!(
        ttl.contains("granted with TTL(30s)") && ttl.contains("attached keys([/leased])"),
        "{ttl}"
    );
    let kept = ok(ep, &["lease", "keep-alive", "--once", &id]);
    assert_eq!(kept, format!("lease {id} keepalived with TTL(30)\n"));
    assert!(ok(ep, &["lease", "list"]).contains(&id));
    assert_eq!(
        ok(ep, &["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert_eq!(ok(ep, &["get", "/leased"]), "");
    fails(ep, &["lease", "revoke", &id], "requested lease not found");
    let short = ok(ep, &["lease", "grant", "2"]);
    let short = short
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_owned();
    ok(ep, &["put", "--lease", &short, "/expiring", "v"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(ep, &["get", "/expiring"]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "a 2 s lease did not expire within 10 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let expired = ok(ep, &["lease", "timetolive", &short]);
    assert_eq!(expired, format!("lease {short} already expired\n"));

    // membership and status
    let members = ok(ep, &["member", "list"]);
    let member = &cluster.members[0];
    assert!(
        members.contains(&format!(
            ", started, m0, {}, {}, false",
            member.peer_url(),
            member.endpoint()
        )),
        "{members}"
    );
    // Membership changes the cluster's state forbids, each refused with etcd's words.
    let own_id = format!("{:x}", statuses(ep)[0].0);
    fails(
        ep,
        &["member", "add", "again", "--peer-urls", &member.peer_url()],
        "Peer URLs already exists",
    );
    fails(
        ep,
        &["member", "promote", &own_id],
        "can only promote a learner member",
    );
    fails(ep, &["member", "remove", "abcdef"], "member not found");
    // The only voter: raft's refusal, named as one, not "not leader".
    fails(
        ep,
        &["member", "remove", &own_id],
        "membership change refused",
    );
    let status = ok(ep, &["endpoint", "status"]);
    assert!(
        status.contains("3.4.0+keel") && status.contains(", true, false,"),
        "{status}"
    );
    let health = etcdctl(ep, &["endpoint", "health"]);
    assert!(text(&health).contains("is healthy"), "{}", text(&health));

    // The calls etcdctl makes to one endpoint at a time, with the endpoint written as a URL:
    // etcd 3.4's client then sends `http://…` as the HTTP/2 `:authority`, which h2 alone
    // resets (authority-repair mends it).
    let url = cluster.members[0].endpoint();
    let status = ok(&url, &["endpoint", "status"]);
    assert!(
        status.starts_with(&format!("{url}, ")) && status.contains(", true, false,"),
        "{status}"
    );
    let hashkv = ok(&url, &["endpoint", "hashkv"]);
    assert!(hashkv.starts_with(&format!("{url}, ")), "{hashkv}");
    let defrag = ok(&url, &["defrag"]);
    assert!(defrag.contains("Finished defragmenting"), "{defrag}");
    // `snapshot save` keeps only a download shaped like etcd's (32 bytes over a multiple of
    // 512); the file is keel's backup, which keel's own reader takes back.
    let dir = tempfile::tempdir().expect("a scratch directory");
    let file = dir.path().join("backup.db");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let saved = ok(&url, &["snapshot", "save", file_arg]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    let summary = keel_store::backup::inspect(&file).expect("a keel backup");
    assert_eq!(summary.bytes % 512, 32, "{summary:?}");
    assert!(summary.revision >= revision_of(ep, "/a"), "{summary:?}");
    assert!(summary.keys >= 1, "{summary:?}");

    // compaction: older revisions are gone for reads and watches
    let now = revision_of(ep, "/a");
    assert_eq!(
        ok(ep, &["compaction", &now.to_string()]),
        format!("compacted revision {now}\n")
    );
    fails(
        ep,
        &["get", "/a", "--rev", "2"],
        "required revision has been compacted",
    );
    let compacted_watch = Command::new("timeout")
        .args([
            "3",
            "etcdctl",
            &format!("--endpoints={ep}"),
            "watch",
            "--rev",
            "2",
            "/a",
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("etcdctl watch");
    assert!(
        text(&compacted_watch).contains("compacted"),
        "{}",
        text(&compacted_watch)
    );

    // bad input: each refused with etcd's message, the member stays healthy
    fails(ep, &["put", "", "x"], "key is not provided");
    fails(
        ep,
        &["get", "/a", "--rev", "999999"],
        "required revision is a future revision",
    );
    // etcdctl reads a value from stdin when none is given (an argument this long would not
    // pass exec).
    let mut put_big = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={ep}"))
        .args(["put", "/big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl put");
    put_big
        .stdin
        .take()
        .expect("stdin")
        .write_all("x".repeat(1_600_000).as_bytes())
        .expect("value");
    let out = put_big.wait_with_output().expect("etcdctl put");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("request is too large"),
        "{}",
        text(&out)
    );
    fails(ep, &["lease", "revoke", "123"], "requested lease not found");
    // What keel does not serve is named, with why, not an empty "Unimplemented".
    fails(
        ep,
        &["user", "list"],
        "etcdserverpb.Auth/UserList is not served: keel's store has no users, roles or authentication",
    );
    fails(
        ep,
        &["auth", "enable"],
        "etcdserverpb.Auth/AuthEnable is not served",
    );
    assert_eq!(ok(ep, &["put", "/after", "ok"]), "OK\n");
    assert_eq!(ok(ep, &["get", "/after", "--print-value-only"]), "ok\n");
}

/// `(member id, leader id)` as each endpoint reports it in `endpoint status`; leader 0 while a
/// member knows none (proto3's JSON leaves a zero out).
fn statuses(endpoints: &str) -> Vec<(u64, u64)> {
    let json = ok(endpoints, &["endpoint", "status", "-w", "json"]);
    let all: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    all.as_array()
        .expect("one status per endpoint")
        .iter()
        .map(|s| {
            let status = &s["Status"];
            (
                status["header"]["member_id"].as_u64().expect("member_id"),
                status["leader"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until every endpoint names the same leader; that leader.
fn agreed_leader(endpoints: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = statuses(endpoints);
        let leader = seen[0].1;
        if leader != 0 && seen.iter().all(|&(_, l)| l == leader) {
            return leader;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn etcdctl_moves_leadership_between_three_members() {
    let cluster = Cluster::loopback(3, &[]);
    let all = cluster.endpoints().join(",");
    let leader = agreed_leader(&all);
    let members: Vec<u64> = statuses(&all).iter().map(|&(id, _)| id).collect();
    let target = *members
        .iter()
        .find(|&&id| id != leader)
        .expect("a follower");

    // etcdctl finds the leader among the endpoints and asks it to hand over.
    let moved = ok(&all, &["move-leader", &format!("{target:x}")]);
    assert_eq!(
        moved,
        format!("Leadership transferred from {leader:x} to {target:x}\n")
    );
    assert_eq!(agreed_leader(&all), target);
    assert_eq!(ok(&all, &["put", "/after-move", "ok"]), "OK\n");
    assert_eq!(
        ok(&all, &["get", "/after-move", "--print-value-only"]),
        "ok\n"
    );

    // To itself: nothing to do, as etcd answers.
    let same = ok(&all, &["move-leader", &format!("{target:x}")]);
    assert!(same.contains(&format!("to {target:x}")), "{same}");
    // Not a member.
    fails(&all, &["move-leader", "abc"], "bad leader transferee");
    // Only followers named: etcdctl finds no leader to ask.
    let followers: Vec<String> = cluster
        .members
        .iter()
        .zip(&members)
        .filter(|(_, &id)| id != target)
        .map(|(m, _)| m.endpoint())
        .collect();
    fails(
        &followers.join(","),
        &["move-leader", &format!("{leader:x}")],
        "no leader endpoint given",
    );
    // A client that asks a follower anyway is told it is not the leader.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([followers[0].as_str()], None)
            .await
            .expect("connect");
        let refused = client.move_leader(leader).await.expect_err("refused");
        assert!(
            refused.to_string().contains("etcdserver: not leader"),
            "{refused}"
        );
    });
    assert_eq!(agreed_leader(&all), target);
}
