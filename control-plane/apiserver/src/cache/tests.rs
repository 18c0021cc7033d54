//! The cache's announced writes: taken only for the very bytes announced.

use serde_json::json;

use super::*;

fn pods() -> Arc<Cacher> {
    Cacher::new(
        crate::resources::lookup("", "v1", "pods").expect("served"),
        16,
    )
}

#[test]
fn an_announced_write_is_taken_for_its_own_bytes_only() {
    let cache = pods();
    let pod = json!({"metadata": {"name": "p", "resourceVersion": "3"}, "spec": {"n": 1.1}});
    let stored = crate::objects::to_stored(&pod).expect("stored");
    cache.expect_write("/registry/pods/d/p", &stored, pod.clone());
    // Other bytes under the key (another writer's): not taken, and the entry is gone.
    assert_eq!(
        cache.take_written("/registry/pods/d/p", b"{\"metadata\":{}}"),
        None
    );
    assert_eq!(cache.take_written("/registry/pods/d/p", &stored), None);

    cache.expect_write("/registry/pods/d/p", &stored, pod.clone());
    let taken = cache
        .take_written("/registry/pods/d/p", &stored)
        .expect("taken");
    // As the parse of the bytes would give: without the revision, the event brings it.
    assert_eq!(
        taken,
        serde_json::from_slice::<Value>(&stored).expect("JSON")
    );
    assert!(taken["metadata"].get("resourceVersion").is_none());
    // Taken once.
    assert_eq!(cache.take_written("/registry/pods/d/p", &stored), None);
}

#[test]
fn a_forgotten_write_is_parsed_and_the_announcements_are_bounded() {
    let cache = pods();
    let pod = json!({"metadata": {"name": "p"}});
    let stored = crate::objects::to_stored(&pod).expect("stored");
    cache.expect_write("/registry/pods/d/p", &stored, pod.clone());
    cache.forget_write("/registry/pods/d/p");
    assert_eq!(cache.take_written("/registry/pods/d/p", &stored), None);

    // Writes whose events never come (a failed write not forgotten) cannot grow it.
    for i in 0..WRITTEN_MAX + 100 {
        cache.expect_write(&format!("/registry/pods/d/p{i}"), &stored, pod.clone());
    }
    let held = cache.written.lock().expect("lock").len();
    assert_eq!(held, WRITTEN_MAX);
    // A key already held is still replaced when full.
    let newer = json!({"metadata": {"name": "p0", "labels": {"a": "b"}}});
    let newer_stored = crate::objects::to_stored(&newer).expect("stored");
    cache.expect_write("/registry/pods/d/p0", &newer_stored, newer.clone());
    assert_eq!(
        cache.take_written("/registry/pods/d/p0", &newer_stored),
        Some(newer)
    );
}

/// A transaction writes several objects at one revision: a list never sees that revision
/// with only some of them (each list's objects all carry its revision here, as every
/// revision rewrites both).
#[test]
fn a_revision_of_several_objects_is_seen_whole_or_not_at_all() {
    let cache = pods();
    cache.lock().ready = true;
    let stored = |name: &str, n: i64| {
        crate::objects::to_stored(&json!({"metadata": {"name": name, "namespace": "d"}, "n": n}))
            .expect("stored")
    };
    let change = |name: &str, n: i64| Change {
        kind: ChangeKind::Put,
        key: format!("/registry/pods/d/{name}"),
        value: stored(name, n).into(),
        mod_revision: n,
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut lists = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (items, revision) = cache.list("/registry/pods/").expect("ready");
                let revisions: Vec<&str> = items
                    .iter()
                    .filter_map(|o| o["metadata"]["resourceVersion"].as_str())
                    .collect();
                if !items.is_empty() {
                    assert_eq!(
                        revisions,
                        [revision.to_string(), revision.to_string()],
                        "a list at {revision} saw part of it"
                    );
                }
                lists += 1;
            }
            lists
        });
        for n in 1..=3000 {
            cache.apply_changes(vec![change("a", n), change("b", n)]);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().expect("the reader") > 0);
    });
    assert_eq!(cache.revision(), 3000);
    // A batch that changes nothing the cache holds (a delete of an unknown key) publishes no
    // new revision.
    cache.apply_changes(vec![Change {
        kind: ChangeKind::Delete,
        key: "/registry/pods/d/never".into(),
        value: bytes::Bytes::new(),
        mod_revision: 3001,
    }]);
    assert_eq!(cache.revision(), 3000);
}
