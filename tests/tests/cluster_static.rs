//! Static pods in a cluster: a pod from a node's manifest directory runs there and shows in
//! the API as a mirror pod, as the kubelet makes them — `<name>-<node>`, bound to the node,
//! owned by its Node, with the static pod's status; deleting the mirror does not stop the
//! static pod (a new mirror appears), and removing the manifest removes the mirror.

use std::time::Duration;

use keel_tests::cluster::{is_ready, items, Cluster};
use keel_tests::TestResult;

fn static_pod() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: static-web, namespace: default, labels: {{app: static}}}}\n\
         spec:\n  containers:\n  - name: httpd\n    image: {image}\n    \
         command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']\n    \
         readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}\n",
        image = keel_lab::oci::BUSYBOX_IMAGE,
    )
}

#[test]
fn a_static_pod_is_mirrored_in_the_api() -> TestResult {
    let manifests = tempfile::tempdir()?;
    std::fs::write(manifests.path().join("web.yaml"), static_pod())?;
    let dir = manifests.path().to_str().unwrap_or_default().to_owned();
    let cluster = Cluster::start_with(1, 1, "ebpf", &[], &["--manifests", &dir])?;
    let mirror = cluster.wait(
        "the mirror pod Running and Ready",
        &["get", "pod", "static-web-n0"],
        Duration::from_secs(90),
        |pod| {
            pod["status"]["phase"] == "Running"
                && is_ready(pod)
                && pod["status"]["podIP"].is_string()
        },
    )?;
    let annotations = &mirror["metadata"]["annotations"];
    assert!(
        annotations["kubernetes.io/config.mirror"].is_string(),
        "{mirror}"
    );
    assert_eq!(
        annotations["kubernetes.io/config.mirror"],
        annotations["kubernetes.io/config.hash"]
    );
    assert_eq!(annotations["kubernetes.io/config.source"], "file");
    assert_eq!(mirror["spec"]["nodeName"], "n0");
    assert_eq!(mirror["metadata"]["labels"]["app"], "static");
    let owner = &mirror["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Node"), Some("n0"))
    );
    let node = cluster.json(&["get", "node", "n0"])?;
    assert_eq!(owner["uid"], node["metadata"]["uid"]);
    let pod_ip = mirror["status"]["podIP"].clone();

    // A mirror deleted is made again; the static pod itself ran on (the same address).
    let first_uid = mirror["metadata"]["uid"].clone();
    cluster.kubectl(&["delete", "pod", "static-web-n0", "--wait=false"])?;
    let again = cluster.wait(
        "a new mirror pod",
        &["get", "pods", "-l", "app=static"],
        Duration::from_secs(60),
        |list| {
            items(list).iter().any(|p| {
                p["metadata"]["name"] == "static-web-n0"
                    && p["metadata"]["uid"] != first_uid
                    && p["status"]["phase"] == "Running"
            })
        },
    )?;
    let again = items(&again)
        .into_iter()
        .find(|p| p["metadata"]["uid"] != first_uid)
        .unwrap_or_default();
    assert_eq!(
        again["status"]["podIP"], pod_ip,
        "the static pod was not restarted"
    );

    // The manifest removed: its pod stops and the mirror goes.
    std::fs::remove_file(manifests.path().join("web.yaml"))?;
    cluster.wait(
        "no mirror pod",
        &["get", "pods", "-l", "app=static"],
        Duration::from_secs(60),
        |list| items(list).is_empty(),
    )?;
    Ok(())
}
