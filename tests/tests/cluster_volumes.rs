//! Volumes whose files come from the API server, on a real node: a pod from the API gets its
//! ConfigMap, Secret, downward API and projected ServiceAccount token files, read-only, on a
//! tmpfs; a ConfigMap edited afterwards reaches the running container; the token is the pod's
//! ServiceAccount's (the API server says who it is); a pod naming a missing Secret waits with
//! `FailedMount` until the Secret exists; and nothing stays mounted on the host once the pod
//! is gone. The same pod is the target of the real `kubectl exec` (through the API server's
//! `pods/exec` and the node's WebSocket endpoint): output, stdin, stderr and exit codes.

use std::time::{Duration, Instant};

use keel_tests::cluster::Cluster;
use keel_tests::TestResult;

const READER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: reader, namespace: default, labels: {app: reader, tier: front}}
spec:
  containers:
  - name: app
    image: IMAGE
    command: [sh, -c, 'echo "token=$(cat /var/run/secrets/tokens/token)"; touch /etc/cfg/x 2>/dev/null && echo cfg=writable || echo cfg=readonly; while true; do echo "greeting=$(cat /etc/cfg/greeting) password=$(cat /etc/sec/password) mode=$(stat -L -c %a /etc/sec/password) labels=$(tr "\n" , < /etc/info/labels) ns=$(cat /var/run/secrets/tokens/namespace)"; sleep 1; done']
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec}
    - {name: info, mountPath: /etc/info}
    - {name: tokens, mountPath: /var/run/secrets/tokens}
  volumes:
  - {name: cfg, configMap: {name: app-config}}
  - {name: sec, secret: {secretName: app-secret, defaultMode: 256}}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - name: tokens
    projected:
      sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3600}
      - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
"#;

/// The newest line of `kubectl logs` that starts with `prefix`.
fn last_line(logs: &str, prefix: &str) -> Option<String> {
    logs.lines()
        .rev()
        .find(|line| line.starts_with(prefix))
        .map(str::to_owned)
}

fn wait_for_log(
    cluster: &Cluster,
    pod: &str,
    prefix: &str,
    wanted: &str,
    within: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(logs) = cluster.kubectl(&["logs", pod]) {
            if let Some(line) = last_line(&logs, prefix) {
                if line.contains(wanted) {
                    return Ok(line);
                }
                last = line;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "{pod}: no {wanted:?} in its logs within {within:?}; last: {last:?}\n{}",
        cluster.lab.logs()
    ))
}

/// Mount points on the host whose path names `needle`.
fn host_mounts(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn api_volumes_reach_the_container_and_follow_their_objects() -> TestResult {
    let cluster = Cluster::start(1, "ebpf", &[])?;
    cluster.kubectl(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=greeting=hello",
    ])?;
    cluster.kubectl(&[
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=password=s3cret",
    ])?;
    cluster.apply(&READER.replace("IMAGE", keel_lab::oci::BUSYBOX_IMAGE))?;
    let line = wait_for_log(
        &cluster,
        "reader",
        "greeting=",
        "greeting=hello",
        Duration::from_secs(90),
    )?;
    assert_eq!(
        line,
        "greeting=hello password=s3cret mode=400 labels=app=\"reader\",tier=\"front\" ns=default",
        "the files of all four volume types"
    );
    let logs = cluster.kubectl(&["logs", "reader"])?;
    assert!(
        logs.contains("cfg=readonly"),
        "a ConfigMap volume is read-only: {logs}"
    );

    // The projected token is the pod's ServiceAccount's, bound to the pod.
    let token = last_line(&logs, "token=")
        .and_then(|line| line.strip_prefix("token=").map(str::to_owned))
        .filter(|token| token.len() > 100)
        .ok_or_else(|| format!("no token in the logs: {logs}"))?;
    let mut config: serde_json::Value = serde_json::from_str(
        &cluster.kubectl(&["config", "view", "--raw", "--minify", "-o", "json"])?,
    )?;
    config["users"] = serde_json::json!([{"name": "pod", "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = serde_json::json!("pod");
    let kubeconfig = cluster.dir().join("pod-token.kubeconfig");
    std::fs::write(&kubeconfig, config.to_string())?;
    let whoami: serde_json::Value = serde_json::from_str(
        &cluster.kubectl_with(&kubeconfig, &["auth", "whoami", "-o", "json"])?,
    )?;
    let user = &whoami["status"]["userInfo"];
    assert_eq!(
        user["username"], "system:serviceaccount:default:default",
        "{whoami}"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0], "reader",
        "{whoami}"
    );

    exec_works_as_kubectl_expects(&cluster)?;

    // An edited ConfigMap reaches the running container (the daemon reads it again every 30 s,
    // the runtime writes what changed every 10 s).
    cluster.kubectl(&[
        "patch",
        "configmap",
        "app-config",
        "-p",
        r#"{"data":{"greeting":"bonjour"}}"#,
    ])?;
    wait_for_log(
        &cluster,
        "reader",
        "greeting=",
        "greeting=bonjour",
        Duration::from_secs(75),
    )?;
    let restarts = cluster.json(&["get", "pod", "reader"])?["status"]["containerStatuses"][0]
        ["restartCount"]
        .clone();
    assert_eq!(restarts, 0, "the update needed no restart");

    // A pod naming a Secret that does not exist waits, saying why, and starts once it does.
    let waiting = READER
        .replace("IMAGE", keel_lab::oci::BUSYBOX_IMAGE)
        .replace("name: reader,", "name: waiter,")
        .replace("secretName: app-secret", "secretName: later");
    cluster.apply(&waiting)?;
    cluster.wait(
        "the waiter held at ContainerCreating by its missing Secret",
        &["get", "pod", "waiter"],
        Duration::from_secs(60),
        |pod| {
            let state = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
            state["reason"] == "ContainerCreating"
                && state["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("secret \"later\" not found"))
        },
    )?;
    cluster.kubectl(&[
        "create",
        "secret",
        "generic",
        "later",
        "--from-literal=password=late",
    ])?;
    wait_for_log(
        &cluster,
        "waiter",
        "greeting=",
        "password=late",
        Duration::from_secs(60),
    )?;

    // Deleted: the pods' tmpfs mounts leave the host with them.
    let uid = cluster.json(&["get", "pod", "reader"])?["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!uid.is_empty());
    assert!(
        !host_mounts(&uid).is_empty(),
        "the volumes are tmpfs mounts while the pod runs"
    );
    cluster.kubectl(&["delete", "pod", "reader", "waiter", "--grace-period=1"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host_mounts(&uid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        host_mounts(&uid),
        Vec::<String>::new(),
        "nothing of the pod stays mounted"
    );
    Ok(())
}

/// `kubectl ARGS` (a shell line: redirections allowed) on the lab's switch as the admin: exit
/// code, stdout (lines, as the lab collects them) and stderr.
fn kubectl_output(cluster: &Cluster, shell: &str) -> Result<(i32, String, String), String> {
    let stderr = cluster
        .dir()
        .join(format!("kubectl-{}.err", keel_lab::unique_id()));
    // stdin: a line for the commands that read it (`-i`).
    let line = format!(
        "echo from stdin | {} --kubeconfig {} {shell} 2>{}",
        cluster.kubectl.display(),
        cluster.lab.admin_kubeconfig.display(),
        stderr.display()
    );
    let output = cluster
        .lab
        .run_on_switch(std::path::Path::new("sh"), &["-c", &line])
        .map_err(|e| e.to_string())?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        std::fs::read_to_string(&stderr).unwrap_or_default(),
    ))
}

fn exec_works_as_kubectl_expects(cluster: &Cluster) -> Result<(), String> {
    // Output, from the container's own view of its volume.
    let (code, out, err) = kubectl_output(cluster, "exec reader -- cat /etc/cfg/greeting")?;
    assert_eq!((code, out.as_str()), (0, "hello"), "stderr: {err}");
    // stdin through, closed at its end (v5's close signal), and stderr apart from stdout.
    let (code, out, err) = kubectl_output(
        cluster,
        "exec -i reader -- sh -c 'tr a-z A-Z; echo oops >&2; echo done'",
    )?;
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out, "FROM STDIN\ndone");
    assert!(err.contains("oops"), "stderr: {err:?}");
    // kubectl exits with the command's code.
    let (code, _, err) = kubectl_output(cluster, "exec reader -- sh -c 'exit 3'")?;
    assert_eq!(code, 3, "stderr: {err}");
    // The command runs in the container: its namespace, its hostname, its files.
    let (code, out, _) = kubectl_output(cluster, "exec reader -c app -- hostname")?;
    assert_eq!((code, out.trim()), (0, "reader"));
    // `-it`: the command's stdin is a terminal, sized as the client's (kubectl runs under
    // `script`, which gives it one).
    let line = format!(
        "stty cols 91 rows 17; {} --kubeconfig {} exec -it reader -- sh -c '[ -t 0 ] && echo tty-yes; stty size'",
        cluster.kubectl.display(),
        cluster.lab.admin_kubeconfig.display()
    );
    let output = cluster
        .lab
        .run_on_switch(
            std::path::Path::new("script"),
            &["-qec", &line, "/dev/null"],
        )
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    assert!(output.status.success(), "{text}");
    assert!(text.contains("tty-yes"), "{text}");
    assert!(text.contains("17 91"), "the terminal's size: {text}");
    // Refusals, in kube's words.
    let (code, _, err) = kubectl_output(cluster, "exec reader -c nope -- true")?;
    assert_ne!(code, 0);
    assert!(
        err.contains("container nope is not valid for pod reader"),
        "{err}"
    );
    let (code, _, err) = kubectl_output(cluster, "exec nobody -- true")?;
    assert_ne!(code, 0);
    assert!(err.contains("pods \"nobody\" not found"), "{err}");
    // Only who may create pods/exec: a viewer (who reads the pod) may not.
    cluster.kubectl(&[
        "create",
        "rolebinding",
        "viewer-view",
        "--clusterrole=view",
        "--user=viewer",
    ])?;
    let (code, _, err) = kubectl_output(
        cluster,
        "exec reader --as=viewer --as-group=system:authenticated -- true",
    )?;
    assert_ne!(code, 0);
    assert!(
        err.contains("forbidden") && err.contains("pods/exec"),
        "{err}"
    );
    Ok(())
}
