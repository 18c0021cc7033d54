//! The security chain with the real kubectl and the Python client as judges: TLS with the
//! `admin.kubeconfig` the server wrote, 401 for wrong or missing credentials, client
//! certificates of the cluster CA, static tokens, RBAC with the bootstrap roles (`view`,
//! `edit`, `admin`), RoleBindings made by `kubectl create rolebinding`, impersonation
//! (`--as`), and `kubectl auth can-i` / `auth whoami`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::api::{client_tool, ApiServer, Backend};

const TOKENS: &str = "\
# token,user,uid,groups
alice-token-0123456789,alice,1001
bob-token-0123456789,bob,1002,\"developers,qa\"
dana-token-0123456789,dana,1003
n1-token-0123456789,system:node:n1,2001,system:nodes
";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Cluster {
    server: ApiServer,
    _tokens: tempfile::TempDir,
}

fn start() -> Cluster {
    let tokens = tempfile::tempdir().expect("tempdir");
    let file = tokens.path().join("tokens.csv");
    std::fs::write(&file, TOKENS).expect("token file");
    let file = file.display().to_string();
    let server = ApiServer::start(Backend::Keel, &["--token-auth-file", &file]);
    Cluster {
        server,
        _tokens: tokens,
    }
}

impl Cluster {
    fn user(&self, name: &str) -> PathBuf {
        self.server
            .kubeconfig_with_user(name, &format!("{{token: {name}-token-0123456789}}"))
    }

    fn ok(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.server.kubectl_using(kubeconfig, args);
        println!("$ kubectl {}\n{}", args.join(" "), text(&out));
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn refused(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.server.kubectl_using(kubeconfig, args);
        println!("$ kubectl {}\n{}", args.join(" "), text(&out));
        assert!(
            !out.status.success(),
            "kubectl {} should have been refused: {}",
            args.join(" "),
            text(&out)
        );
        text(&out)
    }

    /// `kubectl auth can-i …`: Some(true) for yes (exit 0), Some(false) for no (exit 1).
    fn can_i(&self, kubeconfig: &Path, args: &[&str]) -> bool {
        let mut full = vec!["auth", "can-i"];
        full.extend_from_slice(args);
        let out = self.server.kubectl_using(kubeconfig, &full);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("$ kubectl {} -> {said}", full.join(" "));
        match (out.status.code(), said.as_str()) {
            (Some(0), "yes") => true,
            (Some(1), "no") => false,
            other => panic!(
                "kubectl {}: unexpected {other:?}: {}",
                full.join(" "),
                text(&out)
            ),
        }
    }
}

#[test]
fn admin_kubeconfig_over_tls_and_what_a_fresh_cluster_has() {
    let cluster = start();
    let admin = cluster.server.kubeconfig.clone();
    let namespaces = cluster.ok(&admin, &["get", "namespaces", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{ns}")),
            "{namespaces}"
        );
    }
    let whoami = cluster.ok(&admin, &["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&whoami).expect("whoami is JSON");
    assert_eq!(who["status"]["userInfo"]["username"], "kubernetes-admin");
    let groups = who["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("system:masters") && groups.contains("system:authenticated"),
        "{groups}"
    );
    let roles = cluster.ok(&admin, &["get", "clusterroles", "-o", "name"]);
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
    ] {
        assert!(
            roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}\n")),
            "{roles}"
        );
    }
    // The aggregated roles carry their rules, as the aggregation controller writes them.
    let view = cluster.ok(&admin, &["get", "clusterrole", "view", "-o", "json"]);
    let view: serde_json::Value = serde_json::from_str(&view).expect("JSON");
    assert!(
        view["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{view}"
    );
    // The admin kubeconfig is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&admin)
        .expect("kubeconfig")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "admin.kubeconfig is {mode:o}");
}

#[test]
fn wrong_or_missing_credentials_get_401_and_probes_need_none() {
    let cluster = start();
    // No credentials at all: kubectl would prompt for a password on a 401, so ask as a
    // plain HTTPS client does, verifying the server with the cluster CA.
    let script = r#"
import json, ssl, sys, urllib.request, urllib.error
context = ssl.create_default_context(cafile=sys.argv[2])
for path in ["/api/v1/namespaces/default/pods", "/version", "/livez", "/readyz"]:
    try:
        with urllib.request.urlopen(sys.argv[1] + path, context=context) as r:
            print(path, r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        print(path, e.code, json.loads(e.read())["reason"])
"#;
    let out = Command::new(client_tool("python"))
        .arg("-c")
        .arg(script)
        .arg(format!("https://{}", cluster.server.secure))
        .arg(cluster.server.data_dir.join("pki/ca.crt"))
        .output()
        .expect("python runs");
    let said = text(&out);
    println!("{said}");
    assert!(
        said.contains("/api/v1/namespaces/default/pods 401 Unauthorized")
            && said.contains("/version 401 Unauthorized")
            && said.contains("/livez 200 ok")
            && said.contains("/readyz 200 ok"),
        "{said}"
    );
    let wrong = cluster
        .server
        .kubeconfig_with_user("wrong", "{token: not-a-token}");
    let said = cluster.refused(&wrong, &["get", "pods"]);
    // kubectl's words for a 401.
    assert!(
        said.contains("You must be logged in to the server"),
        "{said}"
    );
    // A certificate the cluster CA did not sign is refused at the handshake.
    let stranger = tempfile::tempdir().expect("tempdir");
    let other_ca = keel_apiserver::auth::pki::Ca::load_or_create(stranger.path()).expect("CA");
    let forged = other_ca
        .client("kubernetes-admin", &["system:masters".into()])
        .expect("issued");
    let cert = stranger.path().join("forged.crt");
    let key = stranger.path().join("forged.key");
    std::fs::write(&cert, &forged.cert_pem).expect("written");
    std::fs::write(&key, &forged.key_pem).expect("written");
    let forged = cluster.server.kubeconfig_with_user(
        "forged",
        &format!(
            "{{client-certificate: \"{}\", client-key: \"{}\"}}",
            cert.display(),
            key.display()
        ),
    );
    let said = cluster.refused(&forged, &["get", "pods"]);
    assert!(
        !said.contains("No resources found"),
        "a forged certificate was accepted: {said}"
    );
}

#[test]
fn client_certificates_of_the_cluster_ca_name_user_and_groups() {
    let cluster = start();
    // An operator holding the CA key issues a certificate, as `keelctl kubeconfig` will.
    let ca = keel_apiserver::auth::pki::Ca::load_or_create(&cluster.server.data_dir.join("pki"))
        .expect("the cluster CA");
    let issued = ca.client("carol", &["developers".into()]).expect("issued");
    let dir = cluster.server.dir.path();
    std::fs::write(dir.join("carol.crt"), &issued.cert_pem).expect("written");
    std::fs::write(dir.join("carol.key"), &issued.key_pem).expect("written");
    let carol = cluster.server.kubeconfig_with_user(
        "carol",
        &format!(
            "{{client-certificate: \"{}\", client-key: \"{}\"}}",
            dir.join("carol.crt").display(),
            dir.join("carol.key").display()
        ),
    );
    let whoami = cluster.ok(&carol, &["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&whoami).expect("JSON");
    assert_eq!(who["status"]["userInfo"]["username"], "carol");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["developers", "system:authenticated"])
    );
    // Groups from the certificate reach RBAC: bind `view` to the group, not the user.
    let admin = cluster.server.kubeconfig.clone();
    assert!(!cluster.can_i(&carol, &["list", "pods"]));
    cluster.ok(
        &admin,
        &[
            "create",
            "clusterrolebinding",
            "developers-view",
            "--clusterrole=view",
            "--group=developers",
        ],
    );
    assert!(cluster.can_i(&carol, &["list", "pods"]));
    cluster.ok(&carol, &["get", "pods", "-A"]);
}

#[test]
fn rbac_with_kubectl_view_edit_admin_and_impersonation() {
    let cluster = start();
    let admin = cluster.server.kubeconfig.clone();
    let alice = cluster.user("alice");
    let bob = cluster.user("bob");
    cluster.ok(&admin, &["create", "namespace", "team"]);
    // Nobody but the admin can do anything yet.
    let said = cluster.refused(&alice, &["get", "pods", "-n", "team"]);
    assert!(
        said.contains(
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\""
        ),
        "{said}"
    );
    // alice may view everything; bob edits in `team`; carol administers `team`.
    cluster.ok(
        &admin,
        &[
            "create",
            "clusterrolebinding",
            "alice-view",
            "--clusterrole=view",
            "--user=alice",
        ],
    );
    cluster.ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "bob-edit",
            "--clusterrole=edit",
            "--user=bob",
            "-n",
            "team",
        ],
    );
    cluster.ok(&alice, &["get", "pods", "-A"]);
    cluster.ok(&alice, &["get", "deployments", "-n", "team"]);
    // view cannot write and cannot read Secrets.
    let said = cluster.refused(
        &alice,
        &[
            "create",
            "configmap",
            "x",
            "-n",
            "team",
            "--from-literal=a=b",
        ],
    );
    assert!(
        said.contains(
            "configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\""
        ),
        "{said}"
    );
    let said = cluster.refused(&alice, &["get", "secrets", "-n", "team"]);
    assert!(said.contains("forbidden"), "{said}");
    // edit writes workloads in its namespace only, and never RBAC.
    cluster.ok(
        &bob,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox:1.36",
            "-n",
            "team",
        ],
    );
    cluster.ok(
        &bob,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=a=b",
            "-n",
            "team",
        ],
    );
    let said = cluster.refused(
        &bob,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=a=b",
            "-n",
            "default",
        ],
    );
    assert!(said.contains("in the namespace \"default\""), "{said}");
    let said = cluster.refused(
        &bob,
        &[
            "create",
            "rolebinding",
            "sneaky",
            "--clusterrole=admin",
            "--user=bob",
            "-n",
            "team",
        ],
    );
    assert!(
        said.contains("rolebindings.rbac.authorization.k8s.io is forbidden"),
        "{said}"
    );
    // kubectl auth can-i, for oneself and (as admin) for others with --as.
    assert!(cluster.can_i(&bob, &["create", "deployments", "-n", "team"]));
    assert!(!cluster.can_i(&bob, &["create", "deployments", "-n", "default"]));
    assert!(!cluster.can_i(&bob, &["create", "rolebindings", "-n", "team"]));
    assert!(cluster.can_i(&alice, &["list", "pods", "-A"]));
    assert!(!cluster.can_i(&alice, &["get", "secrets", "-n", "team"]));
    assert!(cluster.can_i(&admin, &["create", "pods", "--as", "bob", "-n", "team"]));
    assert!(!cluster.can_i(&admin, &["delete", "nodes", "--as", "bob"]));
    assert!(!cluster.can_i(
        &admin,
        &[
            "get",
            "pods",
            "--as",
            "nobody",
            "--as-group",
            "developers",
            "-n",
            "team"
        ]
    ));
    let list = cluster.ok(&bob, &["auth", "can-i", "--list", "-n", "team"]);
    assert!(list.contains("deployments.apps"), "{list}");
    // Impersonation acts as the other user, and needs the impersonate verb.
    let said = cluster.refused(&admin, &["get", "secrets", "-n", "team", "--as", "alice"]);
    assert!(
        said.contains("User \"alice\" cannot list resource \"secrets\""),
        "{said}"
    );
    let said = cluster.refused(&bob, &["get", "pods", "-n", "team", "--as", "alice"]);
    assert!(
        said.contains("User \"bob\" cannot impersonate resource \"users\""),
        "{said}"
    );
    // Escalation prevention: dana administers `team` and may hand out what she holds there,
    // nothing more.
    cluster.ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "dana-admin",
            "--clusterrole=admin",
            "--user=dana",
            "-n",
            "team",
        ],
    );
    let dana = cluster.user("dana");
    cluster.ok(
        &dana,
        &[
            "create",
            "rolebinding",
            "alice-edit",
            "--clusterrole=edit",
            "--user=alice",
            "-n",
            "team",
        ],
    );
    let said = cluster.refused(
        &dana,
        &[
            "create",
            "rolebinding",
            "dana-root",
            "--clusterrole=cluster-admin",
            "--user=dana",
            "-n",
            "team",
        ],
    );
    assert!(
        said.contains(
            "rolebindings.rbac.authorization.k8s.io \"dana-root\" is forbidden: user \"dana\""
        ) && said.contains("is attempting to grant RBAC permissions not currently held"),
        "{said}"
    );
    let said = cluster.refused(
        &dana,
        &[
            "create",
            "role",
            "node-reader",
            "--verb=get",
            "--resource=nodes",
            "-n",
            "team",
        ],
    );
    assert!(said.contains("not currently held"), "{said}");
    cluster.ok(
        &dana,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "team",
        ],
    );
    // Taking the binding away takes the permission away at once.
    cluster.ok(&admin, &["delete", "rolebinding", "bob-edit", "-n", "team"]);
    assert!(!cluster.can_i(&bob, &["create", "deployments", "-n", "team"]));
}

#[test]
fn python_client_gets_401_and_403_as_kubernetes_sends_them() {
    let cluster = start();
    let admin = cluster.server.kubeconfig.clone();
    cluster.ok(
        &admin,
        &[
            "create",
            "clusterrolebinding",
            "alice-view",
            "--clusterrole=view",
            "--user=alice",
        ],
    );
    let alice = cluster.user("alice");
    let wrong = cluster
        .server
        .kubeconfig_with_user("wrong", "{token: not-a-token}");
    let script = r#"
import json
import sys
from kubernetes import client, config
from kubernetes.client.rest import ApiException

def api(path):
    return client.CoreV1Api(config.new_client_from_config(config_file=path))

alice = api(sys.argv[1])
print("pods:", len(alice.list_pod_for_all_namespaces().items))
try:
    alice.create_namespaced_config_map("default", {"metadata": {"name": "x"}, "data": {"a": "b"}})
    print("created: WRONG")
except ApiException as e:
    print("create:", e.status, e.reason)
    assert e.status == 403, e
    status = json.loads(e.body)
    assert status["reason"] == "Forbidden", status
    assert 'User "alice" cannot create resource "configmaps"' in status["message"], status
try:
    api(sys.argv[2]).list_namespace()
    print("listed: WRONG")
except ApiException as e:
    print("wrong token:", e.status)
    assert e.status == 401, e
print("ok")
"#;
    let out = Command::new(client_tool("python"))
        .arg("-c")
        .arg(script)
        .arg(&alice)
        .arg(&wrong)
        .output()
        .expect("python runs");
    println!("{}", text(&out));
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .trim_end()
                .ends_with("ok"),
        "{}",
        text(&out)
    );
}

#[test]
fn service_account_tokens_from_kubectl_create_token_live_and_die_with_their_account() {
    let cluster = start();
    let admin = cluster.server.kubeconfig.clone();
    cluster.ok(&admin, &["create", "namespace", "team"]);
    // Every namespace gets its `default` ServiceAccount.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cluster
        .server
        .kubectl_using(&admin, &["get", "serviceaccount", "default", "-n", "team"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no default ServiceAccount in team"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    cluster.ok(&admin, &["create", "serviceaccount", "robot", "-n", "team"]);
    cluster.ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "robot-view",
            "--clusterrole=view",
            "--serviceaccount=team:robot",
            "-n",
            "team",
        ],
    );
    let said = cluster.refused(
        &admin,
        &["create", "token", "robot", "-n", "team", "--duration=5m"],
    );
    assert!(
        said.contains("may not specify a duration less than 10 minutes"),
        "{said}"
    );
    let token = cluster.ok(&admin, &["create", "token", "robot", "-n", "team"]);
    let robot = cluster
        .server
        .kubeconfig_with_user("robot", &format!("{{token: {}}}", token.trim()));
    let whoami = cluster.ok(&robot, &["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&whoami).expect("JSON");
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:team:robot"
    );
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    cluster.ok(&robot, &["get", "pods", "-n", "team"]);
    // Issuer discovery, readable by every ServiceAccount: the key that signed the token.
    let discovery: serde_json::Value = serde_json::from_str(&cluster.ok(
        &robot,
        &["get", "--raw", "/.well-known/openid-configuration"],
    ))
    .expect("JSON");
    assert_eq!(
        discovery["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        discovery["jwks_uri"],
        "https://kubernetes.default.svc.cluster.local/openid/v1/jwks"
    );
    let jwks: serde_json::Value =
        serde_json::from_str(&cluster.ok(&robot, &["get", "--raw", "/openid/v1/jwks"]))
            .expect("JSON");
    use base64::Engine as _;
    let header = token.trim().split('.').next().unwrap_or_default();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("base64url"),
    )
    .expect("a JOSE header");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"], "{jwks}");
    assert_eq!(
        (
            jwks["keys"][0]["kty"].as_str(),
            jwks["keys"][0]["crv"].as_str()
        ),
        (Some("EC"), Some("P-256"))
    );
    let said = cluster.refused(&robot, &["get", "pods", "-n", "default"]);
    assert!(
        said.contains("User \"system:serviceaccount:team:robot\" cannot list resource \"pods\""),
        "{said}"
    );
    // A tampered token is no token.
    // One character of the signature changed (not the last: its low bits are padding).
    let mut forged: Vec<char> = token.trim().chars().collect();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let forged = cluster
        .server
        .kubeconfig_with_user("forged-sa", &format!("{{token: {forged}}}"));
    let said = cluster.refused(&forged, &["get", "pods", "-n", "team"]);
    assert!(said.contains("You must be logged in"), "{said}");
    // Deleting the ServiceAccount kills its tokens, checked on every request.
    cluster.ok(&admin, &["delete", "serviceaccount", "robot", "-n", "team"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = cluster
            .server
            .kubectl_using(&robot, &["get", "pods", "-n", "team"]);
        if !out.status.success() && text(&out).contains("You must be logged in") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token outlived its ServiceAccount: {}",
            text(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A ServiceAccount of the same name made again is another account: the old token stays dead.
    cluster.ok(&admin, &["create", "serviceaccount", "robot", "-n", "team"]);
    let said = cluster.refused(&robot, &["get", "pods", "-n", "team"]);
    assert!(said.contains("You must be logged in"), "{said}");
}

#[test]
fn a_node_reads_only_what_its_pods_use_and_writes_only_itself() {
    let cluster = start();
    let admin = cluster.server.kubeconfig.clone();
    let node = cluster
        .server
        .kubeconfig_with_user("n1", "{token: n1-token-0123456789}");
    let dir = cluster.server.dir.path();
    let objects = dir.join("objects.yaml");
    std::fs::write(
        &objects,
        r#"
apiVersion: v1
kind: Secret
metadata: {name: mine, namespace: default}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: theirs, namespace: default}
stringData: {k: v}
---
apiVersion: v1
kind: Pod
metadata: {name: here, namespace: default}
spec:
  nodeName: n1
  containers: [{name: c, image: busybox:1.36}]
  volumes: [{name: s, secret: {secretName: mine}}]
---
apiVersion: v1
kind: Pod
metadata: {name: there, namespace: default}
spec:
  nodeName: n2
  containers: [{name: c, image: busybox:1.36}]
  volumes: [{name: s, secret: {secretName: theirs}}]
---
apiVersion: v1
kind: Node
metadata: {name: n2}
"#,
    )
    .expect("written");
    cluster.ok(&admin, &["apply", "-f", objects.to_str().expect("utf-8")]);
    // Its own Node object it may register; another's not.
    let n1 = dir.join("n1.yaml");
    std::fs::write(&n1, "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n").expect("written");
    cluster.ok(&node, &["create", "-f", n1.to_str().expect("utf-8")]);
    let n3 = dir.join("n3.yaml");
    std::fs::write(&n3, "apiVersion: v1\nkind: Node\nmetadata: {name: n3}\n").expect("written");
    let said = cluster.refused(&node, &["create", "-f", n3.to_str().expect("utf-8")]);
    assert!(
        said.contains("is not allowed to create node \"n3\""),
        "{said}"
    );
    // Secrets: the one its pod mounts, by name; not another node's, not by list.
    cluster.ok(&node, &["get", "secret", "mine"]);
    let said = cluster.refused(&node, &["get", "secret", "theirs"]);
    assert!(
        said.contains("User \"system:node:n1\" cannot get resource \"secrets\""),
        "{said}"
    );
    cluster.refused(&node, &["get", "secrets"]);
    assert!(cluster.can_i(&node, &["get", "secret/mine"]));
    assert!(!cluster.can_i(&node, &["get", "secret/theirs"]));
    // Writes: its own node's status and its own pods' status only.
    cluster.ok(&node, &["label", "node", "n1", "keel.dev/ready=yes"]);
    let said = cluster.refused(&node, &["label", "node", "n2", "keel.dev/ready=yes"]);
    assert!(said.contains("forbidden"), "{said}");
    // (kubectl patch reads pods/status first, which a kubelet never needs; ask instead.)
    assert!(cluster.can_i(&node, &["patch", "pod/here", "--subresource=status"]));
    assert!(!cluster.can_i(&node, &["patch", "pod/there", "--subresource=status"]));
    assert!(!cluster.can_i(&node, &["delete", "pod/there"]));
    cluster.refused(&node, &["delete", "pod", "there"]);
    // Reading pods and services, as a kubelet does, is allowed.
    cluster.ok(&node, &["get", "pods", "-A"]);
    cluster.ok(&node, &["get", "services", "-A"]);
}

#[test]
fn bootstrap_tokens_authenticate_joining_nodes_and_nothing_more() {
    let cluster = start();
    let admin = cluster.server.kubeconfig.clone();
    let tokens = cluster.server.dir.path().join("bootstrap.yaml");
    std::fs::write(
        &tokens,
        r#"
apiVersion: v1
kind: Secret
metadata: {name: bootstrap-token-abcdef, namespace: kube-system}
type: bootstrap.kubernetes.io/token
stringData:
  token-id: abcdef
  token-secret: 0123456789abcdef
  usage-bootstrap-authentication: "true"
  auth-extra-groups: "system:bootstrappers:keel:default-node-token"
---
apiVersion: v1
kind: Secret
metadata: {name: bootstrap-token-old000, namespace: kube-system}
type: bootstrap.kubernetes.io/token
stringData:
  token-id: old000
  token-secret: 0123456789abcdef
  usage-bootstrap-authentication: "true"
  expiration: "2020-01-01T00:00:00Z"
"#,
    )
    .expect("written");
    cluster.ok(&admin, &["apply", "-f", tokens.to_str().expect("utf-8")]);
    let joining = cluster
        .server
        .kubeconfig_with_user("joining", "{token: abcdef.0123456789abcdef}");
    let whoami = cluster.ok(&joining, &["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&whoami).expect("JSON");
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:bootstrap:abcdef"
    );
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:bootstrappers",
            "system:bootstrappers:keel:default-node-token",
            "system:authenticated"
        ])
    );
    let said = cluster.refused(&joining, &["get", "secrets", "-n", "kube-system"]);
    assert!(said.contains("forbidden"), "{said}");
    for token in ["abcdef.0123456789abcdeX", "old000.0123456789abcdef"] {
        let wrong = cluster
            .server
            .kubeconfig_with_user("wrong-bootstrap", &format!("{{token: {token}}}"));
        let said = cluster.refused(&wrong, &["get", "pods"]);
        assert!(said.contains("You must be logged in"), "{token}: {said}");
    }
}

#[test]
fn the_audit_log_records_who_did_what_and_never_a_credential() {
    let tokens = tempfile::tempdir().expect("tempdir");
    let file = tokens.path().join("tokens.csv");
    std::fs::write(&file, TOKENS).expect("token file");
    let log = tokens.path().join("audit.log");
    let server = ApiServer::start(
        Backend::Keel,
        &[
            "--token-auth-file",
            &file.display().to_string(),
            "--audit-log-path",
            &log.display().to_string(),
        ],
    );
    let cluster = Cluster {
        server,
        _tokens: tempfile::tempdir().expect("tempdir"),
    };
    let admin = cluster.server.kubeconfig.clone();
    cluster.ok(&admin, &["get", "pods", "-n", "default"]);
    let alice = cluster.user("alice");
    cluster.refused(&alice, &["get", "secrets", "-n", "default"]);
    cluster.refused(&admin, &["get", "pods", "--as", "alice"]);
    let wrong = cluster
        .server
        .kubeconfig_with_user("wrong", "{token: not-a-token-zzz}");
    cluster.refused(&wrong, &["get", "pods"]);
    // A watch: started and completed, one auditID.
    let _ = cluster
        .server
        .kubectl_using(&admin, &["get", "configmaps", "-w", "--request-timeout=1s"]);
    // The writer flushes each batch; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is a JSON event"))
            .collect();
        let watch_done = events
            .iter()
            .any(|e| e["verb"] == "watch" && e["stage"] == "ResponseComplete");
        if watch_done || std::time::Instant::now() > deadline {
            assert!(
                !text.contains("alice-token") && !text.contains("not-a-token-zzz"),
                "a credential reached the audit log"
            );
            break events;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(events.iter().all(|e| e["kind"] == "Event"
        && e["apiVersion"] == "audit.k8s.io/v1"
        && e["level"] == "Metadata"));
    let find = |f: &dyn Fn(&serde_json::Value) -> bool| events.iter().find(|e| f(e)).cloned();
    let listed = find(&|e| {
        e["verb"] == "list"
            && e["objectRef"]["resource"] == "pods"
            && e["user"]["username"] == "kubernetes-admin"
    })
    .expect("the admin's list is audited");
    assert_eq!(listed["responseStatus"]["code"], 200);
    assert_eq!(listed["objectRef"]["namespace"], "default");
    let forbidden = find(&|e| e["user"]["username"] == "alice" && e["verb"] == "list")
        .expect("alice's refused list is audited");
    assert_eq!(forbidden["responseStatus"]["code"], 403);
    assert_eq!(
        forbidden["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    let impersonated = find(&|e| e["impersonatedUser"]["username"] == "alice")
        .expect("impersonation is audited with both users");
    assert_eq!(impersonated["user"]["username"], "kubernetes-admin");
    let unauthorized =
        find(&|e| e["responseStatus"]["code"] == 401).expect("a failed authentication is audited");
    assert_eq!(unauthorized["stage"], "ResponseStarted");
    assert_eq!(unauthorized["user"], serde_json::json!({}));
    let watch_ids: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["verb"] == "watch")
        .map(|e| &e["auditID"])
        .collect();
    assert!(
        watch_ids.len() >= 2
            && watch_ids
                .iter()
                .any(|id| watch_ids.iter().filter(|x| *x == id).count() == 2),
        "a watch has its ResponseStarted and ResponseComplete under one auditID: {watch_ids:?}"
    );
}
