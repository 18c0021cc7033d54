//! A pod is written by an attacker: what a container tries from inside is refused (runc's
//! masks, the RuntimeDefault seccomp filter, capabilities), the image's user is honoured,
//! `runAsNonRoot` and `readOnlyRootFilesystem` hold, and output without newlines cannot grow
//! the shim's memory or the log directory. Hostile images (links, whiteouts, hard links,
//! devices) are the image store's unit tests: `runtime::image::tests`.

use std::{path::Path, process::Command, time::Duration};

use keel_tests::{
    pods::{container_status, is_running, pod_yaml, PodNode, BUSYBOX},
    TestResult,
};

const LONG: Duration = Duration::from_secs(30);

/// The static program of `tests/attack/attack.c`, built by this crate's build script.
const ATTACK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/attack"));

/// `node-daemon image import` of `name`: busybox, then `layers`, with the image config
/// `config`. The outer error is the test's own; the inner one is the import's refusal (its
/// standard error).
fn import_layers(
    node: &PodNode,
    name: &str,
    layers: Vec<keel_lab::oci::LayerBuilder>,
    config: serde_json::Value,
) -> Result<Result<(), String>, Box<dyn std::error::Error>> {
    let layout = tempfile::tempdir()?;
    let mut blobs = vec![keel_lab::oci::busybox_layer()?];
    for layer in layers {
        blobs.push(layer.finish()?);
    }
    keel_lab::oci::write_layout(layout.path(), name, &blobs, &config)?;
    let output = Command::new(keel_lab::bin("node-daemon"))
        .args(["image", "import"])
        .arg(layout.path())
        .arg("--state-dir")
        .arg(node.state.path())
        .output()?;
    Ok(if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    })
}

/// Imports `name`: busybox with `extra` files on top and the image config `config`.
fn import_image(
    node: &PodNode,
    name: &str,
    extra: impl FnOnce(&mut keel_lab::oci::LayerBuilder) -> std::io::Result<()>,
    config: serde_json::Value,
) -> TestResult {
    let mut layer = keel_lab::oci::LayerBuilder::new();
    extra(&mut layer)?;
    import_layers(node, name, vec![layer], config)?
        .map_err(|stderr| format!("import: {stderr}"))?;
    Ok(())
}

#[test]
fn attacks_from_inside_a_container_are_refused() -> TestResult {
    let node = PodNode::start("security-attacks", &[])?;
    import_image(
        &node,
        "keel.test/attacker:1",
        |layer| layer.file("attack", ATTACK, 0o755).map(drop),
        serde_json::json!({"config": {"Cmd": ["/attack", "--inside-keel-test-container"]}}),
    )?;
    // The pod shares its PID namespace: PID 1 is keel's pause, a root process of the host.
    node.apply(
        "attacker.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: attacker}\nspec:\n  restartPolicy: Never\n  \
         shareProcessNamespace: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  \
         - {name: attacker, image: 'keel.test/attacker:1'}\n",
    )?;
    let log = node.wait_log("attacker", "attacker", "attacks done", LONG)?;
    let mut expected = vec![
        "write /proc/sys/kernel/core_pattern: refused (Read-only file system)".to_owned(),
        "mount tmpfs: refused (Operation not permitted)".into(),
        "mknod block device: refused (Operation not permitted)".into(),
        "mknod character device: refused (Operation not permitted)".into(),
        "mknod fifo: created".into(),
        "unshare user namespace: refused (Operation not permitted)".into(),
        "unshare mount namespace: refused (Operation not permitted)".into(),
        "bpf load: refused (Operation not permitted)".into(),
        "ptrace attach pid 1: refused (Operation not permitted)".into(),
        "keyctl join session keyring: refused (Operation not permitted)".into(),
    ];
    // Kernels built without these files (this machine's has no kcore or sysrq) refuse by
    // their absence; where the kernel has them, only the mask refuses.
    let present = |path: &str| Path::new(path).exists();
    expected.push(if present("/proc/sysrq-trigger") {
        "open /proc/sysrq-trigger for writing: refused (Read-only file system)".into()
    } else {
        "open /proc/sysrq-trigger for writing: refused (No such file or directory)".into()
    });
    for file in ["kcore", "keys"] {
        let bytes = if present(&format!("/proc/{file}")) {
            0
        } else {
            -1
        };
        expected.push(format!("read /proc/{file}: refused ({bytes} bytes)"));
    }
    for line in &expected {
        assert!(log.contains(line.as_str()), "missing {line:?} in:\n{log}");
    }
    assert!(!log.contains("ALLOWED"), "{log}");

    // The same checks by a shell, and the contrast: a privileged container is not masked.
    node.apply(
        "shells.yaml",
        &pod_yaml(
            "shells",
            "",
            &[
                ("plain", "unshare -U true; echo unshare=$?; grep -E ' /proc/(keys|sys) ' /proc/mounts; grep CapEff /proc/self/status; echo checked; sleep 1000"),
                ("privileged", "grep -cE ' /proc/(keys|sys) ' /proc/mounts; grep CapEff /proc/self/status; echo checked; sleep 1000"),
                ("escalate", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; echo checked; sleep 1000"),
                ("drop-all", "id -u; grep -E '^Cap(Prm|Eff|Inh):' /proc/self/status; echo checked; sleep 1000"),
                ("drop-all-root", "id -u; grep -E '^Cap(Prm|Eff|Inh):' /proc/self/status; echo checked; sleep 1000"),
            ],
        )
        .replace(
            "  - name: privileged\n",
            "  - name: privileged\n    securityContext: {privileged: true}\n",
        )
        .replace(
            "  - name: escalate\n",
            "  - name: escalate\n    securityContext: {allowPrivilegeEscalation: true}\n",
        )
        .replace(
            "  - name: drop-all\n",
            "  - name: drop-all\n    securityContext: {runAsUser: 1000, runAsGroup: 1000, capabilities: {drop: [ALL]}}\n",
        )
        .replace(
            "  - name: drop-all-root\n",
            "  - name: drop-all-root\n    securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n",
        ),
    )?;
    node.wait_pod("shells", LONG, |p| {
        [
            "plain",
            "privileged",
            "escalate",
            "drop-all",
            "drop-all-root",
        ]
        .iter()
        .all(|c| is_running(p, c))
    })?;
    let plain = node.wait_log("shells", "plain", "checked", LONG)?;
    assert!(plain.contains("unshare=1"), "{plain}");
    assert!(plain.contains(" /proc/keys "), "keys masked: {plain}");
    assert!(
        plain.contains(" /proc/sys proc ro,"),
        "/proc/sys read-only: {plain}"
    );
    assert!(
        plain.contains("CapEff:\t00000000a80425fb"),
        "Docker's set: {plain}"
    );
    let privileged = node.wait_log("shells", "privileged", "checked", LONG)?;
    assert!(
        privileged.starts_with("0\n"),
        "nothing masked: {privileged}"
    );
    assert!(
        !privileged.contains("CapEff:\t00000000a80425fb"),
        "{privileged}"
    );
    // allowPrivilegeEscalation: true keeps setuid programs working, under the filter still.
    let escalate = node.wait_log("shells", "escalate", "checked", LONG)?;
    assert!(escalate.contains("NoNewPrivs:\t0"), "{escalate}");
    assert!(escalate.contains("Seccomp:\t2"), "filter mode: {escalate}");
    // drop: [ALL] still runs as the pod's user; nothing is left inheritable.
    let drop_all = node.wait_log("shells", "drop-all", "checked", LONG)?;
    assert!(drop_all.starts_with("1000\n"), "{drop_all}");
    assert!(drop_all.contains("CapEff:\t0000000000000000"), "{drop_all}");
    let drop_all_root = node.wait_log("shells", "drop-all-root", "checked", LONG)?;
    assert!(drop_all_root.starts_with("0\n"), "{drop_all_root}");
    // NET_BIND_SERVICE (bit 10) alone, and no inheritable set.
    assert!(
        drop_all_root.contains("CapEff:\t0000000000000400"),
        "{drop_all_root}"
    );
    assert!(
        drop_all_root.contains("CapInh:\t0000000000000000"),
        "{drop_all_root}"
    );
    Ok(())
}

#[test]
fn image_user_run_as_non_root_and_read_only_root() -> TestResult {
    let node = PodNode::start("security-user", &["--restart-backoff", "100ms"])?;
    import_image(
        &node,
        "keel.test/www:1",
        |layer| {
            layer.dir("etc", 0o755)?;
            layer.file(
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
                0o644,
            )?;
            layer
                .file("etc/group", b"root:x:0:\nwww:x:34:\n", 0o644)
                .map(drop)
        },
        serde_json::json!({"config": {"User": "www", "Cmd": ["sh", "-c", "id -u; id -g; echo ran; sleep 1000"]}}),
    )?;
    node.apply(
        "users.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: users}}\nspec:\n  \
             terminationGracePeriodSeconds: 1\n  containers:\n  \
             - {{name: image-user, image: 'keel.test/www:1'}}\n  \
             - name: read-only\n    image: {BUSYBOX}\n    securityContext: {{readOnlyRootFilesystem: true}}\n    \
             command: [sh, -c, 'touch /x; echo rc=$?; echo ran; sleep 1000']\n"
        ),
    )?;
    let image_user = node.wait_log("users", "image-user", "ran", LONG)?;
    assert_eq!(image_user, "33\n34\nran\n", "the image's User, by name");
    let read_only = node.wait_log("users", "read-only", "ran", LONG)?;
    assert!(read_only.contains("Read-only file system"), "{read_only}");
    assert!(read_only.contains("rc=1"), "{read_only}");

    node.apply(
        "non-root.yaml",
        &pod_yaml(
            "non-root",
            "  securityContext: {runAsNonRoot: true}\n",
            &[("app", "echo should-not-run")],
        ),
    )?;
    let pod = node.wait_pod("non-root", LONG, |p| {
        container_status(p, "app")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    })?;
    let message = container_status(&pod, "app")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"non-root_default("
        ),
        "{message}"
    );
    assert!(!is_running(&pod, "app"));
    Ok(())
}

/// The kubelet's limits hold whatever a container writes: 1 GiB without a newline becomes
/// 16 KiB partial entries, rotated files stay within `--container-log-max-files`, and the
/// shim's memory does not grow with the line.
#[test]
fn logs_stay_bounded_whatever_the_container_writes() -> TestResult {
    let node = PodNode::start(
        "security-logs",
        &[
            "--container-log-max-size",
            "1Mi",
            "--container-log-max-files",
            "3",
        ],
    )?;
    // 1 GiB, as the issue asks; the emulated guest of `cargo xtask vm` (no KVM) moves about
    // a tenth of that in the same time and sets a smaller flood, which bounds the same way.
    let mib: u32 = std::env::var("KEEL_LOG_FLOOD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let script = format!(
        "dd if=/dev/zero bs=1M count={mib} 2>/dev/null; echo; echo done-writing; sleep 1000"
    );
    node.apply("flood.yaml", &pod_yaml("flood", "", &[("flood", &script)]))?;
    let pod = node.wait_pod("flood", LONG, |p| is_running(p, "flood"))?;
    let log = node.wait_log("flood", "flood", "done-writing", Duration::from_secs(180))?;
    assert!(
        log.ends_with("done-writing\n"),
        "{}",
        &log[log.len().saturating_sub(200)..]
    );

    let pid = node.container_pid(&pod, "flood")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let shim: i32 = stat
        .rsplit(") ")
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|ppid| ppid.parse().ok())
        .ok_or("no parent in /proc/PID/stat")?;
    let cmdline = std::fs::read(format!("/proc/{shim}/cmdline"))?;
    assert!(
        String::from_utf8_lossy(&cmdline).contains("shim"),
        "pid {shim} is the container's shim: {cmdline:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{shim}/status"))?;
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmHWM")?;
    assert!(
        peak_kib < 32 * 1024,
        "the shim's peak RSS was {peak_kib} KiB"
    );
    println!("{mib} MiB without a newline: the shim's peak RSS was {peak_kib} KiB");

    let dir = node.pod_dir(&pod).join("logs/flood");
    let files: Vec<(String, u64)> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    assert!(files.len() <= 3 && files.len() >= 2, "{files:?}");
    for (name, size) in &files {
        assert!(*size <= 1 << 20, "{name} is {size} bytes");
    }
    let rotated = files
        .iter()
        .find(|(name, _)| name != "0.log")
        .ok_or("nothing was rotated")?;
    let text = std::fs::read(dir.join(&rotated.0))?;
    for entry in text.split(|b| *b == b'\n').filter(|e| !e.is_empty()) {
        let fields: Vec<&[u8]> = entry.splitn(4, |b| *b == b' ').collect();
        assert_eq!(fields.len(), 4, "CRI format");
        assert_eq!(fields[2], b"P", "a part of the one long line");
        assert!(fields[3].len() <= 16 * 1024, "entries of at most 16 KiB");
    }
    assert!(Path::new(&dir).join("0.log").exists());
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    println!("log directory: {} files, {total} bytes", files.len());
    Ok(())
}

/// Hostile images through `node-daemon image import`, on this kernel and the guest's: links
/// out of the root and whiteouts through them, a directory replaced by a link and written
/// through, names and hard links that climb out, device nodes. What can be contained is, and
/// runs; what cannot is refused by name. A host directory they all aim at stays as it was.
#[test]
fn hostile_images_are_contained_or_refused() -> TestResult {
    let node = PodNode::start("security-images", &[])?;
    let sentinel = tempfile::tempdir()?;
    std::fs::write(sentinel.path().join("important"), "host data")?;
    std::fs::create_dir(sentinel.path().join("sub"))?;
    std::fs::write(sentinel.path().join("sub/file"), "more host data")?;
    let before = keel_lab::tree::snapshot(sentinel.path())?;
    let target = sentinel.path().display().to_string();
    // Contained: a link out and whiteouts through it, device nodes (skipped).
    let mut contained = keel_lab::oci::LayerBuilder::new();
    contained.symlink("x", &target)?;
    contained.raw(tar::EntryType::Char, "mem", None, b"")?;
    let mut through = keel_lab::oci::LayerBuilder::new();
    through.file("x/.wh.important", b"", 0o644)?;
    through.file("x/sub/.wh..wh..opq", b"", 0o644)?;
    let config = serde_json::json!({"config": {"Cmd": ["sh", "-c", "ls -la /mem 2>&1; echo contained; sleep 1000"]}});
    import_layers(
        &node,
        "keel.test/contained:1",
        vec![contained, through],
        config,
    )?
    .map_err(|stderr| format!("the contained image was refused: {stderr}"))?;
    node.apply(
        "contained.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: contained}\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  \
         - {name: app, image: 'keel.test/contained:1'}\n",
    )?;
    let log = node.wait_log("contained", "app", "contained", LONG)?;
    assert!(
        log.contains("No such file"),
        "no device node in the image: {log}"
    );

    // Refused: a replacement written through, a climbing name, a hard link to the host.
    let mut replace = keel_lab::oci::LayerBuilder::new();
    replace.symlink("etc", &target)?;
    replace.file("etc/evil", b"x", 0o644)?;
    let refused = |name: &str, layer: keel_lab::oci::LayerBuilder| {
        import_layers(&node, name, vec![layer], serde_json::json!({"config": {}}))
    };
    let stderr = refused("keel.test/replace:1", replace)?.expect_err("a write through a link");
    assert!(
        stderr.contains("symbolic link to a missing directory"),
        "{stderr}"
    );
    let mut climb = keel_lab::oci::LayerBuilder::new();
    climb.raw(
        tar::EntryType::Regular,
        "../../../../../../../../../../tmp/keel-escaped",
        None,
        b"x",
    )?;
    let stderr = refused("keel.test/climb:1", climb)?.expect_err("a climbing name");
    assert!(stderr.contains("climbs out"), "{stderr}");
    let mut hard = keel_lab::oci::LayerBuilder::new();
    hard.hard_link("h", &format!("{target}/important"))?;
    let stderr = refused("keel.test/hard:1", hard)?.expect_err("a hard link to the host");
    assert!(stderr.contains("No such file"), "{stderr}");

    assert_eq!(
        keel_lab::tree::snapshot(sentinel.path())?,
        before,
        "the host changed"
    );
    assert!(!Path::new("/tmp/keel-escaped").exists());
    Ok(())
}
