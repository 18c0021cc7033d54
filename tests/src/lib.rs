//! Harness for keel's end-to-end tests: a node daemon running in a lab's node namespace, the
//! manifests it reads, and a client that connects from inside keel's cgroup.
//!
//! Every test needs root (BPF, namespaces, cgroups) and says so instead of skipping.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use keel_lab::{bin, Cgroup, Child, Lab, NodePlacement};
use tempfile::TempDir;

pub mod cluster;
pub mod pods;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Fails the test with a clear reason when not run as root.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "keel's end-to-end tests load BPF programs and create namespaces: run them as root (cargo xtask test)");
}

/// The environment variable naming the file where skipped tests are recorded, one line each
/// (`cargo xtask test` sets it, counts the lines as skipped rather than passed, and lists them).
pub const SKIPPED_FILE_ENV: &str = "KEEL_SKIPPED_FILE";

/// Records that `test` could not run here and why; the caller then returns `Ok(())`. The Rust
/// harness has no "skipped" outcome, so `cargo xtask test` moves the test from passed to
/// skipped by this record. Run outside xtask, the reason is printed.
pub fn skip(test: &str, why: &str) {
    eprintln!("skipped: {test}: {why}");
    if let Some(path) = std::env::var_os(SKIPPED_FILE_ENV) {
        use std::io::Write;
        let line = format!("{test}: {}\n", why.replace('\n', " "));
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        // A skip that cannot be recorded would count as a pass: fail instead.
        if let Err(error) = written {
            panic!("cannot record the skip of {test} in {path:?}: {error}");
        }
    }
}

/// A node daemon in the lab's node namespace. Stopped (SIGTERM) and cleaned up on drop.
pub struct Daemon {
    child: Option<Child>,
    netns: Option<PathBuf>,
    cgroup: PathBuf,
    bpf_dir: PathBuf,
    manifests: PathBuf,
    /// More command-line arguments, e.g. `--tc-interface up0`.
    extra_args: Vec<String>,
    /// A state directory of the daemon's own unless the test gives one: a test daemon (and
    /// its cleanup) must never see the host's pods in /var/lib/keel.
    _state: Option<TempDir>,
}

/// Where the daemon serves metrics inside the node namespace (each lab has its own loopback).
pub const METRICS_ADDR: &str = "127.0.0.1:10249";

impl Daemon {
    /// Starts `node-daemon` on the lab's node and waits until it has synced the manifests.
    /// Its pins go to a bpffs directory of its own, so tests can run side by side.
    pub fn start(
        lab: &Lab,
        manifests: &Path,
        cgroup: &Path,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_with(lab, manifests, cgroup, &[])
    }

    /// [`Daemon::start`] with more command-line arguments.
    pub fn start_with(
        lab: &Lab,
        manifests: &Path,
        cgroup: &Path,
        extra_args: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let bpf_dir = keel_lab::pin_dir("keel-test");
        let mut extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let state = if extra_args.iter().any(|a| a == "--state-dir") {
            None
        } else {
            let state = tempfile::tempdir()?;
            extra_args.push("--state-dir".into());
            extra_args.push(state.path().to_string_lossy().into_owned());
            Some(state)
        };
        let mut daemon = Self {
            child: None,
            netns: lab.on_node(None).netns,
            cgroup: cgroup.to_owned(),
            bpf_dir,
            manifests: manifests.to_owned(),
            extra_args,
            _state: state,
        };
        // On failure, dropping `daemon` runs the cleanup.
        daemon.restart()?;
        Ok(daemon)
    }

    /// Starts the daemon again with the same settings (after [`Daemon::stop`]).
    pub fn restart(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let mut command = Command::new(bin("node-daemon"));
        command
            .arg("--manifests")
            .arg(&self.manifests)
            .args(["--metrics-addr", METRICS_ADDR])
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--bpf-dir")
            .arg(&self.bpf_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE");
        let placement = keel_lab::Placement {
            netns: self.netns.clone(),
            cgroup: None,
        };
        let child = self
            .child
            .insert(Child::spawn("node-daemon", command, &placement)?);
        // The first reconcile comes before "ready": with a thousand services in the
        // manifests, under emulation (the guest of `cargo xtask vm`), it takes tens of seconds.
        child.wait_for_line("daemon ready", Duration::from_secs(90))?;
        Ok(())
    }

    /// Starts the daemon again (after [`Daemon::stop`]) with `args` in place of the extra
    /// arguments it was started with; its state directory stays.
    pub fn restart_with(&mut self, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
        let state: Vec<String> = self
            .extra_args
            .windows(2)
            .find(|pair| pair[0] == "--state-dir")
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        self.extra_args = args.iter().map(|a| a.to_string()).chain(state).collect();
        self.restart()
    }

    /// keel's bpffs directory of this daemon.
    pub fn bpf_dir(&self) -> &Path {
        &self.bpf_dir
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> Vec<String> {
        self.child.as_ref().map(Child::output).unwrap_or_default()
    }

    /// Waits until a log line contains every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> Result<String, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Ok(line);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "no log line with {needles:?} within {timeout:?}:\n{}",
                    self.log().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The number after `key=` in every log line that contains `needle` (structured log
    /// fields, e.g. `delay_ms=200`), in order.
    pub fn log_numbers(&self, needle: &str, key: &str) -> Vec<u64> {
        let key = format!("{key}=");
        self.log()
            .iter()
            .filter(|l| l.contains(needle))
            .filter_map(|l| {
                let at = l.find(&key)? + key.len();
                l[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        child.signal(libc::SIGTERM);
        child.wait_timeout(Duration::from_secs(10)).ok().flatten()
    }

    /// Sends SIGKILL (nothing of the daemon's own shutdown runs) and returns once it is gone.
    pub fn kill(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        child.signal(libc::SIGKILL);
        child.wait_timeout(Duration::from_secs(10)).ok().flatten()
    }

    /// Runs `node-daemon --cleanup` on the node; returns its exit code and output.
    pub fn cleanup(&self) -> Result<(Option<i32>, Vec<String>), Box<dyn std::error::Error>> {
        let mut command = Command::new(bin("node-daemon"));
        command
            .arg("--cleanup")
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--bpf-dir")
            .arg(&self.bpf_dir)
            .args(self.pod_args())
            .env("NO_COLOR", "1");
        let placement = keel_lab::Placement {
            netns: self.netns.clone(),
            cgroup: None,
        };
        // Pods get their grace period to stop: allow for some.
        Ok(Child::spawn("node-daemon --cleanup", command, &placement)?
            .finish(Duration::from_secs(60))?)
    }

    /// The pod runtime's flags among the extra arguments: cleanup must see the same state
    /// directory and bridge to stop the pods.
    fn pod_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for pair in self.extra_args.windows(2) {
            if ["--state-dir", "--pod-bridge", "--pod-cidr"].contains(&pair[0].as_str()) {
                args.extend(pair.iter().cloned());
            }
        }
        args
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> Result<String, Box<dyn std::error::Error>> {
        let mut command = Command::new("curl");
        command.args(["-sf", &format!("http://{METRICS_ADDR}/metrics")]);
        let placement = keel_lab::Placement {
            netns: self.netns.clone(),
            cgroup: None,
        };
        let (code, lines) =
            Child::spawn("curl", command, &placement)?.finish(Duration::from_secs(5))?;
        if code != Some(0) {
            return Err(format!("curl /metrics failed ({code:?}): {lines:?}").into());
        }
        Ok(lines.join("\n"))
    }
}

impl Drop for Daemon {
    /// Stops the daemon and removes everything it left (pins, route, cgroup), whatever state
    /// the test left it in.
    fn drop(&mut self) {
        self.stop();
        if self.bpf_dir.exists() || self.cgroup.exists() {
            let _ = self.cleanup();
        }
    }
}

/// The outcome of a client run: one entry per attempt, in order.
#[derive(Debug)]
pub struct Attempts {
    /// `(ms since the client started, Ok(backend name) or Err(errno name))`.
    pub attempts: Vec<(u64, Result<String, String>)>,
}

impl Attempts {
    /// How many attempts each backend (or `err:ERRNO`) got.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, result) in &self.attempts {
            let key = match result {
                Ok(name) => name.clone(),
                Err(errno) => format!("err:{errno}"),
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
    }
}

/// How a client run is bounded.
#[derive(Clone, Copy, Debug)]
pub enum Run {
    Count(u64),
    ForMs(u64),
    /// For this many milliseconds, one attempt every `interval_ms`.
    Paced {
        for_ms: u64,
        interval_ms: u64,
    },
}

/// Which of keel-lab-agent's clients, and how.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    /// TCP connect + HTTP GET; `check_peer` also checks `getpeername`.
    Tcp { check_peer: bool },
    /// A UDP exchange; `connected` uses connect() + send(), otherwise sendto().
    Udp { connected: bool },
    /// UDP exchanges all from one source port, each waiting `timeout_ms` for its answer: one
    /// conntrack flow, like a resolver's socket.
    UdpFrom { source_port: u16, timeout_ms: u64 },
    /// One connected UDP socket kept across exchanges, a new one only after an exchange
    /// fails: a resolver's long-lived connected socket.
    UdpKept { timeout_ms: u64 },
}

/// Starts keel's test client on the lab's node, inside `cgroup`, against `to`.
pub fn start_client(
    lab: &Lab,
    cgroup: &Path,
    to: SocketAddrV4,
    client: Client,
    run: Run,
) -> std::io::Result<Child> {
    start_client_at(&lab.on_node(Some(cgroup)), to, client, run)
}

/// Starts keel's test client wherever `placement` says (a remote host's namespace, say).
pub fn start_client_at(
    placement: &keel_lab::Placement,
    to: SocketAddrV4,
    client: Client,
    run: Run,
) -> std::io::Result<Child> {
    let mut command = Command::new(bin("keel-lab-agent"));
    // 3 s: long enough for one SYN retransmission (RTO 1 s). A packet lost to the lab's
    // load is then retried as any TCP client would; a datapath that drops a flow's packets
    // deterministically still fails, since the retransmission takes the same path. (The
    // "one SYN in 1,000" once blamed on the lab was keel's: `tests/syn_loss.rs`.)
    let mut timeout_ms = 3000;
    match client {
        Client::Tcp { check_peer } => {
            command.arg("connect");
            if check_peer {
                command.arg("--check-peer");
            }
        }
        Client::Udp { connected } => {
            command.arg("udp");
            if connected {
                command.arg("--connected");
            }
        }
        Client::UdpFrom {
            source_port,
            timeout_ms: timeout,
        } => {
            command.args(["udp", "--source-port", &source_port.to_string()]);
            timeout_ms = timeout;
        }
        Client::UdpKept {
            timeout_ms: timeout,
        } => {
            command.args(["udp", "--connected", "--keep"]);
            timeout_ms = timeout;
        }
    }
    command.args([
        "--to",
        &to.to_string(),
        "--timeout-ms",
        &timeout_ms.to_string(),
    ]);
    match run {
        Run::Count(n) => command.args(["--count", &n.to_string()]),
        Run::ForMs(ms) => command.args(["--for-ms", &ms.to_string()]),
        Run::Paced {
            for_ms,
            interval_ms,
        } => command.args([
            "--for-ms",
            &for_ms.to_string(),
            "--interval-ms",
            &interval_ms.to_string(),
        ]),
    };
    Child::spawn("client", command, placement)
}

/// Waits for a client started by [`start_client`] and parses its report.
pub fn finish_client(client: Child) -> Result<Attempts, Box<dyn std::error::Error>> {
    let (code, lines) = client.finish(Duration::from_secs(120))?;
    if code != Some(0) {
        return Err(format!("client failed ({code:?}): {lines:?}").into());
    }
    let attempts = lines
        .iter()
        .filter_map(|line| {
            let mut words = line.splitn(3, ' ');
            let ms = words.next()?.parse().ok()?;
            let result = match (words.next()?, words.next()?) {
                ("ok", name) => Ok(name.to_owned()),
                ("err", errno) => Err(errno.to_owned()),
                _ => return None,
            };
            Some((ms, result))
        })
        .collect();
    Ok(Attempts { attempts })
}

/// TCP connections to `to` from the lab's node, inside `cgroup`.
pub fn connect(
    lab: &Lab,
    cgroup: &Path,
    to: SocketAddrV4,
    run: Run,
) -> Result<Attempts, Box<dyn std::error::Error>> {
    finish_client(start_client(
        lab,
        cgroup,
        to,
        Client::Tcp { check_peer: false },
        run,
    )?)
}

/// Writes `text` to `dir/name` atomically (write a hidden file, rename), as a deployment tool
/// would, so that the daemon never reads half a file.
pub fn write_manifest(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, dir.join(name))
}

/// A `v1` Service with two ports: `http` (TCP `port`) and `dns` (UDP `port`), both on
/// `target_port` of the backends.
pub fn service_yaml(name: &str, vip: Ipv4Addr, port: u16, target_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {vip}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {target_port}\n    protocol: TCP\n  - name: dns\n    port: {port}\n    targetPort: {target_port}\n    protocol: UDP\n"
    )
}

/// An EndpointSlice for `service` with the given `(address, ready)` endpoints, on ports `http`
/// (TCP) and `dns` (UDP).
pub fn slice_yaml(service: &str, port: u16, endpoints: &[(Ipv4Addr, bool)]) -> String {
    let mut text = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nports:\n- name: http\n  port: {port}\n  protocol: TCP\n- name: dns\n  port: {port}\n  protocol: UDP\nendpoints:\n"
    );
    for (addr, ready) in endpoints {
        text.push_str(&format!(
            "- addresses: [\"{addr}\"]\n  conditions:\n    ready: {ready}\n"
        ));
    }
    text
}

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const SERVICE_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;

/// One daemon, two backend pods `a` and `b`, one service. Fields drop in order: the daemon
/// stops and cleans up before its cgroup and lab go.
pub struct Setup {
    pub daemon: Daemon,
    pub cgroup: Cgroup,
    pub lab: Lab,
    pub manifests: TempDir,
    pub a: Ipv4Addr,
    pub b: Ipv4Addr,
}

impl Setup {
    pub fn new(test: &str) -> Result<Self, Box<dyn std::error::Error>> {
        Self::with_args(test, &[])
    }

    /// [`Setup::new`] with more daemon arguments (`--proxy-mode iptables`, …).
    pub fn with_args(test: &str, daemon_args: &[&str]) -> Result<Self, Box<dyn std::error::Error>> {
        Self::with_extra(test, daemon_args, |_, _| String::new())
    }

    /// [`Setup::with_args`] with one more manifest, `extra.yaml`, written before the daemon
    /// starts by `extra(a, b)` from the two pods' addresses (empty: none).
    pub fn with_extra(
        test: &str,
        daemon_args: &[&str],
        extra: impl FnOnce(Ipv4Addr, Ipv4Addr) -> String,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        require_root();
        let mut lab = Lab::new(NodePlacement::OwnNetns)?;
        let a = serving_pod(&mut lab, "a")?;
        let b = serving_pod(&mut lab, "b")?;
        let cgroup = Cgroup::create(&format!("keel-test-{test}-{}", keel_lab::unique_id()))?;
        let manifests = tempfile::tempdir()?;
        write_manifest(
            manifests.path(),
            "web.yaml",
            &service_yaml("web", VIP, SERVICE_PORT, BACKEND_PORT),
        )?;
        write_manifest(
            manifests.path(),
            "web-endpoints.yaml",
            &slice_yaml("web", BACKEND_PORT, &[(a, true), (b, true)]),
        )?;
        let extra = extra(a, b);
        if !extra.is_empty() {
            write_manifest(manifests.path(), "extra.yaml", &extra)?;
        }
        let daemon = Daemon::start_with(&lab, manifests.path(), cgroup.path(), daemon_args)?;
        Ok(Self {
            daemon,
            cgroup,
            lab,
            manifests,
            a,
            b,
        })
    }

    pub fn connect(&self, run: Run) -> Result<Attempts, Box<dyn std::error::Error>> {
        connect(
            &self.lab,
            self.cgroup.path(),
            SocketAddrV4::new(VIP, SERVICE_PORT),
            run,
        )
    }

    /// Starts a client of the service in keel's cgroup, without waiting for it.
    pub fn start_client(&self, client: Client, port: u16, run: Run) -> std::io::Result<Child> {
        start_client(
            &self.lab,
            self.cgroup.path(),
            SocketAddrV4::new(VIP, port),
            client,
            run,
        )
    }

    pub fn set_endpoints(&self, endpoints: &[(Ipv4Addr, bool)]) -> std::io::Result<()> {
        write_manifest(
            self.manifests.path(),
            "web-endpoints.yaml",
            &slice_yaml("web", BACKEND_PORT, endpoints),
        )
    }
}

fn serving_pod(lab: &mut Lab, name: &str) -> Result<Ipv4Addr, Box<dyn std::error::Error>> {
    let pod = lab.add_pod(name)?;
    pod.serve(BACKEND_PORT)?;
    Ok(pod.addr())
}

/// A bpffs directory of pins that a test made by loading programs itself: removed (and so its
/// programs detached) however the test ends.
pub struct PinDir(pub PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(err) = keel_proxy::ebpf::pins::remove_all(&self.0) {
            eprintln!("removing {}: {err}", self.0.display());
        }
    }
}

/// A lab whose pods serve on [`BACKEND_PORT`], and keel's eBPF proxy loaded by the test itself
/// (no daemon, socket path only) on a cgroup of its own, for tests that drive the map writer
/// directly. Fields drop in order: the proxy, its pins (detaching its programs), the cgroup,
/// the lab.
pub struct ProxyLab {
    pub proxy: keel_proxy::ebpf::EbpfProxy,
    pub pins: PinDir,
    pub cgroup: Cgroup,
    pub lab: Lab,
    /// The pods' addresses, in the order of their names.
    pub pods: Vec<Ipv4Addr>,
}

impl ProxyLab {
    pub fn new(
        test: &str,
        pod_names: &[&str],
        limits: keel_proxy::ebpf::Limits,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        use keel_proxy::ebpf::{maglev, EbpfConfig, EbpfProxy};
        require_root();
        let mut lab = Lab::new(NodePlacement::OwnNetns)?;
        let mut pods = Vec::new();
        for name in pod_names {
            pods.push(serving_pod(&mut lab, name)?);
        }
        let id = keel_lab::unique_id();
        let cgroup = Cgroup::create(&format!("keel-test-{test}-{id}"))?;
        let pins = PinDir(keel_lab::pin_dir(&format!("keel-test-{test}")));
        let config = EbpfConfig {
            cgroup: cgroup.path().to_owned(),
            bpf_dir: pins.0.clone(),
            limits,
            tc_interfaces: Vec::new(),
            node_ips: Vec::new(),
            maglev_size: maglev::DEFAULT_SIZE,
            enable_tcx: true,
            maglev_hash_seed: keel_common::DEFAULT_MAGLEV_HASH_SEED,
            max_maglev_services: None,
            conntrack: None,
            debug_log: false,
        };
        let proxy = EbpfProxy::load(&config)?;
        Ok(Self {
            proxy,
            pins,
            cgroup,
            lab,
            pods,
        })
    }
}
