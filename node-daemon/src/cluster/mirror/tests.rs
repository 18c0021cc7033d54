use std::path::PathBuf;

use super::*;

fn static_pod(name: &str, image: &str) -> DesiredPod {
    let pod: keel_api::Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"tier": "node"}},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }))
    .expect("a pod");
    DesiredPod::new(pod, PathBuf::from("/etc/keel/manifests/static.yaml"))
}

fn api_pod(name: &str, uid: &str, mirror_of: Option<&str>, deleting: bool) -> Arc<Pod> {
    let mut object = json!({
        "metadata": {"name": name, "namespace": "kube-system", "uid": uid},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
    });
    if let Some(of) = mirror_of {
        object["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: of});
    }
    if deleting {
        object["metadata"]["deletionTimestamp"] = json!("2026-12-02T00:00:00Z");
    }
    Arc::new(serde_json::from_value(object).expect("a pod"))
}

#[test]
fn a_mirror_is_the_static_pod_bound_here_owned_by_the_node() {
    let desired = static_pod("proxy", "busybox");
    let mirror = mirror_object(&desired, "n1", "node-uid").expect("a mirror");
    assert_eq!(mirror.name_any(), "proxy-n1");
    assert_eq!(mirrored_uid(&mirror), Some(desired.uid.as_str()));
    let annotations = mirror.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations[HASH_ANNOTATION], desired.uid);
    assert_eq!(annotations[SOURCE_ANNOTATION], "file");
    assert_eq!(mirror.labels()["tier"], "node");
    let owner = &mirror.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Node", "n1", "node-uid")
    );
    assert_eq!(owner.controller, Some(true));
    let spec = mirror.spec.expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some("n1"));
    assert_eq!(spec.containers[0].image.as_deref(), Some("busybox"));
    assert!(
        mirror.metadata.uid.is_none(),
        "the API server assigns the uid"
    );
}

#[test]
fn missing_mirrors_are_made_and_changed_or_orphaned_ones_deleted() {
    let web = static_pod("web", "busybox");
    let db = static_pod("db", "busybox");
    let existing = vec![
        // web's mirror is current.
        api_pod("web-n1", "m1", Some(&web.uid), false),
        // an old version of db's static pod.
        api_pod("db-n1", "m2", Some("stale-hash"), false),
        // a static pod that is gone.
        api_pod("old-n1", "m3", Some("gone"), false),
        // an ordinary pod bound here: not ours to touch.
        api_pod("app", "p1", None, false),
    ];
    let (plan, problems) = plan(&[web, db], &existing, "n1", "node-uid");
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        plan.create.is_empty(),
        "db waits until its stale mirror is gone"
    );
    let deleted: Vec<(&str, &str)> = plan
        .delete
        .iter()
        .map(|(_, name, uid)| (name.as_str(), uid.as_str()))
        .collect();
    assert_eq!(deleted, [("db-n1", "m2"), ("old-n1", "m3")]);

    let db = static_pod("db", "busybox");
    let (plan, _) = plan_for(std::slice::from_ref(&db), &[]);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].0, "kube-system");
    assert_eq!(plan.create[0].1.name_any(), "db-n1");
}

fn plan_for(statics: &[DesiredPod], existing: &[Arc<Pod>]) -> (Plan, Vec<String>) {
    plan(statics, existing, "n1", "node-uid")
}

#[test]
fn a_mirror_being_deleted_is_replaced_once_gone_and_a_taken_name_is_reported() {
    let web = static_pod("web", "busybox");
    let deleting = vec![api_pod("web-n1", "m1", Some(&web.uid), true)];
    let (plan, problems) = plan_for(std::slice::from_ref(&web), &deleting);
    assert_eq!((plan, problems.len()), (Plan::default(), 0));
    let taken = vec![api_pod("web-n1", "p9", None, false)];
    let (plan, problems) = plan_for(&[web], &taken);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert!(problems[0].contains("not a mirror pod"), "{problems:?}");
    // A name that cannot be a pod's: reported, not sent.
    let long = static_pod(&"x".repeat(251), "busybox");
    let (plan, problems) = plan_for(&[long], &[]);
    assert!(plan.create.is_empty());
    assert!(problems[0].contains("mirror pod name"), "{problems:?}");
}

#[test]
fn nothing_is_deleted_for_a_node_without_static_pods() {
    let existing = vec![api_pod("app", "p1", None, false)];
    let (plan, problems) = plan_for(&[], &existing);
    assert_eq!((plan, problems.len()), (Plan::default(), 0));
}
