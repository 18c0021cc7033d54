//! The storage seam's contract: the in-process backend and the gRPC one, over the same real
//! member, give every operation the same answer — each way a write can fail included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_apiserver::storage::backend::{ChangeKind, Watch, WatchMessage};
use keel_apiserver::storage::{Guard, Storage, StorageError};
use keel_store::etcd::MAX_REQUEST_BYTES;
use keel_store::member::MemberConfig;
use keel_store::server::{self, Listeners};
use keel_store::types::{Command, TxnOp, TxnRequest};

use super::*;

#[test]
fn the_size_counts_every_key_and_value_of_both_branches() {
    let txn = TxnRequest {
        compare: vec![compare(Condition::Absent("k".into()))],
        success: vec![write(Write::Put {
            key: "k".into(),
            value: vec![0; 100],
        })],
        failure: vec![check("k".into())],
    };
    assert_eq!(request_bytes(&txn), (1 + 16) + (1 + 100 + 8) + (1 + 8));
    let nested = TxnRequest {
        success: vec![TxnOp::Txn(txn.clone())],
        ..TxnRequest::default()
    };
    assert_eq!(request_bytes(&nested), request_bytes(&txn));
}

/// One word per answer, so that two backends' runs compare as lists.
fn outcome<T>(result: Result<T, StorageError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(StorageError::Exists) => "exists".into(),
        Err(StorageError::NotFound) => "not found".into(),
        Err(StorageError::Conflict) => "conflict".into(),
        Err(StorageError::Taken) => "taken".into(),
        Err(StorageError::Compacted { requested }) => format!("compacted {requested}"),
        Err(StorageError::Unavailable(message)) if message.contains("request is too large") => {
            "too large".into()
        }
        Err(StorageError::Unavailable(message)) => format!("unavailable: {message}"),
    }
}

/// Every operation the API server uses, each way it can end, under `/c/<name>/`.
async fn exercise(storage: &Storage, name: &str) -> Vec<String> {
    let key = |k: &str| format!("/c/{name}/{k}");
    let mut seen = Vec::new();
    let first = storage.create(&key("a"), b"one".to_vec()).await;
    let first_rev = *first.as_ref().expect("the first create");
    seen.push(outcome(first));
    seen.push(outcome(storage.create(&key("a"), b"again".to_vec()).await));
    let got = storage.get(&key("a")).await.expect("a get");
    let got = got.expect("the created key");
    assert_eq!(
        (got.key.as_str(), &got.value[..], got.mod_revision),
        (key("a").as_str(), b"one".as_slice(), first_rev)
    );
    seen.push(outcome(storage.get(&key("none")).await.map(|g| {
        assert!(g.is_none(), "{g:?}");
    })));
    // Updates: stale, current, of a key that never was.
    seen.push(outcome(
        storage
            .update(&key("a"), b"x".to_vec(), first_rev - 1)
            .await,
    ));
    let second = storage.update(&key("a"), b"two".to_vec(), first_rev).await;
    let second_rev = *second.as_ref().expect("the update");
    assert!(second_rev > first_rev);
    seen.push(outcome(second));
    seen.push(outcome(
        storage.update(&key("none"), b"x".to_vec(), 5).await,
    ));
    // Reservations: a marker held by one object refuses a second.
    let held = [key("res-1")];
    seen.push(outcome(
        storage
            .create_reserving(&key("b"), b"b".to_vec(), &held)
            .await,
    ));
    seen.push(outcome(
        storage
            .create_reserving(&key("c"), b"c".to_vec(), &held)
            .await,
    ));
    seen.push(outcome(
        storage
            .create_reserving(&key("a"), b"a".to_vec(), &[key("res-2")])
            .await,
    ));
    let marker = storage.get(&key("res-1")).await.expect("a get");
    assert_eq!(
        marker.map(|m| m.value.to_vec()),
        Some(key("b").into_bytes())
    );
    // A guard that moved.
    let guard = Guard {
        key: key("a"),
        value: b"quota".to_vec(),
        expected: first_rev,
    };
    seen.push(outcome(
        storage
            .create_guarded(&key("d"), b"d".to_vec(), &[], &[guard])
            .await,
    ));
    assert!(storage.get(&key("d")).await.expect("a get").is_none());
    // Taking a held marker, then trading one marker for another.
    let b_rev = storage
        .get(&key("b"))
        .await
        .expect("a get")
        .expect("b")
        .mod_revision;
    seen.push(outcome(
        storage
            .update_reserving(&key("b"), b"b2".to_vec(), b_rev, &held, &[])
            .await,
    ));
    let traded = storage
        .update_reserving(&key("b"), b"b2".to_vec(), b_rev, &[key("res-3")], &held)
        .await;
    let traded_rev = *traded.as_ref().expect("the trade");
    seen.push(outcome(traded));
    assert!(storage.get(&key("res-1")).await.expect("a get").is_none());
    assert!(storage.get(&key("res-3")).await.expect("a get").is_some());
    seen.push(outcome(
        storage
            .update_reserving(&key("b"), b"b3".to_vec(), b_rev, &[], &[])
            .await,
    ));
    seen.push(outcome(
        storage
            .update_reserving(&key("gone"), b"x".to_vec(), 1, &[], &[])
            .await,
    ));
    // Deletes: stale, current (with its marker), again.
    seen.push(outcome(storage.delete(&key("a"), first_rev).await));
    seen.push(outcome(storage.delete(&key("a"), second_rev).await));
    seen.push(outcome(storage.delete(&key("a"), second_rev).await));
    seen.push(outcome(
        storage
            .delete_releasing(&key("b"), traded_rev, &[key("res-3")])
            .await,
    ));
    assert!(storage.get(&key("res-3")).await.expect("a get").is_none());
    // Lists: pages in key order, what remains after each, and a read at an older revision.
    for k in ["p/1", "p/2", "p/3"] {
        storage
            .create(&key(k), k.as_bytes().to_vec())
            .await
            .expect("a create");
    }
    let prefix = key("p/");
    let page = storage.list(&prefix, None, 2, 0).await.expect("a list");
    let keys: Vec<&str> = page.items.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, [key("p/1"), key("p/2")]);
    assert_eq!(page.remaining, 1);
    let rest = storage
        .list(&prefix, Some(&key("p/2")), 2, page.revision)
        .await
        .expect("the next page");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(
        (&rest.items[0].value[..], rest.remaining),
        (b"p/3".as_slice(), 0)
    );
    let before = storage
        .list(&prefix, None, 0, first_rev)
        .await
        .expect("a list in the past");
    assert!(before.items.is_empty(), "{:?}", before.items);
    assert!(storage.revision().await.expect("the revision") >= page.revision);
    // etcd's request size limit.
    seen.push(outcome(
        storage
            .create(&key("huge"), vec![b'x'; MAX_REQUEST_BYTES + 1])
            .await,
    ));
    seen
}

/// A watch message as one line: `put a+put b` for a revision's changes (keys relative to
/// `base`, values after `=`), `progress` for a progress notification at or past `at_least`.
fn render(message: WatchMessage, base: &str, at_least: i64) -> String {
    match message {
        WatchMessage::Changes(changes) => changes
            .iter()
            .map(|c| {
                let key = c.key.strip_prefix(base).unwrap_or(&c.key);
                match c.kind {
                    ChangeKind::Put => format!("put {key}={}", String::from_utf8_lossy(&c.value)),
                    ChangeKind::Delete => format!("delete {key}"),
                }
            })
            .collect::<Vec<_>>()
            .join("+"),
        WatchMessage::Progress(revision) if revision >= at_least => "progress".into(),
        WatchMessage::Progress(revision) => format!("stale progress {revision} < {at_least}"),
    }
}

async fn next_line(watch: &mut Box<dyn Watch>, base: &str, at_least: i64) -> String {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Ok(Some(message))) => render(message, base, at_least),
        Ok(Ok(None)) => "ended".into(),
        Ok(Err(e)) => outcome::<()>(Err(e)),
        Err(_) => "nothing within 10 s".into(),
    }
}

/// A watch's live changes (a revision of two keys arriving as one message), its progress
/// notification, and a second watch replaying the same history from the first revision
/// (joined into one line: how a replay groups revisions into messages is the backend's).
async fn watch_script(storage: &Storage, name: &str) -> Vec<String> {
    let base = format!("/w/{name}/");
    let key = |k: &str| format!("{base}{k}");
    let from = storage.revision().await.expect("the revision") + 1;
    let mut live = storage.watch(&base, from).await.expect("a watch");
    storage.create(&key("a"), b"1".to_vec()).await.expect("a");
    let b = storage
        .create_reserving(&key("b"), b"2".to_vec(), &[key("b-marker")])
        .await
        .expect("b");
    let a = storage.get(&key("a")).await.expect("a get").expect("a");
    storage
        .update(&key("a"), b"3".to_vec(), a.mod_revision)
        .await
        .expect("an update");
    storage.delete(&key("b"), b).await.expect("a delete");
    // Outside the prefix: never reported.
    storage
        .create(&format!("/w/{name}-elsewhere"), b"x".to_vec())
        .await
        .expect("a create");
    let last = storage.revision().await.expect("the revision");
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_line(&mut live, &base, 0).await);
    }
    live.request_progress().await.expect("a progress request");
    seen.push(next_line(&mut live, &base, last).await);
    // A replay may carry several revisions per message (etcd batches them), never part of one.
    let mut replay = storage.watch(&base, from).await.expect("a replaying watch");
    let mut replayed: Vec<String> = Vec::new();
    let changes = |lines: &[String]| lines.iter().map(|l| l.split('+').count()).sum::<usize>();
    while changes(&replayed) < 5 {
        let line = next_line(&mut replay, &base, 0).await;
        let done = !line.starts_with("put") && !line.starts_with("delete");
        replayed.push(line);
        if done {
            break;
        }
    }
    seen.push(replayed.join("+"));
    seen
}

async fn start_member(dir: &std::path::Path) -> server::Running {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let listeners = Listeners::bind(any, any, None)
        .await
        .expect("loopback ports");
    let peer = format!("http://{}", listeners.peer.local_addr().expect("a port"));
    let client = format!("http://{}", listeners.client.local_addr().expect("a port"));
    let config = MemberConfig::new("contract", dir.to_path_buf(), &peer, &client);
    let running = server::start(config, listeners).await.expect("a member");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running.member.is_leader() {
        assert!(Instant::now() < deadline, "the member never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_answer_every_operation_alike() {
    let dir = tempfile::tempdir().expect("a data directory");
    let running = start_member(dir.path()).await;
    let endpoints = vec![format!("http://{}", running.client_addr)];
    let over_grpc = Storage::connect(&endpoints)
        .await
        .expect("the gRPC backend");
    let in_process = Storage::with_backend(Arc::new(EmbeddedKv::new(running.member.clone())));

    let expected = [
        "ok",
        "exists",
        "ok", // create, create again, get of a missing key
        "conflict",
        "ok",
        "not found", // update: stale, current, missing
        "ok",
        "taken",
        "exists",   // create_reserving: new marker, held one, existing key
        "conflict", // create_guarded with a moved guard
        "taken",
        "ok",
        "conflict",
        "not found", // update_reserving
        "conflict",
        "ok",
        "not found",
        "ok", // deletes
        "too large",
    ];
    let grpc = exercise(&over_grpc, "grpc").await;
    assert_eq!(grpc, expected, "over gRPC");
    let local = exercise(&in_process, "in-process").await;
    assert_eq!(local, expected, "in process");

    let history = [
        "put a=1",
        "put b=2+put b-marker=/w/NAME/b",
        "put a=3",
        "delete b",
    ];
    for (name, storage) in [("grpc", &over_grpc), ("in-process", &in_process)] {
        let history: Vec<String> = history.iter().map(|h| h.replace("NAME", name)).collect();
        let mut expected = history.clone();
        expected.push("progress".into());
        expected.push(history.join("+"));
        assert_eq!(watch_script(storage, name).await, expected, "{name}");
    }

    // A read at a compacted revision, through each.
    let revision = in_process.revision().await.expect("the revision");
    let compacted = running
        .member
        .propose(Command::Compact { revision })
        .await
        .expect("a compaction");
    assert!(compacted.outcome.is_ok(), "{compacted:?}");
    for (name, storage) in [("over gRPC", &over_grpc), ("in process", &in_process)] {
        let old = storage.list("/c/", None, 0, 2).await;
        assert_eq!(outcome(old), "compacted 2", "{name}");
        // etcd's Watch service creates the watch and then cancels it; the member refuses it
        // at once: either way its follower learns the revision is gone.
        let watched = match storage.watch("/c/", 2).await {
            Ok(mut watch) => next_line(&mut watch, "/c/", 0).await,
            Err(e) => outcome::<()>(Err(e)),
        };
        assert_eq!(watched, "compacted 2", "{name}");
    }
    running.stop().await;
}
