//! `cargo xtask vm build | test`: keel's tests inside a stock Debian kernel under qemu.
//!
//! The host kernel has no IPVS and is one kernel; users run distribution kernels. The guest
//! is assembled from Debian packages only (../shared/KERNEL-LAB.md records what was verified):
//! the `linux-image-amd64` kernel, extracted (not installed) and booted uncompressed (PVH);
//! an initramfs with busybox, the kernel modules keel needs (dependencies resolved with
//! `modprobe --show-depends`), the host's userspace tools with their shared libraries, keel's
//! binaries and test binaries, and an `/init` that runs the tests and powers off. Results come
//! back over the serial console between markers. The guest has no network (`-nic none`).
//!
//! Under TCG emulation absolute times mean nothing; the VM is for correctness on a second
//! kernel (and IPVS), not for performance.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::{build, cargo, is_root, run_step, workspace_root};

#[derive(Subcommand)]
pub enum VmCommand {
    /// Assemble the guest: kernel, modules, tools, keel's binaries and tests.
    Build,
    /// Build the guest, boot it, run keel's root integration tests inside; non-zero exit on
    /// any failure.
    Test {
        /// Only run tests whose name contains this.
        filter: Option<String>,
    },
}

/// Host packages the VM needs: the emulator, kmod (depmod/modprobe for the module closure,
/// and modprobe in the guest), ipvsadm (to look at IPVS state inside the guest).
const HOST_PACKAGES: [&str; 3] = ["qemu-system-x86", "kmod", "ipvsadm"];

/// Modules loaded in the guest (with their dependencies).
const MODULES: &[&str] = &[
    "veth",
    "bridge",
    "br_netfilter",
    "dummy",
    "ifb",
    "overlay",
    "sch_ingress",
    "cls_bpf",
    "nf_conntrack",
    // ctnetlink: the netfilter modes delete stale UDP conntrack entries through it.
    "nf_conntrack_netlink",
    // sock_diag for UDP: the eBPF mode destroys connected sockets to removed backends with it.
    "udp_diag",
    "nf_nat",
    "iptable_filter",
    "iptable_nat",
    "xt_statistic",
    "xt_comment",
    "xt_mark",
    "xt_conntrack",
    "xt_MASQUERADE",
    "xt_addrtype",
    "xt_recent",
    "xt_set",
    "xt_nat",
    "xt_tcpudp",
    "ipt_REJECT",
    "nf_tables",
    "nft_fib_ipv4",
    "nft_fib_inet",
    "nft_reject_ipv4",
    "nft_reject_inet",
    "nft_limit",
    "nft_chain_nat",
    "nft_ct",
    "nft_nat",
    "nft_masq",
    "nft_numgen",
    "nft_compat",
    "ip_set",
    "ip_set_hash_ip",
    "ip_set_hash_ipport",
    "ip_set_hash_ipportip",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "xt_ipvs",
];

/// Host programs copied into the guest (with the libraries `ldd` names), at the same path.
const HOST_TOOLS: &[&str] = &[
    "/usr/sbin/ip",
    "/usr/sbin/xtables-legacy-multi",
    "/usr/sbin/xtables-nft-multi",
    "/usr/sbin/nft",
    "/usr/sbin/ipset",
    "/usr/sbin/ipvsadm",
    "/usr/bin/kmod",
    "/usr/sbin/bpftool",
    "/usr/bin/curl",
    "/usr/bin/wrk",
];

/// Names under /usr/sbin that are the multi-call xtables binaries.
const XTABLES_LINKS: &[(&str, &str)] = &[
    ("iptables", "xtables-legacy-multi"),
    ("iptables-save", "xtables-legacy-multi"),
    ("iptables-restore", "xtables-legacy-multi"),
    ("iptables-legacy", "xtables-legacy-multi"),
    ("iptables-legacy-save", "xtables-legacy-multi"),
    ("iptables-legacy-restore", "xtables-legacy-multi"),
    ("iptables-nft", "xtables-nft-multi"),
    ("iptables-nft-save", "xtables-nft-multi"),
    ("iptables-nft-restore", "xtables-nft-multi"),
];

/// The integration test binaries run in the guest, in this order.
const TESTS: &[&str] = &[
    "modes",
    "socket_lb",
    "packet_lb",
    "maglev_capacity",
    "tc_program",
    "tc_attach",
    "monitor",
    "debug_log",
    "tc_fragments",
    "tc_icmp",
    "tc_conntrack",
    "conntrack_sizing",
    "datapath",
    "security",
];

/// Serial console markers between the guest's `/init` and this host.
const BEGIN: &str = "KEEL-VM-BEGIN";
const END: &str = "KEEL-VM-END";
const DONE: &str = "KEEL-VM-DONE";
/// A module the guest's tests need did not load: the run fails (its tests would skip).
const MODULE_FAILED: &str = "KEEL-VM-MODULE-FAILED";
/// One line per test the guest skipped (`keel_tests::skip`).
const SKIPPED: &str = "KEEL-VM-SKIPPED";

/// What a guest test run reported.
pub struct VmResult {
    pub passed: u64,
    pub failed: u64,
    pub skipped: Vec<String>,
}

pub fn run(command: VmCommand) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the VM is assembled from Debian packages (apt-get): run `cargo xtask vm` as root");
    }
    match command {
        VmCommand::Build => build_guest(&Payload::Tests { filter: None }).map(drop),
        VmCommand::Test { filter } => {
            let guest = build_guest(&Payload::Tests {
                filter: filter.as_deref(),
            })?;
            test(&guest).map(drop)
        }
    }
}

/// What the guest runs.
pub enum Payload<'a> {
    /// The integration test binaries, optionally filtered.
    Tests { filter: Option<&'a str> },
    /// `cargo xtask bench proxy` with these arguments, on release binaries.
    Bench { args: Vec<String> },
}

/// A bootable guest.
pub struct Guest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

fn vm_dir() -> PathBuf {
    workspace_root().join("target/vm")
}

pub fn build_guest(payload: &Payload) -> anyhow::Result<Guest> {
    host_packages()?;
    let (bin_dir, tests) = match payload {
        Payload::Tests { .. } => (build::run(false)?, test_binaries()?),
        Payload::Bench { .. } => (build::build_release()?, Vec::new()),
    };
    let version = kernel_version()?;
    let kernel_root = fetch_kernel(&version)?;
    let vmlinux = extract_vmlinux(&kernel_root, &version)?;
    let initramfs = vm_dir().join("initramfs.cpio");
    // Rebuilt only when an input changed: the kernel, what the guest runs, or a binary.
    let mut inputs: Vec<PathBuf> = HOST_TOOLS.iter().map(PathBuf::from).collect();
    inputs.extend(["node-daemon", "keel-lab-agent"].map(|b| bin_dir.join(b)));
    inputs.extend(tests.iter().map(|(_, path)| path.clone()));
    inputs.push(std::env::current_exe()?);
    let fingerprint = fingerprint(&version, payload, &inputs);
    let stamp = vm_dir().join("initramfs.inputs");
    if initramfs.exists()
        && fs::read_to_string(&stamp).ok().as_deref() == Some(fingerprint.as_str())
    {
        println!("vm: initramfs unchanged ({})", initramfs.display());
        return Ok(Guest {
            kernel: vmlinux,
            initramfs,
        });
    }
    let root = vm_dir().join("root");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    install_busybox(&root)?;
    install_modules(&kernel_root, &version, &root)?;
    for tool in HOST_TOOLS {
        install_host_file(Path::new(tool), &root)?;
    }
    install_xtables(&root)?;
    for file in [
        "/etc/protocols",
        "/etc/services",
        "/etc/passwd",
        "/etc/group",
    ] {
        copy_file(Path::new(file), &root.join(&file[1..]))?;
    }
    let keel_bin = root.join("keel/bin");
    fs::create_dir_all(&keel_bin)?;
    for binary in ["node-daemon", "keel-lab-agent"] {
        install_with_libraries(&bin_dir.join(binary), &keel_bin.join(binary), &root)?;
        strip(&keel_bin.join(binary))?;
    }
    if let Payload::Bench { .. } = payload {
        let xtask = std::env::current_exe().context("locating the xtask binary")?;
        install_with_libraries(&xtask, &keel_bin.join("xtask"), &root)?;
        strip(&keel_bin.join("xtask"))?;
    }
    let keel_tests = root.join("keel/tests");
    fs::create_dir_all(&keel_tests)?;
    for (name, path) in &tests {
        install_with_libraries(path, &keel_tests.join(name), &root)?;
        strip(&keel_tests.join(name))?;
    }
    write_init(&root, payload)?;
    pack(&root, &initramfs)?;
    fs::write(&stamp, &fingerprint)?;
    println!(
        "vm: kernel {} and initramfs {} ({} MiB)",
        vmlinux.display(),
        initramfs.display(),
        fs::metadata(&initramfs)?.len() >> 20
    );
    Ok(Guest {
        kernel: vmlinux,
        initramfs,
    })
}

/// What the initramfs is made of: the kernel version, the payload, and every input file's
/// size and modification time.
fn fingerprint(version: &str, payload: &Payload, inputs: &[PathBuf]) -> String {
    let payload = match payload {
        Payload::Tests { filter } => format!("tests {filter:?}"),
        Payload::Bench { args } => format!("bench {args:?}"),
    };
    let mut text = format!("{version}\n{payload}\n{MODULES:?}\n");
    for input in inputs {
        let meta = fs::metadata(input).ok();
        let size = meta.as_ref().map(|m| m.len());
        let modified = meta.and_then(|m| m.modified().ok());
        text.push_str(&format!("{} {size:?} {modified:?}\n", input.display()));
    }
    text
}

fn host_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !crate::setup::package_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_step(install).with_context(|| format!("installing {}", missing.join(", ")))
}

/// The test binaries of `keel-tests`, by name (`modes` → `target/debug/deps/modes-<hash>`).
fn test_binaries() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let output = cargo()
        .args([
            "test",
            "-p",
            "keel-tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the test binaries failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if TESTS.contains(&name) {
            found.push((name.to_owned(), PathBuf::from(executable)));
        }
    }
    found.sort_by_key(|(name, _)| TESTS.iter().position(|t| t == name));
    if found.len() != TESTS.len() {
        bail!("expected test binaries {TESTS:?}, found {found:?}");
    }
    Ok(found)
}

/// The versioned kernel package behind `linux-image-amd64` (e.g. `6.1.0-56-amd64`).
fn kernel_version() -> anyhow::Result<String> {
    let output = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("apt-cache")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
        .map(str::to_owned)
        .context("apt-cache names no linux-image-<version> behind linux-image-amd64")
}

/// Downloads and unpacks the kernel package once per version.
fn fetch_kernel(version: &str) -> anyhow::Result<PathBuf> {
    let dir = vm_dir().join(format!("kernel-{version}"));
    let unpacked = dir.join("root");
    if unpacked.join("boot").exists() {
        return Ok(unpacked);
    }
    fs::create_dir_all(&dir)?;
    let mut download = Command::new("apt-get");
    download
        .args(["download", &format!("linux-image-{version}")])
        .current_dir(&dir);
    run_step(download)?;
    let deb = fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let mut extract = Command::new("dpkg-deb");
    extract.arg("-x").arg(&deb).arg(&unpacked);
    run_step(extract)?;
    Ok(unpacked)
}

/// The uncompressed kernel: qemu boots it directly (PVH), seconds faster than `vmlinuz`.
/// It is the xz stream inside `vmlinuz`.
fn extract_vmlinux(kernel_root: &Path, version: &str) -> anyhow::Result<PathBuf> {
    let target = kernel_root.with_file_name("vmlinux");
    if target.exists() {
        return Ok(target);
    }
    let vmlinuz = kernel_root.join(format!("boot/vmlinuz-{version}"));
    let data = fs::read(&vmlinuz).with_context(|| vmlinuz.display().to_string())?;
    let magic = [0xfd, b'7', b'z', b'X', b'Z', 0x00];
    let start = data
        .windows(magic.len())
        .position(|w| w == magic)
        .context("no xz stream in vmlinuz")?;
    let mut xz = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("xz")?;
    let mut stdin = xz.stdin.take().context("xz stdin")?;
    let compressed = data[start..].to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&compressed));
    let output = xz.wait_with_output()?;
    let _ = writer.join();
    if output.stdout.len() < 1 << 20 {
        bail!("decompressing vmlinuz gave {} bytes", output.stdout.len());
    }
    fs::write(&target, output.stdout)?;
    Ok(target)
}

fn install_busybox(root: &Path) -> anyhow::Result<()> {
    let bin = root.join("bin");
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc", "root",
        "var",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    copy_file(Path::new(keel_lab::oci::BUSYBOX), &bin.join("busybox"))?;
    let list = Command::new(keel_lab::oci::BUSYBOX)
        .arg("--list")
        .output()?;
    // The real tools replace busybox's applets of the same name.
    let replaced: BTreeSet<String> = HOST_TOOLS
        .iter()
        .filter_map(|t| Path::new(t).file_name()?.to_str().map(str::to_owned))
        .chain(XTABLES_LINKS.iter().map(|(name, _)| (*name).to_owned()))
        .chain(["modprobe", "insmod", "rmmod", "lsmod", "depmod"].map(str::to_owned))
        .collect();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "busybox" || replaced.contains(applet) {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    Ok(())
}

/// The modules and everything they depend on, at their paths, then `depmod` for the guest.
fn install_modules(kernel_root: &Path, version: &str, root: &Path) -> anyhow::Result<()> {
    let mut depmod = Command::new("depmod");
    depmod.arg("-b").arg(kernel_root).arg(version);
    run_step(depmod)?;
    let mut files = BTreeSet::new();
    for module in MODULES {
        let output = Command::new("modprobe")
            .arg("-d")
            .arg(kernel_root)
            .args(["-S", version, "--show-depends", module])
            .output()?;
        if !output.status.success() {
            bail!(
                "module {module}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            // `insmod /path/to/x.ko [options]` (or `builtin x`).
            if let Some(path) = line
                .strip_prefix("insmod ")
                .and_then(|r| r.split_whitespace().next())
            {
                files.insert(PathBuf::from(path));
            }
        }
    }
    for file in &files {
        let relative = file.strip_prefix(kernel_root).unwrap_or(file);
        copy_file(file, &root.join(relative))?;
    }
    for meta in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let from = kernel_root.join(format!("lib/modules/{version}/{meta}"));
        if from.exists() {
            copy_file(&from, &root.join(format!("lib/modules/{version}/{meta}")))?;
        }
    }
    let mut depmod = Command::new("depmod");
    depmod.arg("-b").arg(root).arg(version);
    run_step(depmod)?;
    // kmod answers to modprobe and friends by its name.
    for name in ["modprobe", "insmod", "lsmod", "rmmod"] {
        let _ = std::os::unix::fs::symlink("/usr/bin/kmod", root.join("sbin").join(name));
    }
    println!("vm: {} kernel modules", files.len());
    Ok(())
}

fn install_xtables(root: &Path) -> anyhow::Result<()> {
    for (name, target) in XTABLES_LINKS {
        let _ = std::os::unix::fs::symlink(target, root.join("usr/sbin").join(name));
    }
    let plugins = Path::new("/usr/lib/x86_64-linux-gnu/xtables");
    for entry in fs::read_dir(plugins)?.flatten() {
        install_host_file(&entry.path(), root)?;
    }
    Ok(())
}

/// Copies a host file to the same path in the guest, with its shared libraries.
fn install_host_file(path: &Path, root: &Path) -> anyhow::Result<()> {
    let target = root.join(path.strip_prefix("/").unwrap_or(path));
    install_with_libraries(path, &target, root)
}

fn install_with_libraries(from: &Path, to: &Path, root: &Path) -> anyhow::Result<()> {
    copy_file(from, to)?;
    for library in libraries(from)? {
        let target = root.join(library.strip_prefix("/").unwrap_or(&library));
        if !target.exists() {
            copy_file(&library, &target)?;
        }
    }
    Ok(())
}

/// The shared libraries `ldd` names (the loader included); none for static binaries.
fn libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd").arg(binary).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Drops debug information: debug builds are hundreds of MiB with it, and the initramfs
/// must fit in the guest's memory twice (archive and unpacked).
fn strip(binary: &Path) -> anyhow::Result<()> {
    let mut strip = Command::new("strip");
    strip.arg("--strip-debug").arg(binary);
    let status = strip.status().context("strip (binutils)")?;
    if !status.success() {
        bail!("strip {} failed", binary.display());
    }
    Ok(())
}

/// Copies a file (following symlinks), creating directories and keeping the mode.
fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The guest's `/init`: mounts, modules, then the payload between markers.
fn write_init(root: &Path, payload: &Payload) -> anyhow::Result<()> {
    let modules = MODULES.join(" ");
    let work = match payload {
        Payload::Tests { filter } => {
            let filter = filter.map(|f| format!(" '{f}'")).unwrap_or_default();
            let tests: Vec<String> = TESTS.iter().map(|t| format!("/keel/tests/{t}")).collect();
            format!(
                r#"for test in {tests}; do
    name=$(basename "$test")
    echo "{BEGIN} $name"
    "$test" --test-threads=1{filter} 2>&1
    echo "{END} $name $?"
done
[ -f /tmp/keel-skipped ] && sed "s/^/{SKIPPED} /" /tmp/keel-skipped"#,
                tests = tests.join(" ")
            )
        }
        Payload::Bench { args } => format!(
            r#"echo "{BEGIN} bench"
/keel/bin/xtask bench proxy --in-guest {} 2>&1
echo "{END} bench $?""#,
            args.join(" ")
        ),
    };
    let script = format!(
        r#"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root KEEL_BIN_DIR=/keel/bin RUST_BACKTRACE=0 NO_COLOR=1 KEEL_SKIPPED_FILE=/tmp/keel-skipped KEEL_LOG_FLOOD_MIB=64
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run && mkdir -p /run/netns && ln -s /run /var/run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /var/lib
for module in {modules}; do
    /sbin/modprobe "$module" || echo "{MODULE_FAILED} $module"
done
ip link set lo up
echo "KEEL-VM-KERNEL $(cat /proc/sys/kernel/osrelease)"
{work}
echo "{DONE}"
poweroff -f
"#
    );
    let init = root.join("init");
    fs::write(&init, script)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// An uncompressed newc cpio of `root` (the kernel unpacks it as the initramfs).
fn pack(root: &Path, archive: &Path) -> anyhow::Result<()> {
    let list = Command::new("find")
        .arg(".")
        .current_dir(root)
        .output()
        .context("find")?;
    let mut cpio = Command::new(keel_lab::oci::BUSYBOX)
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(archive)?)
        .stderr(Stdio::null())
        .spawn()
        .context("busybox cpio")?;
    cpio.stdin
        .take()
        .context("cpio stdin")?
        .write_all(&list.stdout)?;
    if !cpio.wait()?.success() {
        bail!("cpio failed");
    }
    Ok(())
}

/// How long a whole guest run may take before it is killed.
const GUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// Builds the guest and runs every test in it (for `cargo xtask test`); returns the counts
/// of passed and failed tests.
pub fn run_all() -> anyhow::Result<VmResult> {
    let guest = build_guest(&Payload::Tests { filter: None })?;
    test(&guest)
}

/// Boots the guest and follows its console: prints the tests' output, and fails unless
/// every test binary ended with status 0. Returns the tests passed and failed.
fn test(guest: &Guest) -> anyhow::Result<VmResult> {
    let mut results: Vec<(String, i32)> = Vec::new();
    let (mut passed, mut failed_tests) = (0, 0);
    let mut skipped: Vec<String> = Vec::new();
    let mut modules_failed: Vec<String> = Vec::new();
    let mut failures = crate::summary::FailureReports::default();
    let (done, kernel) = boot(guest, GUEST_TIMEOUT, |line| {
        failures.feed(line);
        // Markers may follow kernel messages on the same console line.
        let marker = |name: &str| line.find(name).map(|at| &line[at + name.len()..]);
        if let Some(rest) = marker(END) {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(code)) = (words.next(), words.next()) {
                results.push((name.to_owned(), code.parse().unwrap_or(-1)));
            }
        }
        if let Some(rest) = marker(SKIPPED) {
            skipped.push(rest.trim().to_owned());
        }
        if let Some(rest) = marker(MODULE_FAILED) {
            modules_failed.push(rest.trim().to_owned());
        }
        if let Some(result) = marker("test result: ") {
            passed += crate::summary::count_before(result, " passed");
            failed_tests += crate::summary::count_before(result, " failed");
        }
    })?;
    println!("vm: kernel {kernel}");
    failures.print("Debian kernel");
    for (name, code) in &results {
        println!(
            "vm: {name}: {}",
            if *code == 0 {
                "ok".to_owned()
            } else {
                format!("FAILED ({code})")
            }
        );
    }
    let failed: Vec<&String> = results
        .iter()
        .filter(|(_, c)| *c != 0)
        .map(|(n, _)| n)
        .collect();
    if !done || results.len() != TESTS.len() || !failed.is_empty() {
        bail!("the VM test run failed: finished={done}, results {results:?}");
    }
    if !modules_failed.is_empty() {
        bail!("the guest could not load the modules its tests need: {modules_failed:?}");
    }
    Ok(VmResult {
        passed: passed.saturating_sub(skipped.len() as u64),
        failed: failed_tests,
        skipped,
    })
}

/// Boots the guest, echoes its console and hands each line to `on_line`; returns whether
/// the guest reached its end marker, and the kernel version it reported.
pub fn boot(
    guest: &Guest,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> anyhow::Result<(bool, String)> {
    println!("vm: booting (TCG, no network)");
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-M",
            "pc",
            "-m",
            "3072",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-kernel",
        ])
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1 cgroup_no_v1=all"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let stdout = qemu.stdout.take().context("qemu stdout")?;
    let mut done = false;
    let mut kernel = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        let line = line.trim_end_matches('\r');
        println!("guest: {line}");
        // Markers may follow kernel messages on the same console line.
        if let Some(at) = line.find("KEEL-VM-KERNEL ") {
            kernel = line[at + "KEEL-VM-KERNEL ".len()..].trim().to_owned();
        }
        if line.contains(DONE) {
            done = true;
        }
        on_line(line);
        if started.elapsed() > timeout {
            println!("vm: no end after {timeout:?}; stopping the guest");
            let _ = qemu.kill();
            break;
        }
    }
    let _ = qemu.wait();
    println!(
        "vm: {} in {:.0?}",
        if done { "finished" } else { "did not finish" },
        started.elapsed()
    );
    Ok((done, kernel))
}
