//! The pod runtime, for real: pause and namespaces, the bridge and veths, overlay root file
//! systems from an imported image, cgroup limits, restarts with back-off, graceful stop, and
//! a daemon restart that adopts running pods.

use std::{process::Command, time::Duration};

use keel_tests::{
    pods::{container_status, is_running, pod_yaml, PodNode},
    TestResult,
};

const LONG: Duration = Duration::from_secs(30);

/// A pod's two containers share its network: one serves on localhost, the other reaches it.
/// Killing one container restarts it without touching the other or the pod's address.
#[test]
fn containers_share_localhost_and_outlive_each_other() -> TestResult {
    let node = PodNode::start("pod-localhost", &["--restart-backoff", "100ms"])?;
    node.apply(
        "web.yaml",
        &pod_yaml(
            "web",
            "",
            &[
                ("server", "mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www"),
                ("client", "hostname; grep web /etc/hosts; while true; do wget -q -O - http://127.0.0.1:8080/; sleep 0.2; done"),
            ],
        ),
    )?;
    let pod = node.wait_pod("web", LONG, |p| {
        is_running(p, "server") && is_running(p, "client")
    })?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .ok_or("no podIP")?
        .to_owned();
    assert!(ip.starts_with("10.244.1."), "{ip}");
    let log = node.wait_log("web", "client", "hello-from-server", LONG)?;
    // The pod's hostname and /etc/hosts are its own.
    assert!(log.lines().next() == Some("web"), "{log}");
    assert!(log.contains(&format!("{ip}\tweb")), "{log}");
    // Reachable from the node by the pod's address.
    let url = format!("http://{ip}:8080/");
    assert_eq!(node.http_get(&url)?.as_deref(), Some("hello-from-server"));

    // Kill the client: the server keeps serving throughout, the client comes back.
    let client = node.container_pid(&pod, "client")?;
    // SAFETY: kill(2) of a process this test's daemon started.
    unsafe { libc::kill(client, libc::SIGKILL) };
    assert_eq!(node.http_get(&url)?.as_deref(), Some("hello-from-server"));
    let pod = node.wait_pod("web", LONG, |p| {
        container_status(p, "client")["restartCount"] == 1 && is_running(p, "client")
    })?;
    assert_eq!(
        pod["status"]["podIP"],
        ip.as_str(),
        "the address survives a container restart"
    );
    assert_eq!(container_status(&pod, "server")["restartCount"], 0);
    let last = &container_status(&pod, "client")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");
    assert_eq!(node.http_get(&url)?.as_deref(), Some("hello-from-server"));
    Ok(())
}

/// Pods reach each other by IP over the bridge, and a Service ClusterIP from inside a pod
/// (pods live in keel's cgroup, so the socket programs translate their connects).
#[test]
fn pods_reach_each_other_and_services() -> TestResult {
    pod_to_pod_and_service("ebpf")
}

/// The same through kube-proxy's rule layouts: the connection is DNATed on the node and routed
/// back onto the bridge, and the reply, bridged at layer 2, must pass netfilter to be un-NATed.
#[test]
fn pods_reach_services_through_iptables() -> TestResult {
    pod_to_pod_and_service("iptables")
}

#[test]
fn pods_reach_services_through_nftables() -> TestResult {
    pod_to_pod_and_service("nftables")
}

fn pod_to_pod_and_service(mode: &str) -> TestResult {
    let node = PodNode::start(&format!("pod-to-pod-{mode}"), &["--proxy-mode", mode])?;
    // The Service first, with no endpoints: the server's own calls are refused at once until
    // its endpoint is in (a VIP with no Service at all is a black hole, where a connect would
    // wait out its SYN retries).
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 10.96.0.50\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";
    node.apply("service.yaml", service)?;
    node.apply(
        "server.yaml",
        &pod_yaml(
            "server",
            "",
            &[
                ("httpd", "mkdir -p /www && echo served-by-pod > /www/index.html && exec httpd -f -p 8080 -h /www"),
                // The pod calls its own Service: in the netfilter modes that is a hairpin
                // through the node (its bridge port must send the frame back).
                ("self", "while true; do wget -q -O - http://10.96.0.50/ | sed s/^/self:/; sleep 0.2; done"),
            ],
        ),
    )?;
    let server = node.wait_pod("server", LONG, |p| is_running(p, "httpd"))?;
    let ip = server["status"]["podIP"]
        .as_str()
        .ok_or("no podIP")?
        .to_owned();
    node.apply(
        "service.yaml",
        &format!(
            "{service}---\n{}",
            keel_tests::slice_yaml("web", 8080, &[(ip.parse()?, true)])
        ),
    )?;
    node.apply(
        "client.yaml",
        &pod_yaml(
            "client",
            "",
            &[("fetch", &format!("while true; do wget -q -O - http://{ip}:8080/ | sed s/^/direct:/; wget -q -O - http://10.96.0.50/ | sed s/^/vip:/; sleep 0.2; done"))],
        ),
    )?;
    node.wait_log("client", "fetch", "direct:served-by-pod", LONG)?;
    node.wait_log("client", "fetch", "vip:served-by-pod", LONG)?;
    node.wait_log("server", "self", "self:served-by-pod", LONG)?;
    Ok(())
}

/// A crashing container restarts with the back-off doubling to its cap; the pod shows
/// CrashLoopBackOff while it waits, the previous run's exit and its log.
#[test]
fn crash_loop_backs_off_in_sequence() -> TestResult {
    let node = PodNode::start(
        "pod-crashloop",
        &[
            "--restart-backoff",
            "100ms",
            "--restart-backoff-max",
            "400ms",
        ],
    )?;
    node.apply(
        "crash.yaml",
        &pod_yaml("crash", "", &[("app", "echo run; exit 3")]),
    )?;
    let pod = node.wait_pod("crash", LONG, |p| {
        container_status(p, "app")["restartCount"].as_u64() >= Some(5)
    })?;
    let last = &container_status(&pod, "app")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "{last}");
    assert_eq!(last["reason"], "Error", "{last}");
    // The delays chosen, in order, from the daemon's back-off lines.
    let delays: Vec<u64> = node
        .daemon
        .log_numbers("restarting failed container=app", "delay_ms");
    assert!(delays.len() >= 5, "{delays:?}");
    assert_eq!(
        &delays[..5],
        &[100, 200, 400, 400, 400],
        "doubling to the cap"
    );
    // While waiting the reason is CrashLoopBackOff (a long back-off makes the wait visible).
    node.remove("crash.yaml")?;
    node.wait_gone("crash", LONG)?;
    let slow = PodNode::start("pod-crashwait", &["--restart-backoff", "30s"])?;
    slow.apply(
        "crash.yaml",
        &pod_yaml("crash", "", &[("app", "echo run; exit 3")]),
    )?;
    let pod = slow.wait_pod("crash", LONG, |p| {
        container_status(p, "app")["restartCount"] == 1
    })?;
    let waiting = &container_status(&pod, "app")["state"]["waiting"];
    assert_eq!(waiting["reason"], "CrashLoopBackOff", "{pod}");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or("")
            .contains("back-off 30s"),
        "{waiting}"
    );
    assert_eq!(slow.logs("crash", "app", false)?, "run\n");
    Ok(())
}

/// restartPolicy Never and OnFailure end in the phases Kubernetes gives them.
#[test]
fn restart_policies_end_in_the_right_phase() -> TestResult {
    let node = PodNode::start("pod-policies", &["--restart-backoff", "100ms"])?;
    node.apply(
        "never.yaml",
        &pod_yaml("never", "  restartPolicy: Never\n", &[("app", "exit 1")]),
    )?;
    node.apply(
        "done.yaml",
        &pod_yaml("done", "  restartPolicy: OnFailure\n", &[("app", "exit 0")]),
    )?;
    let never = node.wait_pod("never", LONG, |p| p["status"]["phase"] == "Failed")?;
    assert_eq!(container_status(&never, "app")["restartCount"], 0);
    let done = node.wait_pod("done", LONG, |p| p["status"]["phase"] == "Succeeded")?;
    assert_eq!(
        container_status(&done, "app")["state"]["terminated"]["reason"],
        "Completed"
    );
    Ok(())
}

/// A container allocating past its memory limit is killed by the kernel (SIGKILL, 137).
#[test]
fn memory_limit_is_enforced() -> TestResult {
    let node = PodNode::start("pod-memory", &[])?;
    let yaml = format!(
        "{}    resources:\n      limits: {{memory: 32Mi}}\n",
        pod_yaml(
            "hog",
            "  restartPolicy: Never\n",
            // dd's 64 MiB block is one allocation, touched as it is filled.
            &[(
                "app",
                "echo start; exec dd if=/dev/zero of=/dev/null bs=64M count=1"
            )]
        )
    );
    node.apply("hog.yaml", &yaml)?;
    let pod = node.wait_pod("hog", LONG, |p| p["status"]["phase"] == "Failed")?;
    let terminated = &container_status(&pod, "app")["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    assert_eq!(terminated["signal"], 9, "{terminated}");
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(node.logs("hog", "app", false)?, "start\n");
    // A container within its limit is unaffected.
    let fits = format!(
        "{}    resources:\n      limits: {{memory: 32Mi}}\n",
        pod_yaml(
            "fits",
            "  restartPolicy: Never\n",
            &[(
                "app",
                "dd if=/dev/zero of=/dev/null bs=4M count=1 && echo fine"
            )]
        )
    );
    node.apply("fits.yaml", &fits)?;
    let pod = node.wait_pod("fits", LONG, |p| p["status"]["phase"] == "Succeeded")?;
    assert_eq!(
        container_status(&pod, "app")["state"]["terminated"]["exitCode"],
        0
    );
    Ok(())
}

/// Removing a pod: every container gets SIGTERM while the network is still up; one that
/// ignores it is killed after the grace period; then the sandbox, address and cgroups go.
#[test]
fn graceful_stop_terminates_then_kills_then_tears_down() -> TestResult {
    let node = PodNode::start("pod-stop", &[])?;
    node.apply(
        "stop.yaml",
        &pod_yaml(
            "stop",
            "  terminationGracePeriodSeconds: 2\n",
            &[
                ("polite", "trap 'echo \"got-TERM eth0=$(cat /sys/class/net/eth0/operstate)\"; exit 0' TERM; echo started; while true; do sleep 0.1; done"),
                ("stubborn", "trap '' TERM; while true; do sleep 0.1; done"),
            ],
        ),
    )?;
    let pod = node.wait_pod("stop", LONG, |p| {
        is_running(p, "polite") && is_running(p, "stubborn")
    })?;
    node.wait_log("stop", "polite", "started", LONG)?;
    let dir = node.pod_dir(&pod);
    let started = std::time::Instant::now();
    node.remove("stop.yaml")?;
    // The TERM handler ran with the pod's network still up (the log is read before the
    // stubborn container's grace period ends and the pod is removed). One line, written at
    // once: with the state on a line of its own, the log could be read between the two.
    let log = node.wait_log("stop", "polite", "got-TERM", Duration::from_secs(2))?;
    assert!(log.contains("got-TERM eth0=up\n"), "{log}");
    node.wait_gone("stop", LONG)?;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the grace period was honoured"
    );
    let daemon_log = node.daemon.log();
    let position = |needle: &str| {
        daemon_log
            .iter()
            .position(|l| l.contains(needle))
            .ok_or_else(|| format!("no {needle:?} in:\n{}", daemon_log.join("\n")))
    };
    let order = [
        position("killing containers with a grace period")?,
        position("grace period over")?,
        position("all containers stopped")?,
        position("pod sandbox stopped")?,
        position("pod removed")?,
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(!dir.exists(), "pod state removed");
    let ipam = node.state.path().join("ipam");
    assert_eq!(
        std::fs::read_dir(&ipam).map(|d| d.count()).unwrap_or(0),
        0,
        "address released"
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let veth = format!("kv{}", &uid[..12]);
    let mut ip = Command::new("ip");
    ip.args(["link", "show", &veth]);
    let (code, _) = node.on_node("ip", ip)?;
    assert_ne!(code, Some(0), "veth {veth} removed");
    assert!(!node
        .cgroup
        .path()
        .join("pods")
        .join(format!("pod-{uid}"))
        .exists());
    Ok(())
}

/// The daemon stops; pods keep running; a new daemon adopts them — and counts the restart of
/// a container that died while no daemon watched.
#[test]
fn restarted_daemon_adopts_running_pods() -> TestResult {
    let mut node = PodNode::start("pod-adopt", &["--restart-backoff", "100ms"])?;
    node.apply(
        "steady.yaml",
        &pod_yaml("steady", "", &[("app", "mkdir -p /www && echo steady > /www/index.html && exec httpd -f -p 8080 -h /www"), ("worker", "while true; do sleep 0.1; done")]),
    )?;
    let pod = node.wait_pod("steady", LONG, |p| {
        is_running(p, "app") && is_running(p, "worker")
    })?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .ok_or("no podIP")?
        .to_owned();
    let app = node.container_pid(&pod, "app")?;
    let worker = node.container_pid(&pod, "worker")?;
    node.daemon.stop();
    let url = format!("http://{ip}:8080/");
    assert_eq!(
        node.http_get(&url)?.as_deref(),
        Some("steady"),
        "serving without a daemon"
    );
    // SAFETY: kill(2) of a container process of this test.
    unsafe { libc::kill(worker, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    node.daemon.restart()?;
    let pod = node.wait_pod("steady", LONG, |p| {
        container_status(p, "worker")["restartCount"] == 1 && is_running(p, "worker")
    })?;
    assert_eq!(pod["status"]["podIP"], ip.as_str(), "same sandbox");
    assert_eq!(container_status(&pod, "app")["restartCount"], 0);
    assert_eq!(
        node.container_pid(&pod, "app")?,
        app,
        "the running container was adopted, not restarted"
    );
    assert_eq!(
        container_status(&pod, "worker")["lastState"]["terminated"]["exitCode"],
        137
    );
    assert_eq!(node.pods()?.len(), 1, "no duplicate pod");
    assert!(node
        .daemon
        .log()
        .iter()
        .any(|l| l.contains("adopted the running pod sandbox")));
    Ok(())
}

/// A missing image leaves the container waiting with a reason that says what to do; an
/// unreadable archive is refused by `image import` with a message.
#[test]
fn missing_images_and_bad_archives_are_explained() -> TestResult {
    let node = PodNode::start("pod-image", &[])?;
    node.apply(
        "ghost.yaml",
        &pod_yaml("ghost", "", &[("app", "true")])
            .replace(keel_tests::pods::BUSYBOX, "example.com/ghost:1"),
    )?;
    let pod = node.wait_pod("ghost", LONG, |p| {
        !container_status(p, "app")["state"]["waiting"]["message"].is_null()
    })?;
    let waiting = &container_status(&pod, "app")["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImageNeverPull", "{waiting}");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or("")
            .contains("node-daemon image import"),
        "{waiting}"
    );
    assert_eq!(pod["status"]["phase"], "Pending");

    let bad = node.state.path().join("bad.tar");
    std::fs::write(&bad, b"not an archive")?;
    let output = Command::new(keel_lab::bin("node-daemon"))
        .args(["image", "import"])
        .arg(&bad)
        .arg("--state-dir")
        .arg(node.state.path())
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.tar"), "{stderr}");
    Ok(())
}

/// Malformed Pod YAML is rejected with the field's path; nothing runs; fixing it runs it.
/// Unknown fields are accepted with a warning naming them.
#[test]
fn malformed_pods_are_rejected_by_field() -> TestResult {
    let node = PodNode::start("pod-malformed", &[])?;
    let bad = format!(
        "{}    resources:\n      limits: {{memory: lots}}\n",
        pod_yaml("bad", "", &[("app", "sleep 1000")])
    );
    node.apply("bad.yaml", &bad)?;
    node.daemon.wait_for_log(
        &["bad.yaml", "spec.containers[0].resources.limits.memory"],
        LONG,
    )?;
    assert!(node.pods()?.is_empty());
    let bad_probe = format!(
        "{}    livenessProbe: {{tcpSocket: {{port: 8080}}, successThreshold: 2}}\n",
        pod_yaml("probed", "", &[("app", "sleep 1000")])
    );
    node.apply("probed.yaml", &bad_probe)?;
    node.daemon.wait_for_log(
        &[
            "probed.yaml",
            "spec.containers[0].livenessProbe.successThreshold",
            "must be 1",
        ],
        LONG,
    )?;
    assert!(node.pods()?.is_empty());
    let fixed = bad.replace("memory: lots", "memory: 64Mi").replace(
        "    image:",
        "    lifecycle: {preStop: {exec: {command: [sleep, '1']}}}\n    image:",
    );
    node.apply("bad.yaml", &fixed)?;
    // A field Kubernetes defines and keel does not act on is named, and kept.
    node.daemon.wait_for_log(
        &["spec.containers[0].lifecycle is kept, but keel does not act on it"],
        LONG,
    )?;
    node.wait_pod("bad", LONG, |p| is_running(p, "app"))?;
    Ok(())
}

/// Containers run without the capabilities Docker drops, with no_new_privs, as the user the
/// pod asks for; a shared PID namespace shows the pause process as PID 1.
#[test]
fn security_defaults_and_shared_pid_namespace() -> TestResult {
    let node = PodNode::start("pod-security", &[])?;
    let report =
        "id -u; id -g; grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; sleep 1000";
    let yaml = pod_yaml(
        "secure",
        "  shareProcessNamespace: true\n  securityContext: {runAsUser: 65534, runAsGroup: 65534}\n",
        &[("nobody", report), ("root", report)],
    )
    .replace(
        "  - name: root\n",
        "  - name: root\n    securityContext: {runAsUser: 0, runAsGroup: 0}\n",
    );
    node.apply("secure.yaml", &yaml)?;
    // Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
    let docker_default = "00000000a80425fb";
    let root = node.wait_log("secure", "root", "NoNewPrivs", LONG)?;
    assert!(root.starts_with("0\n0\n"), "{root}");
    assert!(
        root.contains(&format!("CapBnd:\t{docker_default}")),
        "{root}"
    );
    assert!(
        root.contains(&format!("CapEff:\t{docker_default}")),
        "{root}"
    );
    assert!(root.contains("NoNewPrivs:\t1"), "{root}");
    let nobody = node.wait_log("secure", "nobody", "NoNewPrivs", LONG)?;
    assert!(nobody.starts_with("65534\n65534\n"), "{nobody}");
    assert!(nobody.contains("CapEff:\t0000000000000000"), "{nobody}");
    assert!(
        nobody.contains(&format!("CapBnd:\t{docker_default}")),
        "{nobody}"
    );

    // One PID namespace: PID 1 is the pause process, and each container sees the other.
    node.apply(
        "shared.yaml",
        &pod_yaml(
            "shared",
            "  shareProcessNamespace: true\n",
            &[
                ("a", "exec sleep 1000"),
                (
                    "b",
                    "cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o pid,args; sleep 1000",
                ),
            ],
        ),
    )?;
    let log = node.wait_log("shared", "b", "sleep 1000", LONG)?;
    assert!(log.starts_with("keel-pause pause"), "{log}");
    // Without sharing, a container is PID 1 of its own namespace.
    node.apply(
        "alone.yaml",
        &pod_yaml("alone", "", &[("a", "echo pid=$$; sleep 1000")]),
    )?;
    node.wait_log("alone", "a", "pid=1\n", LONG)?;
    Ok(())
}

/// Limits land in the kernel's cgroup files; usage is on /metrics; `pods` shows the table.
#[test]
fn resources_reach_the_cgroups_and_metrics() -> TestResult {
    let node = PodNode::start("pod-resources", &[])?;
    let yaml = format!(
        "{}    resources:\n      requests: {{cpu: 250m}}\n      limits: {{cpu: 500m, memory: 64Mi}}\n",
        pod_yaml("limited", "", &[("app", "while true; do sleep 0.1; done")])
    );
    node.apply("limited.yaml", &yaml)?;
    let pod = node.wait_pod("limited", LONG, |p| is_running(p, "app"))?;
    let uid = pod["metadata"]["uid"].as_str().ok_or("uid")?;
    let relative = std::path::Path::new(node.cgroup.path().file_name().ok_or("cgroup")?)
        .join("pods")
        .join(format!("pod-{uid}"))
        .join("app");
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let v1_memory = std::path::Path::new("/sys/fs/cgroup/memory").join(&relative);
    if v1_memory.exists() {
        // Hybrid host (this project's machines): memory and cpu are v1 controllers.
        assert_eq!(
            read(v1_memory.join("memory.limit_in_bytes"))?,
            (64u64 << 20).to_string()
        );
        let cpu = std::path::Path::new("/sys/fs/cgroup/cpu").join(&relative);
        assert_eq!(read(cpu.join("cpu.cfs_quota_us"))?, "50000");
        assert_eq!(read(cpu.join("cpu.shares"))?, "256");
    } else {
        let dir = node
            .cgroup
            .path()
            .join("pods")
            .join(format!("pod-{uid}"))
            .join("app");
        assert_eq!(read(dir.join("memory.max"))?, (64u64 << 20).to_string());
        assert_eq!(read(dir.join("cpu.max"))?, "50000 100000");
    }
    let metrics = node.daemon.metrics()?;
    let labels = "{namespace=\"default\",pod=\"limited\",container=\"app\"}";
    for family in [
        "keel_container_cpu_usage_seconds_total",
        "keel_container_memory_working_set_bytes",
        "keel_container_process_resident_bytes",
        "keel_container_process_threads",
        "keel_container_restarts_total",
        "keel_container_oom_kills_total",
        "keel_container_ready",
    ] {
        assert!(
            metrics.contains(&format!("{family}{labels}")),
            "{family} missing:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("keel_pods{namespace=\"default\",pod=\"limited\",phase=\"Running\"} 1"),
        "{metrics}"
    );
    let table = std::process::Command::new(keel_lab::bin("node-daemon"))
        .args(["pods", "--state-dir"])
        .arg(node.state.path())
        .output()?;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().any(|l| l.contains("limited")
            && l.contains("1/1")
            && l.contains("Running")
            && l.contains("app=Running")),
        "{table}"
    );
    Ok(())
}

/// Changing a pod's manifest replaces the pod (a new uid); removing it stops it.
#[test]
fn changed_manifest_replaces_the_pod() -> TestResult {
    let node = PodNode::start("pod-update", &[])?;
    node.apply(
        "v.yaml",
        &pod_yaml("versioned", "", &[("app", "echo v1; sleep 1000")]),
    )?;
    let first = node.wait_pod("versioned", LONG, |p| is_running(p, "app"))?;
    node.wait_log("versioned", "app", "v1", LONG)?;
    node.apply(
        "v.yaml",
        &pod_yaml("versioned", "", &[("app", "echo v2; sleep 1000")]),
    )?;
    let second = node.wait_pod("versioned", LONG, |p| {
        p["metadata"]["uid"] != first["metadata"]["uid"] && is_running(p, "app")
    })?;
    node.wait_log("versioned", "app", "v2", LONG)?;
    assert_eq!(node.pods()?.len(), 1, "the old pod is gone");
    assert!(!node.pod_dir(&first).exists());
    node.remove("v.yaml")?;
    node.wait_gone("versioned", LONG)?;
    assert!(!node.pod_dir(&second).exists());
    Ok(())
}

/// emptyDir volumes are shared by a pod's containers and outlive a container's restart (a
/// tmpfs for `medium: Memory`, bounded by its sizeLimit); a hostPath is mounted, through a
/// subPath and read-only, where asked; everything, the tmpfs included, goes with the pod.
#[test]
fn volumes_are_shared_kept_across_restarts_and_removed_with_the_pod() -> TestResult {
    let node = PodNode::start("pod-volumes", &["--restart-backoff", "100ms"])?;
    let host = tempfile::tempdir()?;
    std::fs::create_dir_all(host.path().join("conf"))?;
    std::fs::write(host.path().join("conf/setting"), "from-the-host\n")?;
    let busybox = keel_tests::pods::BUSYBOX;
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: vols}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: shared, emptyDir: {{}}}}
  - {{name: fast, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}
  - {{name: host, hostPath: {{path: "{host}", type: Directory}}}}
  containers:
  - name: writer
    image: {busybox}
    command: [sh, -c, "echo start >> /shared/starts; echo fast > /fast/note; exec sleep 3600"]
    volumeMounts: [{{name: shared, mountPath: /shared}}, {{name: fast, mountPath: /fast}}]
  - name: reader
    image: {busybox}
    command: [sh, -c, "exec sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: /data/shared, readOnly: true}}
    - {{name: host, mountPath: /etc/app, subPath: conf, readOnly: true}}
"#,
        host = host.path().display()
    );
    node.apply("vols.yaml", &yaml)?;
    let pod = node.wait_pod("vols", LONG, |p| {
        is_running(p, "writer") && is_running(p, "reader")
    })?;
    let fast = node.pod_dir(&pod).join("volumes/fast");
    let starts = |node: &PodNode| -> Result<usize, Box<dyn std::error::Error>> {
        let (code, text) = node.exec("vols", "reader", &["cat", "/data/shared/starts"])?;
        if code != Some(0) {
            return Err(format!("cat: {code:?} {text}").into());
        }
        Ok(text.lines().filter(|l| *l == "start").count())
    };
    assert_eq!(starts(&node)?, 1, "the reader sees the writer's file");
    let (code, output) = node.exec("vols", "reader", &["touch", "/data/shared/x"])?;
    assert!(
        code != Some(0) && output.contains("Read-only"),
        "{code:?} {output}"
    );
    let (code, setting) = node.exec("vols", "reader", &["cat", "/etc/app/setting"])?;
    assert_eq!((code, setting.trim()), (Some(0), "from-the-host"));
    let (code, output) = node.exec(
        "vols",
        "writer",
        &[
            "dd",
            "if=/dev/zero",
            "of=/fast/big",
            "bs=1024",
            "count=2048",
        ],
    )?;
    assert!(
        code != Some(0) && output.contains("No space left"),
        "a 1Mi tmpfs took 2 MiB: {code:?} {output}"
    );
    assert!(
        mounted(&fast)?,
        "the Memory emptyDir is a tmpfs on the node"
    );
    let describe = Command::new(keel_lab::bin("node-daemon"))
        .args(["describe", "vols", "--state-dir"])
        .arg(node.state.path())
        .output()?;
    let describe = String::from_utf8_lossy(&describe.stdout);
    for line in [
        "      /data/shared from shared (ro)",
        "      /etc/app from host (ro,path=\"conf\")",
        "    Medium:     Memory",
        "    SizeLimit:  1Mi",
        "    HostPathType:  Directory",
    ] {
        assert!(
            describe.lines().any(|l| l == line),
            "{line:?} in:\n{describe}"
        );
    }

    // A restarted writer finds what the last one wrote, in both volumes.
    let writer = node.container_pid(&pod, "writer")?;
    // SAFETY: kill(2) of a process this test's daemon started.
    unsafe { libc::kill(writer, libc::SIGKILL) };
    node.wait_pod("vols", LONG, |p| {
        container_status(p, "writer")["restartCount"] == 1 && is_running(p, "writer")
    })?;
    assert_eq!(starts(&node)?, 2);
    let (_, note) = node.exec("vols", "writer", &["cat", "/fast/note"])?;
    assert_eq!(note.trim(), "fast");

    // Gone with the pod: the tmpfs unmounted, the directory removed, the host path untouched.
    let pod_dir = node.pod_dir(&pod);
    node.remove("vols.yaml")?;
    node.wait_gone("vols", LONG)?;
    let deadline = std::time::Instant::now() + LONG;
    while pod_dir.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pod_dir.exists(), "{}", pod_dir.display());
    assert!(!mounted(&fast)?, "the tmpfs outlived its pod");
    assert_eq!(
        std::fs::read_to_string(host.path().join("conf/setting"))?,
        "from-the-host\n"
    );

    // A hostPath that is not what its type says keeps the container from starting, and says why.
    let wrong = yaml
        .replace("name: vols", "name: wrong")
        .replace("type: Directory", "type: File");
    node.apply("wrong.yaml", &wrong)?;
    let pod = node.wait_pod("wrong", LONG, |p| {
        container_status(p, "reader")["state"]["waiting"]["reason"] == "CreateContainerError"
    })?;
    let message = container_status(&pod, "reader")["state"]["waiting"]["message"].to_string();
    assert!(
        message.contains("hostPath type check failed") && message.contains("is not a file"),
        "{message}"
    );
    Ok(())
}

/// Whether `path` is a mount point in this (the host's) mount namespace.
fn mounted(path: &std::path::Path) -> Result<bool, Box<dyn std::error::Error>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let path = path.to_string_lossy();
    Ok(mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path.as_ref())))
}
