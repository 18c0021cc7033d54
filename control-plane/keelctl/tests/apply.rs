//! `keelctl apply` and `keelctl describe` against a real member, as kubectl's client-side apply
//! and generic describer.

mod support;

use support::{client, keelctl, runtime, Member};

/// A ConfigMap with `data` (YAML lines, indented) and a Deployment, as one file.
fn app_manifest(data: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
{data}---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
"
    )
}

/// A client of the member's API with its admin kubeconfig; made (and used) inside one
/// runtime, whose tasks its connections live on.
/// `keelctl apply -f` and `describe` against a member's API: created, unchanged, configured
/// (a removed key deleted; what the server and another client set kept), kubectl's
/// annotation, a malformed file that applies nothing, failures reported while the other
/// objects are applied, a server dry run, and kubectl's describe with the object's events.
#[test]
fn apply_and_describe_work_as_kubectls_client_side_apply() {
    use k8s_openapi::api::core::v1::{ConfigMap, Event};
    use serde_json::{json, Value};

    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("m0");
    let (m0, _api) = Member::start_with_api("m0", &data_dir);
    let admin = data_dir.join("admin.kubeconfig");
    let kubeconfig = admin.to_str().expect("utf-8");
    let run = |args: &[&str]| keelctl(&[args, &["--kubeconfig", kubeconfig]].concat());
    let ok = |args: &[&str]| m0.keelctl_api_ok(kubeconfig, args);
    let get_json = |args: &[&str]| -> Value {
        serde_json::from_str(&ok(&[&["get"][..], args, &["-o", "json"]].concat())).expect("JSON")
    };
    let rt = runtime();
    let client = rt.block_on(client(&admin));

    let manifest = dir.path().join("app.yaml");
    let app = manifest.to_str().expect("utf-8");
    std::fs::write(&manifest, app_manifest("  a: \"1\"\n  b: \"2\"\n")).expect("written");
    assert_eq!(
        ok(&["apply", "-f", app]),
        "configmap/settings created\ndeployment.apps/web created\n"
    );
    // The server filled in defaults (in list items too: a port's protocol); the same files
    // again change nothing.
    assert_eq!(
        ok(&["apply", "-f", app]),
        "configmap/settings unchanged\ndeployment.apps/web unchanged\n"
    );
    let deployment = get_json(&["deployment", "web"]);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"], "TCP",
        "{deployment}"
    );
    let uid = deployment["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_owned();
    let settings_uid = get_json(&["cm", "settings"])["metadata"]["uid"].clone();

    // Another client labels the ConfigMap; then the file changes one key and drops another.
    rt.block_on(async {
        let maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "default");
        maps.patch(
            "settings",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"owner": "someone-else"}}})),
        )
        .await
        .expect("labelled");
    });
    std::fs::write(&manifest, app_manifest("  a: \"10\"\n")).expect("written");
    assert_eq!(
        ok(&["apply", "-f", app]),
        "configmap/settings configured\ndeployment.apps/web unchanged\n"
    );
    let settings = get_json(&["cm", "settings"]);
    assert_eq!(settings["data"], json!({"a": "10"}), "{settings}");
    assert_eq!(settings["metadata"]["labels"]["owner"], "someone-else");
    assert_eq!(
        settings["metadata"]["uid"], settings_uid,
        "patched, not recreated"
    );
    assert!(settings["metadata"]["creationTimestamp"].is_string());
    // The annotation, byte for byte as kubectl writes it.
    assert_eq!(
        settings["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"10\"},\"kind\":\"ConfigMap\",\
         \"metadata\":{\"annotations\":{},\"name\":\"settings\",\"namespace\":\"default\"}}\n"
    );
    let deployment = get_json(&["deployment", "web"]);
    assert_eq!(
        deployment["spec"]["revisionHistoryLimit"], 10,
        "{deployment}"
    );
    assert_eq!(
        ok(&["apply", "-f", app]),
        "configmap/settings unchanged\ndeployment.apps/web unchanged\n"
    );

    // A malformed second document: nothing is applied, and the document is named.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: never\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n",
    )
    .expect("written");
    let out = run(&["apply", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("document 2"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(run(&["get", "cm", "never"]).status.code(), Some(1));

    // An unknown kind and a refused object are reported; the object after them is applied.
    let mixed = dir.path().join("mixed.yaml");
    std::fs::write(
        &mixed,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lost\n  namespace: nowhere\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after\n",
    )
    .expect("written");
    let out = run(&["apply", "-f", mixed.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/after created\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no matches for kind \"Widget\" in version \"example.com/v1\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("Error from server (NotFound): error when creating"),
        "{stderr}"
    );

    // A server dry run stores nothing.
    let dry = dir.path().join("dry.json");
    std::fs::write(
        &dry,
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}"#,
    )
    .expect("written");
    assert_eq!(
        ok(&[
            "apply",
            "-f",
            dry.to_str().expect("utf-8"),
            "--dry-run=server"
        ]),
        "configmap/dry created (server dry run)\n"
    );
    assert_eq!(run(&["get", "cm", "dry"]).status.code(), Some(1));

    // describe: kubectl's generic shape, and the events about this object only.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("a time")
        .to_string();
    rt.block_on(async {
        let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), "default");
        for (name, involved, involved_uid, message) in [
            (
                "web.1",
                "web",
                uid.as_str(),
                "Scaled up replica set web-abc from 0 to 2",
            ),
            ("other.1", "other", "u-other", "about another deployment"),
        ] {
            let event: Event = serde_json::from_value(json!({
                "metadata": {"name": name},
                "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": involved,
                                   "namespace": "default", "uid": involved_uid},
                "reason": "ScalingReplicaSet", "message": message, "type": "Normal",
                "source": {"component": "deployment-controller"},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            }))
            .expect("an event");
            events
                .create(&Default::default(), &event)
                .await
                .expect("event created");
        }
    });
    let text = ok(&["describe", "deployment", "web"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 6, "{text}");
    assert_eq!(
        lines[..6],
        [
            "Name:         web",
            "Namespace:    default",
            "Labels:       app=web",
            "Annotations:  <none>",
            "API Version:  apps/v1",
            "Kind:         Deployment",
        ],
        "{text}"
    );
    assert!(lines.contains(&"Spec:"), "{text}");
    // Aligned with the fields around it, which the server's defaults decide.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  Replicas:") && l.ends_with(" 2")),
        "{text}"
    );
    assert!(
        lines.contains(&"    Match Labels:") && lines.contains(&"      App:  web"),
        "{text}"
    );
    assert!(
        !text.contains("last-applied") && !text.contains("Managed Fields"),
        "{text}"
    );
    let events = lines
        .iter()
        .position(|l| *l == "Events:")
        .expect("an events table");
    assert!(lines[events + 1].starts_with("  Type    Reason"), "{text}");
    assert_eq!(lines.len(), events + 4, "one event: {text}");
    let row = lines[events + 3];
    assert!(
        row.starts_with("  Normal  ScalingReplicaSet")
            && row.contains("deployment-controller")
            && row.ends_with("Scaled up replica set web-abc from 0 to 2"),
        "{text}"
    );

    let settings = ok(&["describe", "cm", "-l", "owner=someone-else"]);
    assert_eq!(
        settings
            .lines()
            .filter(|l| l.starts_with("Name:"))
            .collect::<Vec<_>>(),
        ["Name:         settings"],
        "{settings}"
    );
    // `Kind:` shares the block of the data above it, as in kubectl.
    assert!(
        settings.contains("\nData:\n  A:   10\nKind:  ConfigMap\nMetadata:\n"),
        "{settings}"
    );
    let out = run(&["describe", "deployment", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Error from server (NotFound)") && stderr.contains("\"nope\" not found"),
        "{stderr}"
    );
}
