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
