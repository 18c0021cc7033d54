//! The plugin's two phases on plain objects: what it fills and how it says so, and each bound
//! it refuses with kube's words. The LimitRanges here are as stored, i.e. defaulted.

use serde_json::{json, Value};

use super::*;

fn range(limits: Value) -> Value {
    json!({"metadata": {"name": "limits", "namespace": "team"}, "spec": {"limits": limits}})
}

fn pod(containers: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "team"}, "spec": {"containers": containers}})
}

fn defaulted(range: &Value, mut pod: Value) -> Value {
    default_pod(range, &mut pod);
    pod
}

#[test]
fn fills_only_what_a_container_leaves_out_and_says_what_it_set() {
    let range = range(json!([{"type": "Container",
        "default": {"cpu": "1000m", "memory": "512Mi"},
        "defaultRequest": {"cpu": "0.5", "memory": "256Mi"}}]));
    let pod = defaulted(
        &range,
        json!({"metadata": {"name": "web", "annotations": {"team": "a"}}, "spec": {
        "initContainers": [{"name": "setup"}],
        "containers": [
            {"name": "bare"},
            {"name": "own", "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi", "cpu": "2"}}},
            {"name": "full", "resources": {"requests": {"cpu": "1", "memory": "1"}, "limits": {"cpu": "1", "memory": "1"}}},
        ]}}),
    );
    let containers = &pod["spec"]["containers"];
    // Canonical forms, as kube writes the quantities it copies: 1000m → 1, 0.5 → 500m.
    assert_eq!(
        containers[0]["resources"],
        json!({"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}})
    );
    assert_eq!(
        containers[1]["resources"],
        json!({"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}),
        "what the container states is kept"
    );
    assert_eq!(
        containers[2]["resources"],
        json!({"requests": {"cpu": "1", "memory": "1"}, "limits": {"cpu": "1", "memory": "1"}})
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["resources"]["limits"],
        json!({"cpu": "1", "memory": "512Mi"})
    );
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({"team": "a", "kubernetes.io/limit-ranger":
            "LimitRanger plugin set: cpu, memory request for container bare; cpu, memory limit for container bare; \
             memory request for container own; \
             cpu, memory request for init container setup; cpu, memory limit for init container setup"})
    );
}

#[test]
fn a_pod_that_needs_nothing_is_left_alone() {
    let range = range(json!([
        {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "1"}},
    ]));
    let stated = pod(
        json!([{"name": "c", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}}]),
    );
    assert_eq!(
        defaulted(&range, stated.clone()),
        stated,
        "no annotation when nothing was set"
    );
    // A range without Container defaults, and hostile shapes, change nothing either.
    let pod_only = range_of_pod_max();
    assert_eq!(defaulted(&pod_only, stated.clone()), stated);
    for hostile in [
        json!(null),
        json!({"spec": {"limits": "x"}}),
        json!({"spec": {"limits": [7, {"type": 3}]}}),
    ] {
        assert_eq!(defaulted(&hostile, stated.clone()), stated, "{hostile}");
    }
    let weird = json!({"metadata": {"name": "w"}, "spec": {"containers": [5, {"name": "c", "resources": null}]}});
    let out = defaulted(&range, weird);
    assert_eq!(out["spec"]["containers"][0], json!(5));
    assert_eq!(
        out["spec"]["containers"][1]["resources"],
        json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}})
    );
}

#[test]
fn later_ranges_fill_only_what_earlier_ones_left() {
    let first = range(json!([{"type": "Container", "defaultRequest": {"cpu": "100m"}}]));
    let second =
        range(json!([{"type": "Container", "defaultRequest": {"cpu": "900m", "memory": "64Mi"}}]));
    let mut p = pod(json!([{"name": "c"}]));
    default_pod(&first, &mut p);
    default_pod(&second, &mut p);
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "100m", "memory": "64Mi"})
    );
    // Each range that sets something writes the annotation anew, as kube's does.
    assert_eq!(
        p["metadata"]["annotations"][ANNOTATION],
        "LimitRanger plugin set: memory request for container c"
    );
}

fn range_of_pod_max() -> Value {
    range(json!([{"type": "Pod", "max": {"cpu": "2", "memory": "1Gi"}}]))
}

fn container_bounds() -> Value {
    range(json!([{"type": "Container",
        "min": {"cpu": "100m", "memory": "64Mi"},
        "max": {"cpu": "1", "memory": "1Gi"},
        "maxLimitRequestRatio": {"cpu": "2"}}]))
}

fn with(requests: Value, limits: Value) -> Value {
    pod(json!([{"name": "c", "resources": {"requests": requests, "limits": limits}}]))
}

#[test]
fn each_container_bound_refuses_in_kubes_words() {
    let bounds = container_bounds();
    let ok = with(
        json!({"cpu": "500m", "memory": "128Mi"}),
        json!({"cpu": "1", "memory": "128Mi"}),
    );
    assert_eq!(check_pod(&bounds, &ok), Vec::<String>::new());
    for (requests, limits, want) in [
        (
            json!({"cpu": "1", "memory": "128Mi"}),
            json!({"cpu": "2", "memory": "128Mi"}),
            "maximum cpu usage per Container is 1, but limit is 2",
        ),
        (
            json!({"cpu": "500m", "memory": "32Mi"}),
            json!({"cpu": "1", "memory": "128Mi"}),
            "minimum memory usage per Container is 64Mi, but request is 32Mi",
        ),
        (
            json!({"cpu": "250m", "memory": "128Mi"}),
            json!({"cpu": "1", "memory": "128Mi"}),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
        ),
        (
            json!({"memory": "128Mi"}),
            json!({"cpu": "1", "memory": "128Mi"}),
            "minimum cpu usage per Container is 100m.  No request is specified",
        ),
        (
            json!({"cpu": "500m", "memory": "128Mi"}),
            json!({"cpu": "1"}),
            "maximum memory usage per Container is 1Gi.  No limit is specified",
        ),
        (
            json!({"cpu": "500m", "memory": "2Gi"}),
            json!({"cpu": "1", "memory": "1Gi"}),
            "maximum memory usage per Container is 1Gi, but request is 2Gi",
        ),
        (
            json!({"cpu": "500m", "memory": "128Mi"}),
            json!({"cpu": "1", "memory": "32Mi"}),
            "minimum memory usage per Container is 64Mi, but limit is 32Mi",
        ),
    ] {
        let got = check_pod(&bounds, &with(requests, limits));
        assert!(got.iter().any(|g| g == want), "{want:?} not in {got:#?}");
    }
    let ratio_only =
        range(json!([{"type": "Container", "maxLimitRequestRatio": {"memory": "1.5"}}]));
    assert_eq!(
        check_pod(&ratio_only, &with(json!({"memory": "0"}), json!({"memory": "1Gi"}))),
        ["memory max limit to request ratio per Container is 1500m, but no request is specified or request is 0"]
    );
    assert_eq!(
        check_pod(&ratio_only, &with(json!({"memory": "1Gi"}), json!({}))),
        ["memory max limit to request ratio per Container is 1500m, but no limit is specified or limit is 0"]
    );
    assert_eq!(
        check_pod(
            &ratio_only,
            &with(json!({"memory": "2Gi"}), json!({"memory": "3Gi"}))
        ),
        Vec::<String>::new(),
        "a ratio of exactly 1.5 is allowed"
    );
}

#[test]
fn init_containers_are_bounded_like_containers() {
    let bounds = container_bounds();
    let mut p = with(
        json!({"cpu": "500m", "memory": "128Mi"}),
        json!({"cpu": "1", "memory": "128Mi"}),
    );
    p["spec"]["initContainers"] = json!([{"name": "init", "resources": {
        "requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"cpu": "3", "memory": "128Mi"}}}]);
    assert_eq!(
        check_pod(&bounds, &p),
        [
            "maximum cpu usage per Container is 1, but limit is 3",
            "cpu max limit to request ratio per Container is 2, but provided ratio is 6.000000"
        ]
    );
}

#[test]
fn a_pod_bound_counts_containers_init_peaks_and_sidecars() {
    let bounds = range_of_pod_max();
    let two = pod(json!([
        {"name": "a", "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1500m", "memory": "512Mi"}}},
        {"name": "b", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
    ]));
    // 1500m + 1 = 2500m (the first container's format); 512Mi + 1Gi = 1536Mi.
    assert_eq!(
        check_pod(&bounds, &two),
        [
            "maximum cpu usage per Pod is 2, but limit is 2500m",
            "maximum memory usage per Pod is 1Gi, but limit is 1536Mi"
        ]
    );
    // An init container runs alone: its peak counts, not a sum with the containers.
    let mut p =
        pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "256Mi"}}}]));
    p["spec"]["initContainers"] = json!([
        {"name": "big", "resources": {"limits": {"cpu": "2", "memory": "256Mi"}}},
    ]);
    assert_eq!(check_pod(&bounds, &p), Vec::<String>::new());
    // A sidecar runs beside the later init containers and the containers.
    p["spec"]["initContainers"] = json!([
        {"name": "side", "restartPolicy": "Always", "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}},
        {"name": "big", "resources": {"limits": {"cpu": "2", "memory": "256Mi"}}},
    ]);
    assert_eq!(
        check_pod(&bounds, &p),
        ["maximum cpu usage per Pod is 2, but limit is 2500m"]
    );
    // Nothing stated anywhere: the pod has no limit at all.
    assert_eq!(
        check_pod(&bounds, &pod(json!([{"name": "a"}]))),
        [
            "maximum cpu usage per Pod is 2.  No limit is specified",
            "maximum memory usage per Pod is 1Gi.  No limit is specified"
        ]
    );
}

#[test]
fn unknown_item_types_and_unreadable_amounts_bound_nothing() {
    let odd = range(json!([
        {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}},
        {"type": "example.com/thing", "max": {"cpu": "1"}},
        {"type": "Container", "max": {"cpu": "bogus"}},
    ]));
    assert_eq!(
        check_pod(&odd, &pod(json!([{"name": "a"}]))),
        Vec::<String>::new()
    );
    // A container amount keel cannot read counts as not stated.
    let bounds = range(json!([{"type": "Container", "max": {"cpu": "1"}}]));
    assert_eq!(
        check_pod(&bounds, &with(json!({}), json!({"cpu": "lots"}))),
        ["maximum cpu usage per Container is 1.  No limit is specified"]
    );
}

#[test]
fn messages_aggregate_as_go_does() {
    assert_eq!(aggregate(&["a".into()]), "a");
    assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
}
