//! The plugin's decisions (kube's `admission_test.go` cases) and its lookup's retries.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

const VOLUME: &str = "kube-api-access-xyz12";

fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "team"}, "spec": spec})
}

fn account(extra: Value) -> Value {
    let mut account = json!({"metadata": {"name": "default", "namespace": "team"}});
    if let (Some(a), Some(e)) = (account.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    account
}

/// The plugin on `pod` with the ServiceAccount `sa` (None: missing); the pod as admitted.
fn admitted(mut pod: Value, sa: Option<Value>) -> Result<Value, ApiError> {
    let name = account_name(&mut pod).expect("not a mirror pod");
    mutate(&mut pod, "team", &name, sa.as_ref(), || VOLUME.to_owned())?;
    Ok(pod)
}

fn mount() -> Value {
    json!({"name": VOLUME, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH})
}

#[test]
fn a_pod_naming_no_account_runs_as_default_with_the_token_mounted() {
    let got = admitted(
        pod(json!({"containers": [{"name": "c", "image": "i"}, {"name": "d", "image": "i"}]})),
        Some(account(json!({}))),
    )
    .expect("admitted");
    let spec = &got["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(
        spec["serviceAccount"], "default",
        "the deprecated alias follows"
    );
    assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount()]));
    assert_eq!(spec["containers"][1]["volumeMounts"], json!([mount()]));
    assert_eq!(
        spec["volumes"],
        json!([{"name": VOLUME, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}])
    );
    assert!(
        spec.get("imagePullSecrets").is_none(),
        "nothing to inherit: {spec}"
    );
}

#[test]
fn the_named_account_wins_over_the_deprecated_alias_which_is_read_when_alone() {
    let mut both = pod(
        json!({"serviceAccountName": "builder", "serviceAccount": "other",
        "containers": [{"name": "c", "image": "i"}]}),
    );
    assert_eq!(account_name(&mut both).as_deref(), Some("builder"));
    assert_eq!(both["spec"]["serviceAccount"], "builder");
    let mut alias = pod(json!({"serviceAccount": "robot", "containers": []}));
    assert_eq!(account_name(&mut alias).as_deref(), Some("robot"));
    assert_eq!(alias["spec"]["serviceAccountName"], "robot");
    let mut empty = pod(json!({"serviceAccountName": "", "containers": []}));
    assert_eq!(account_name(&mut empty).as_deref(), Some("default"));
}

#[test]
fn automount_follows_the_pod_then_the_account() {
    let containers = json!([{"name": "c", "image": "i"}]);
    let mounted = |pod_choice: Option<bool>, sa_choice: Option<bool>| {
        let mut spec = json!({"containers": containers});
        if let Some(choice) = pod_choice {
            spec["automountServiceAccountToken"] = json!(choice);
        }
        let sa = match sa_choice {
            Some(choice) => account(json!({"automountServiceAccountToken": choice})),
            None => account(json!({})),
        };
        let got = admitted(pod(spec), Some(sa)).expect("admitted");
        let has_volume = got["spec"]
            .get("volumes")
            .and_then(Value::as_array)
            .is_some_and(|v| !v.is_empty());
        let has_mount = got["spec"]["containers"][0].get("volumeMounts").is_some();
        assert_eq!(has_volume, has_mount, "{got}");
        has_volume
    };
    assert!(mounted(None, None));
    assert!(!mounted(Some(false), None));
    assert!(!mounted(None, Some(false)));
    assert!(mounted(Some(true), Some(false)), "the pod's choice wins");
    assert!(!mounted(Some(false), Some(true)));
    assert!(mounted(None, Some(true)));
}

#[test]
fn init_containers_are_mounted_too_and_an_existing_mount_is_kept() {
    let got = admitted(
        pod(json!({
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [
                {"name": "own", "image": "i", "volumeMounts": [
                    {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
                {"name": "other", "image": "i", "volumeMounts": [
                    {"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]})),
        Some(account(json!({}))),
    )
    .expect("admitted");
    let spec = &got["spec"];
    assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount()]));
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        json!([{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]),
        "a container that mounts something there keeps it"
    );
    assert_eq!(
        spec["containers"][1]["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data"}, mount()])
    );
    assert_eq!(spec["volumes"].as_array().map(Vec::len), Some(3));
    assert_eq!(spec["volumes"][2]["name"], VOLUME);
}

#[test]
fn no_volume_when_every_container_mounts_the_path_already() {
    let spec = json!({
        "containers": [{"name": "c", "image": "i", "volumeMounts": [
            {"name": "own-token", "mountPath": TOKEN_MOUNT_PATH, "readOnly": true}]}],
        "volumes": [{"name": "own-token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault"}}]}}]});
    let got = admitted(pod(spec.clone()), Some(account(json!({})))).expect("admitted");
    assert_eq!(got["spec"]["containers"], spec["containers"]);
    assert_eq!(got["spec"]["volumes"], spec["volumes"]);
}

#[test]
fn an_existing_kube_api_access_volume_is_reused_not_doubled() {
    let existing = token_volume("kube-api-access-abcde");
    let got = admitted(
        pod(json!({"containers": [{"name": "c", "image": "i"}], "volumes": [existing.clone()]})),
        Some(account(json!({}))),
    )
    .expect("admitted");
    assert_eq!(got["spec"]["volumes"], json!([existing]));
    assert_eq!(
        got["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "kube-api-access-abcde", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}])
    );
}

#[test]
fn image_pull_secrets_come_from_the_account_when_the_pod_has_none() {
    let sa = account(
        json!({"imagePullSecrets": [{"name": "registry"}, {"name": "mirror", "extra": 1}]}),
    );
    let got = admitted(
        pod(json!({"containers": [{"name": "c", "image": "i"}]})),
        Some(sa.clone()),
    )
    .expect("admitted");
    assert_eq!(
        got["spec"]["imagePullSecrets"],
        json!([{"name": "registry"}, {"name": "mirror"}])
    );
    let own = json!([{"name": "mine"}]);
    let got = admitted(
        pod(json!({"containers": [{"name": "c", "image": "i"}], "imagePullSecrets": own})),
        Some(sa.clone()),
    )
    .expect("admitted");
    assert_eq!(got["spec"]["imagePullSecrets"], own, "the pod's own win");
    let got = admitted(
        pod(json!({"containers": [{"name": "c", "image": "i"}], "imagePullSecrets": []})),
        Some(sa),
    )
    .expect("admitted");
    assert_eq!(
        got["spec"]["imagePullSecrets"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn mirror_pods_are_left_exactly_as_written() {
    let mut mirror = json!({"metadata": {"name": "etcd-n1", "namespace": "kube-system",
        "annotations": {"kubernetes.io/config.mirror": "abc"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}});
    let before = mirror.clone();
    assert_eq!(account_name(&mut mirror), None);
    assert_eq!(mirror, before);
    // An empty annotation value is still a mirror pod (kube tests for the key).
    let mut empty = before.clone();
    empty["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("");
    assert_eq!(account_name(&mut empty), None);
}

#[test]
fn a_missing_account_is_refused_with_kubes_words() {
    let error = admitted(
        pod(json!({"serviceAccountName": "ghost", "containers": [{"name": "c", "image": "i"}]})),
        None,
    )
    .expect_err("refused");
    assert_eq!(error.code, 403);
    assert_eq!(error.reason, "Forbidden");
    assert_eq!(
        error.message,
        "pods \"web\" is forbidden: error looking up service account team/ghost: serviceaccount \"ghost\" not found"
    );
    // A hostile name is quoted, not interpreted.
    let error = missing_account(&pod(json!({})), "team", "a\"b\n");
    assert!(
        error
            .message
            .ends_with("serviceaccount \"a\\\"b\\n\" not found"),
        "{}",
        error.message
    );
}

#[test]
fn volume_names_are_kubes_prefix_and_five_characters_of_its_alphabet() {
    let names: std::collections::HashSet<String> = (0..300).map(|_| random_volume_name()).collect();
    assert!(names.len() > 290, "random names repeat: {}", names.len());
    let mut seen = std::collections::HashSet::new();
    for name in &names {
        let suffix = name.strip_prefix("kube-api-access-").expect("prefix");
        assert_eq!(suffix.len(), 5, "{name}");
        for c in suffix.bytes() {
            assert!(NAME_ALPHABET.contains(&c), "{name}");
            seen.insert(c);
        }
        assert!(
            keel_api::validation::is_dns1123_label(name).is_empty(),
            "{name} is a volume name"
        );
    }
    assert!(
        seen.len() > 20,
        "1500 draws should cover most of 27 characters"
    );
}

#[test]
fn hostile_specs_never_panic() {
    for spec in [
        json!(null),
        json!("spec"),
        json!({"containers": "c"}),
        json!({"containers": [null, 1, {"volumeMounts": "x"}, {"volumeMounts": [null, 3]}]}),
        json!({"initContainers": {}, "containers": [], "volumes": "v"}),
        json!({"serviceAccountName": 7, "automountServiceAccountToken": "no", "imagePullSecrets": 1}),
        json!({"volumes": [null, {"name": 3}], "containers": [{}]}),
    ] {
        let mut p = pod(spec);
        if let Some(name) = account_name(&mut p) {
            let sa = account(json!({"imagePullSecrets": "x", "automountServiceAccountToken": []}));
            mutate(&mut p, "team", &name, Some(&sa), || VOLUME.to_owned()).expect("admitted");
        }
    }
    // A pod without a spec object is left to validation.
    let mut bare = json!({"metadata": {"name": "x"}});
    assert_eq!(account_name(&mut bare), None);
}

#[test]
fn the_admitted_pod_validates_and_passes_restricted_pod_security() {
    let mut got = admitted(
        pod(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]})),
        Some(account(json!({}))),
    )
    .expect("admitted");
    crate::defaults::apply("Pod", &mut got);
    let info = crate::resources::lookup("", "v1", "pods").expect("pods served");
    crate::validation::validate(info, &got).expect("valid");
    let violations = crate::pod_security::evaluate(
        crate::pod_security::Level::Restricted,
        &got["spec"],
        &got["metadata"],
    );
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test]
async fn default_is_looked_for_ten_times_any_other_once() {
    for (name, found_at, want_calls, found) in [
        ("default", 4, 4, true),
        ("default", 99, 10, false),
        ("builder", 2, 1, false),
        ("builder", 1, 1, true),
    ] {
        let calls = AtomicU32::new(0);
        let got = find_account(name, Duration::from_millis(1), || {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok((call >= found_at).then(|| json!({"metadata": {"name": name}}))) }
        })
        .await
        .expect("no error");
        assert_eq!(got.is_some(), found, "{name} found at call {found_at}");
        assert_eq!(calls.load(Ordering::SeqCst), want_calls, "{name}");
    }
    // An error ends the search at once.
    let calls = AtomicU32::new(0);
    let error = find_account("default", Duration::from_millis(1), || {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err(ApiError::unavailable("storage: down")) }
    })
    .await
    .expect_err("an error");
    assert_eq!(error.message, "storage: down");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
