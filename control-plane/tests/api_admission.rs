//! Admission under concurrency, with the official Python client as the judge: 50 pods created
//! at once against a quota of 10 admit exactly 10 and `status.used` says 10; 200 Services
//! created at once get 200 distinct ClusterIPs, 100 NodePort Services 200 distinct node ports; a pod without the requests a quota tracks is
//! refused with Kubernetes' words; deleting frees quota; and the namespaces every cluster
//! relies on cannot be deleted.

mod support;

use std::process::Command;

use support::api::{client_tool, ApiServer, Backend};

fn python(server: &ApiServer, script: &str) -> String {
    let out = Command::new(client_tool("python"))
        .arg("-c")
        .arg(script)
        .arg(&server.kubeconfig)
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .trim_end()
                .ends_with("ok"),
        "{text}\n--- server ---\n{}",
        server.output().join("\n")
    );
    text
}

const QUOTA: &str = r#"
import json, sys
from concurrent.futures import ThreadPoolExecutor
from kubernetes import client, config
from kubernetes.client.rest import ApiException

api = client.CoreV1Api(config.new_client_from_config(config_file=sys.argv[1]))
api.create_namespace({"metadata": {"name": "quota"}})
api.create_namespaced_resource_quota("quota", {
    "metadata": {"name": "compute"},
    "spec": {"hard": {"pods": "10", "requests.cpu": "2", "count/configmaps": "3"}}})

def pod(i):
    return {"metadata": {"name": f"p{i}"}, "spec": {"containers": [
        {"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "100m"}}}]}}

def create(i):
    try:
        api.create_namespaced_pod("quota", pod(i))
        return "created"
    except ApiException as e:
        body = json.loads(e.body)
        assert e.status == 403 and body["reason"] == "Forbidden", (e.status, e.body)
        assert "exceeded quota: compute" in body["message"], body["message"]
        return "refused"

with ThreadPoolExecutor(max_workers=50) as pool:
    outcomes = list(pool.map(create, range(50)))
print("created", outcomes.count("created"), "refused", outcomes.count("refused"))
assert outcomes.count("created") == 10, outcomes
pods = api.list_namespaced_pod("quota").items
assert len(pods) == 10, [p.metadata.name for p in pods]
used = api.read_namespaced_resource_quota("compute", "quota").status.used
print("used", used)
assert used["pods"] == "10" and used["requests.cpu"] == "1", used

# Without the request the quota tracks: refused, naming it.
try:
    api.create_namespaced_pod("quota", {"metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
    raise SystemExit("a pod without requests.cpu was admitted")
except ApiException as e:
    message = json.loads(e.body)["message"]
    print(message)
    assert e.status == 403 and "must specify requests.cpu" in message, message

# Deleting frees quota at once (usage is recounted at admission). Which ten of the fifty
# concurrent creates won is up to the race: delete one that did.
api.delete_namespaced_pod(pods[0].metadata.name, "quota", grace_period_seconds=0)
api.create_namespaced_pod("quota", pod(100))
for i in range(3):
    api.create_namespaced_config_map("quota", {"metadata": {"name": f"c{i}"}})
try:
    api.create_namespaced_config_map("quota", {"metadata": {"name": "c3"}})
    raise SystemExit("a fourth configmap was admitted")
except ApiException as e:
    assert e.status == 403 and "count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3" in json.loads(e.body)["message"], e.body
print("ok")
"#;

#[test]
fn quota_admits_exactly_its_limit_under_concurrent_creates() {
    let server = ApiServer::start(Backend::Keel, &[]);
    python(&server, QUOTA);
}

const SERVICES: &str = r#"
import sys
from concurrent.futures import ThreadPoolExecutor
from kubernetes import client, config

api = client.CoreV1Api(config.new_client_from_config(config_file=sys.argv[1]))
api.create_namespace({"metadata": {"name": "ips"}})

def create(i):
    svc = api.create_namespaced_service("ips", {"metadata": {"name": f"s{i}"},
        "spec": {"ports": [{"port": 80}]}})
    return svc.spec.cluster_ip

with ThreadPoolExecutor(max_workers=50) as pool:
    ips = list(pool.map(create, range(200)))
print(len(ips), "services,", len(set(ips)), "distinct ClusterIPs")
assert len(set(ips)) == 200, sorted(ips)
assert "10.96.0.1" not in ips, "the kubernetes Service's address was handed out again"
listed = {s.spec.cluster_ip for s in api.list_namespaced_service("ips").items}
assert listed == set(ips)

# Node ports: distinct under concurrency, in range, a taken one refused, released on delete.
def node_port(i):
    svc = api.create_namespaced_service("ips", {"metadata": {"name": f"np{i}"},
        "spec": {"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}})
    return [p.node_port for p in svc.spec.ports]
with ThreadPoolExecutor(max_workers=50) as pool:
    ports = [p for pair in pool.map(node_port, range(100)) for p in pair]
print(len(ports), "node ports,", len(set(ports)), "distinct")
assert len(set(ports)) == 200 and all(30000 <= p <= 32767 for p in ports), sorted(ports)
taken = ports[0]
from kubernetes.client.rest import ApiException
try:
    api.create_namespaced_service("ips", {"metadata": {"name": "clash"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "node_port": taken}]}})
    raise SystemExit("a taken node port was handed out twice")
except ApiException as e:
    assert e.status == 422 and "provided port is already allocated" in e.body, e.body
api.delete_namespaced_service("np0", "ips")
again = api.create_namespaced_service("ips", {"metadata": {"name": "again"},
    "spec": {"type": "NodePort", "ports": [{"port": 80, "node_port": taken}]}})
assert again.spec.ports[0].node_port == taken
print("ok")
"#;

#[test]
fn concurrent_service_creates_get_distinct_cluster_ips() {
    let server = ApiServer::start(Backend::Keel, &[]);
    python(&server, SERVICES);
}

#[test]
fn the_namespaces_a_cluster_relies_on_cannot_be_deleted() {
    let server = ApiServer::start(Backend::Keel, &[]);
    for ns in ["default", "kube-system", "kube-public"] {
        let out = server.kubectl(&["delete", "namespace", ns]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && text.contains(&format!(
                    "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
                )),
            "{ns}: {text}"
        );
    }
    server.kubectl_ok(&["get", "namespace", "default", "kube-system", "kube-public"]);
}

#[test]
fn updates_may_not_change_what_kubernetes_keeps_immutable() {
    let server = ApiServer::start(Backend::Keel, &[]);
    let refused = |args: &[&str], words: &str| {
        let out = server.kubectl(args);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        println!("$ kubectl {}\n{text}", args.join(" "));
        assert!(
            !out.status.success() && text.contains(words),
            "kubectl {}: {text}",
            args.join(" ")
        );
    };
    server.kubectl_ok(&["create", "deployment", "web", "--image=busybox:1.36"]);
    refused(
        &[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}"#,
        ],
        "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"other\"}}: field is immutable",
    );
    server.kubectl_ok(&["create", "configmap", "frozen", "--from-literal=a=1"]);
    server.kubectl_ok(&[
        "patch",
        "configmap",
        "frozen",
        "-p",
        r#"{"immutable":true}"#,
    ]);
    refused(
        &[
            "patch",
            "configmap",
            "frozen",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ],
        "data: Forbidden: field is immutable when `immutable` is set",
    );
    server.kubectl_ok(&["run", "p", "--image=busybox:1.36"]);
    server.kubectl_ok(&["set", "image", "pod/p", "p=busybox:1.37"]);
    refused(
        &[
            "patch",
            "pod",
            "p",
            "-p",
            r#"{"spec":{"containers":[{"name":"p","env":[{"name":"A","value":"1"}]}]}}"#,
        ],
        "spec: Forbidden: pod updates may not change fields other than",
    );
    let image = server.kubectl_ok(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:1.37");
}

#[test]
fn pod_security_enforces_baseline_and_warns_restricted_by_namespace_label() {
    let server = ApiServer::start(Backend::Keel, &[]);
    server.kubectl_ok(&["create", "namespace", "secure"]);
    let out = server.kubectl(&[
        "label",
        "namespace",
        "secure",
        "pod-security.kubernetes.io/enforce=strict",
    ]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("metadata.labels[pod-security.kubernetes.io/enforce]")
            && text.contains("must be one of privileged, baseline, restricted"),
        "{text}"
    );
    server.kubectl_ok(&[
        "label",
        "namespace",
        "secure",
        "pod-security.kubernetes.io/enforce=baseline",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    let manifest = server.dir.path().join("host.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: host, namespace: secure}\nspec:\n  hostNetwork: true\n  \
         containers:\n  - name: c\n    image: busybox:1.36\n    securityContext: {privileged: true}\n",
    )
    .expect("written");
    let out = server.kubectl(&["apply", "-f", manifest.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(
        !out.status.success()
            && text.contains(
                "pods \"host\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true)"
            ),
        "{text}"
    );
    // Baseline admits a plain pod, and kubectl shows the restricted warning.
    let out = server.kubectl(&["run", "plain", "-n", "secure", "--image=busybox:1.36"]);
    let text = String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"),
        "{text}"
    );
    // Elsewhere (no labels: privileged) the host pod is admitted.
    let anywhere = std::fs::read_to_string(&manifest)
        .expect("read")
        .replace("namespace: secure", "namespace: default");
    std::fs::write(&manifest, anywhere).expect("written");
    server.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8")]);
}
