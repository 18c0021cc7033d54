use super::*;
use serde_json::json;

#[test]
fn decode_keeps_every_schema_field_and_reports_unknown_ones() {
    let pods = lookup("", "v1", "pods").expect("pods served");
    let decoded = (pods.decode)(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "bogus": 1},
        "spec": {"containers": [{"name": "c", "image": "i", "stdinOnce": true, "zzz": "x"}],
                 "priorityClassName": "high"}
    }))
    .expect("decodes");
    assert_eq!(decoded.object["spec"]["priorityClassName"], "high");
    assert_eq!(decoded.object["spec"]["containers"][0]["stdinOnce"], true);
    assert_eq!(decoded.object["kind"], "Pod");
    assert_eq!(
        decoded.unknown,
        vec!["metadata.bogus", "spec.containers[0].zzz"]
    );
}

#[test]
fn decode_names_the_field_of_a_type_error() {
    let deployments = lookup("apps", "v1", "deployments").expect("served");
    let error = (deployments.decode)(json!({"spec": {"replicas": "three"}}))
        .expect_err("a string is not an int32");
    assert_eq!(error.path, "spec.replicas");
    assert!(error.message.contains("invalid type"), "{}", error.message);
}

#[test]
fn both_event_versions_are_one_stored_resource() {
    let core = lookup("", "v1", "events").expect("served");
    let events = lookup("events.k8s.io", "v1", "events").expect("served");
    assert_eq!(events.key("ns", "e"), core.key("ns", "e"));
    assert_eq!(events.key("ns", "e"), "/registry/events/ns/e");
    assert!(std::ptr::eq(events.storage_resource(), core));
    assert!(std::ptr::eq(core.storage_resource(), core));
    let served = json!({"note": "n", "metadata": {"name": "e"}});
    let stored = events.to_storage(&served);
    assert_eq!(stored["message"], "n");
    assert_eq!(events.from_storage(stored.into_owned())["note"], "n");
    // No other resource shares a prefix with another.
    for a in RESOURCES {
        for b in RESOURCES {
            if !std::ptr::eq(a, b) && a.storage_prefix == b.storage_prefix {
                assert!(
                    std::ptr::eq(a.storage_resource(), b) || std::ptr::eq(b.storage_resource(), a),
                    "{a:?} and {b:?}"
                );
            }
        }
    }
}

#[test]
fn keys_follow_kube_apiserver_layout() {
    let pods = lookup("", "v1", "pods").expect("served");
    assert_eq!(pods.key("ns", "web"), "/registry/pods/ns/web");
    assert_eq!(pods.list_prefix(Some("ns")), "/registry/pods/ns/");
    assert_eq!(pods.list_prefix(None), "/registry/pods/");
    let nodes = lookup("", "v1", "nodes").expect("served");
    assert_eq!(nodes.key("ignored", "n1"), "/registry/minions/n1");
}
