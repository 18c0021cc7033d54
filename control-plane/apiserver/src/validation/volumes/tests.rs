//! Projected, downward API, configMap and secret volumes: what kube accepts passes, what it
//! refuses is refused with its field path and words.

use serde_json::{json, Value};

use crate::validation::tests::causes;

/// A pod with `volumes`, defaulted as a create defaults it.
fn pod(volumes: Value) -> Value {
    let mut pod = json!({"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}], "volumes": volumes}});
    crate::defaults::apply("Pod", &mut pod);
    pod
}

fn refused(volumes: Value) -> Vec<String> {
    causes("", "pods", pod(volumes))
}

fn assert_has(got: &[String], want: &str) {
    assert!(
        got.iter().any(|g| g == want),
        "{want}\nmissing from {got:#?}"
    );
}

/// The volume the ServiceAccount plugin adds.
fn token_volume() -> Value {
    crate::service_account_admission::token_volume("kube-api-access-b2x4z")
}

#[test]
fn the_service_account_volume_and_other_kube_valid_volumes_pass() {
    let valid = json!([
        token_volume(),
        {"name": "all", "projected": {"sources": [
            {"secret": {"name": "s", "items": [{"key": "k", "path": "dir/s.txt", "mode": 0o400}]}},
            {"configMap": {"name": "c"}},
            {"downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "one", "fieldRef": {"fieldPath": "metadata.annotations['example.com/Key']"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}]}},
            {"serviceAccountToken": {"audience": "vault", "path": "vault/token", "expirationSeconds": 600}},
            {"serviceAccountToken": {"path": "plain-token"}}],
            "defaultMode": 0o777}},
        {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"name": "cfg", "configMap": {"name": "x", "items": [{"key": "a", "path": "a..b/c.."}]}},
        {"name": "sec", "secret": {"secretName": "x", "defaultMode": 0}},
    ]);
    let got = refused(valid);
    assert!(got.is_empty(), "{got:#?}");
}

#[test]
fn defaults_fill_what_kube_fills() {
    let pod = pod(json!([
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}},
            {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}},
        {"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
    ]));
    let volumes = &pod["spec"]["volumes"];
    assert_eq!(volumes[0]["projected"]["defaultMode"], 420);
    assert_eq!(
        volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3600
    );
    assert_eq!(
        volumes[0]["projected"]["sources"][1]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
        "v1"
    );
    assert_eq!(volumes[1]["downwardAPI"]["defaultMode"], 420);
    assert_eq!(
        volumes[1]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
        "v1"
    );
}

#[test]
fn paths_that_leave_the_volume_are_refused() {
    let got = refused(json!([{"name": "v", "projected": {"sources": [
        {"configMap": {"name": "c", "items": [{"key": "a", "path": "../x"}, {"key": "b", "path": "/etc/passwd"},
                                             {"key": "c", "path": "a/../../b"}, {"key": "d", "path": ".."},
                                             {"key": "e", "path": "..a"}]}},
        {"downwardAPI": {"items": [{"path": "../../etc/shadow", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"serviceAccountToken": {"path": "/token"}}]}}]));
    let at = "spec.volumes[0].projected";
    for want in [
        format!("{at}.sources[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'"),
        format!("{at}.sources[0].configMap.items[1].path: Invalid value: \"/etc/passwd\": must be a relative path"),
        format!("{at}.sources[0].configMap.items[2].path: Invalid value: \"a/../../b\": must not contain '..'"),
        format!("{at}.sources[0].configMap.items[3].path: Invalid value: \"..\": must not contain '..'"),
        format!("{at}.sources[0].configMap.items[3].path: Invalid value: \"..\": must not start with '..'"),
        // Not a step up, but a name kube keeps for its own (`..data`, the atomic writer's).
        format!("{at}.sources[0].configMap.items[4].path: Invalid value: \"..a\": must not start with '..'"),
        // kube names the downward API source, not the file's index.
        format!("{at}.sources[1].downwardAPI.path: Invalid value: \"../../etc/shadow\": must not contain '..'"),
        // …and a token's path by the projection.
        format!("{at}.path: Invalid value: \"/token\": must be a relative path"),
    ] {
        assert_has(&got, &want);
    }
    assert_eq!(got.len(), 8, "{got:#?}");
}

#[test]
fn modes_beyond_0777_and_negative_are_refused() {
    let got = refused(json!([
        {"name": "a", "projected": {"defaultMode": 0o1000, "sources": [
            {"secret": {"name": "s", "items": [{"key": "k", "path": "k", "mode": 0o4755}]}},
            {"downwardAPI": {"items": [{"path": "n", "mode": -1, "fieldRef": {"fieldPath": "metadata.name"}}]}}]}},
        {"name": "b", "downwardAPI": {"defaultMode": 0o2777, "items": []}},
        {"name": "c", "configMap": {"name": "x", "defaultMode": 4096}},
        {"name": "d", "secret": {"secretName": "x", "items": [{"key": "k", "path": "k", "mode": 512}]}},
    ]));
    let msg = "must be a number between 0 and 0777 (octal), both inclusive";
    for want in [
        format!("spec.volumes[0].projected.defaultMode: Invalid value: 512: {msg}"),
        format!(
            "spec.volumes[0].projected.sources[0].secret.items[0].mode: Invalid value: 2541: {msg}"
        ),
        format!("spec.volumes[0].projected.sources[1].downwardAPI.mode: Invalid value: -1: {msg}"),
        format!("spec.volumes[1].downwardAPI.defaultMode: Invalid value: 1535: {msg}"),
        format!("spec.volumes[2].configMap.defaultMode: Invalid value: 4096: {msg}"),
        format!("spec.volumes[3].secret.items[0].mode: Invalid value: 512: {msg}"),
    ] {
        assert_has(&got, &want);
    }
    assert_eq!(got.len(), 6, "{got:#?}");
}

#[test]
fn a_projection_has_one_source_and_a_token_lives_ten_minutes_to_2_pow_32_seconds() {
    let got = refused(json!([{"name": "v", "projected": {"sources": [
        {"configMap": {"name": "c"}, "secret": {"name": "s"}},
        {"serviceAccountToken": {"path": "t", "expirationSeconds": 10}},
        {"serviceAccountToken": {"path": "u", "expirationSeconds": 5_000_000_000_i64}},
        {"serviceAccountToken": {"path": "", "expirationSeconds": 600},
         "downwardAPI": {"items": []}}]}}]));
    let at = "spec.volumes[0].projected";
    for want in [
        format!("{at}.sources[0]: Forbidden: may not specify more than 1 volume type"),
        format!("{at}.sources[1].serviceAccountToken.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes"),
        format!("{at}.sources[2].serviceAccountToken.expirationSeconds: Invalid value: 5000000000: may not specify a duration larger than 2^32 seconds"),
        format!("{at}.path: Required value"),
        format!("{at}.sources[3]: Forbidden: may not specify more than 1 volume type"),
    ] {
        assert_has(&got, &want);
    }
    assert_eq!(got.len(), 5, "{got:#?}");
}

#[test]
fn names_keys_paths_and_duplicate_paths_are_checked() {
    let got = refused(json!([
        {"name": "a", "projected": {"sources": [
            {"configMap": {"name": "", "items": [{"key": "", "path": ""}, {"key": "k", "path": "same"}]}},
            {"secret": {"name": "s", "items": [{"key": "k", "path": "same"}]}},
            {"downwardAPI": {"items": [{"path": "same", "fieldRef": {"fieldPath": "metadata.uid"}}]}}]}},
        {"name": "b", "configMap": {}},
        {"name": "c", "secret": {"items": [{"key": "k"}]}},
    ]));
    for want in [
        "spec.volumes[0].projected.sources[0].configMap.name: Required value",
        "spec.volumes[0].projected.sources[0].configMap.items[0].key: Required value",
        "spec.volumes[0].projected.sources[0].configMap.items[0].path: Required value",
        "spec.volumes[0].projected: Invalid value: \"s\": conflicting duplicate paths",
        "spec.volumes[0].projected: Invalid value: \"same\": conflicting duplicate paths",
        "spec.volumes[1].configMap.name: Required value",
        "spec.volumes[2].secret.secretName: Required value",
        "spec.volumes[2].secret.items[0].path: Required value",
    ] {
        assert_has(&got, want);
    }
    assert_eq!(got.len(), 8, "{got:#?}");
}

#[test]
fn downward_api_files_name_one_known_field() {
    let got = refused(json!([{"name": "d", "downwardAPI": {"items": [
        {"path": "a"},
        {"path": "b", "fieldRef": {"fieldPath": "status.podIP"}},
        {"path": "c", "fieldRef": {"fieldPath": "spec.bogus"}},
        {"path": "d", "fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}},
        {"path": "e", "fieldRef": {"fieldPath": "metadata.name['x']"}},
        {"path": "f", "fieldRef": {"fieldPath": "metadata.labels['bad key!']"}},
        {"path": "g", "fieldRef": {"fieldPath": "metadata.name"},
                      "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
        {"path": "h", "resourceFieldRef": {"resource": "limits.cpu"}},
        {"path": "i", "resourceFieldRef": {"containerName": "c", "resource": "limits.gpu"}},
        // An empty apiVersion is defaulted to v1, as kube defaults it.
        {"path": "j", "fieldRef": {"apiVersion": "", "fieldPath": ""}}]}}]));
    let at = "spec.volumes[0].downwardAPI";
    let supported = "supported values: \"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\"";
    for want in [
        format!("{at}: Required value: one of fieldRef and resourceFieldRef is required"),
        format!("{at}.fieldRef.fieldPath: Unsupported value: \"status.podIP\": {supported}"),
        format!("{at}.fieldRef.fieldPath: Invalid value: \"spec.bogus\": error converting fieldPath: field label not supported: spec.bogus"),
        format!("{at}.fieldRef.fieldPath: Invalid value: \"metadata.name\": error converting fieldPath: unsupported pod version: v2"),
        format!("{at}.fieldRef.fieldPath: Invalid value: \"metadata.name['x']\": error converting fieldPath: field label does not support subscript: metadata.name['x']"),
        format!("{at}: Invalid value: \"resource\": fieldRef and resourceFieldRef can not be specified simultaneously"),
        format!("{at}.resourceFieldRef.containerName: Required value"),
        format!("{at}.fieldRef.fieldPath: Required value"),
    ] {
        assert_has(&got, &want);
    }
    assert!(
        got.iter().any(|g| g.starts_with(&format!(
            "{at}.fieldRef: Invalid value: \"bad key!\": name part must consist of"
        ))),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|g| g.starts_with(&format!(
            "{at}.resourceFieldRef.resource: Unsupported value: \"limits.gpu\""
        ))),
        "{got:#?}"
    );
    assert_eq!(got.len(), 10, "{got:#?}");
}

#[test]
fn hostile_shapes_never_panic() {
    for volumes in [
        json!([{"name": "a", "projected": null}]),
        json!([{"name": "a", "projected": {"sources": null}}]),
        json!([{"name": "a", "projected": {"sources": [null, 1, "x", [], {}]}}]),
        json!([{"name": "a", "projected": {"sources": [{"configMap": {"items": [null, 3]}}]}}]),
        json!([{"name": "a", "downwardAPI": {"items": "nope"}}]),
        json!([{"name": "a", "projected": {"defaultMode": "0777", "sources": [{"serviceAccountToken": {"path": 7}}]}}]),
        json!([{"name": "a", "projected": {"sources": [{"downwardAPI": {"items": [{"path": "p", "fieldRef": "x"}]}}]}}]),
        json!([{"name": "\u{0}", "secret": {"secretName": "\u{0}", "items": [{"key": "\u{0}", "path": "\u{0}/../\u{0}"}]}}]),
    ] {
        let _ = refused(volumes);
    }
    // A path that climbs back out after going down is still refused.
    let got = refused(json!([{"name": "a", "projected": {"sources": [
        {"serviceAccountToken": {"path": "a/../.."}}]}}]));
    assert_eq!(
        got,
        ["spec.volumes[0].projected.path: Invalid value: \"a/../..\": must not contain '..'"]
    );
}
