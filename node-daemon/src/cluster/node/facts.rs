//! What this host is, as its Node reports it: capacity (cpu, memory, pods,
//! ephemeral-storage), allocatable, `nodeInfo`, the kubelet's default labels, and the
//! pressure readings behind the MemoryPressure and DiskPressure conditions — read from
//! `/proc`, `/etc` and `statvfs("/")`. The parsers are pure functions over text.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::num::NonZeroUsize;

use k8s_openapi::api::core::v1::NodeSystemInfo;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{LABEL_ARCH, LABEL_BETA_ARCH, LABEL_BETA_OS, LABEL_HOSTNAME, LABEL_OS};

const MEMINFO: &str = "/proc/meminfo";
const ROOT_FILESYSTEM: &str = "/";

/// What this host is, as a Node reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub internal_ip: Option<Ipv4Addr>,
    pub hostname: String,
    pub capacity: BTreeMap<String, Quantity>,
    pub allocatable: BTreeMap<String, Quantity>,
    pub node_info: NodeSystemInfo,
    pub labels: BTreeMap<String, String>,
    /// The port `kubectl logs`/`exec` would reach the node daemon on
    /// (`status.daemonEndpoints.kubeletEndpoint.Port`); `None` leaves it out.
    pub daemon_port: Option<u16>,
}

/// Reads this host's facts. Nothing here fails: a value that cannot be read is left out (or
/// empty) and logged, since a node that registers with less detail is more use than one that
/// does not register.
///
/// `reserved_memory_bytes` is taken off allocatable memory, the kubelet's `--system-reserved`
/// plus its eviction threshold: what the scheduler may hand to pods.
pub fn gather(
    name: &str,
    internal_ip: Option<Ipv4Addr>,
    max_pods: u32,
    reserved_memory_bytes: u64,
) -> NodeFacts {
    let mut capacity = BTreeMap::new();
    // std honours the CPU affinity mask and the cgroup's cpu.max quota, so a daemon confined
    // to part of the host reports that part.
    let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    capacity.insert("cpu".to_string(), Quantity(cpus.to_string()));
    let memory_kib = read_text(MEMINFO).and_then(|text| parse_meminfo_kib(&text, "MemTotal"));
    match memory_kib {
        Some(kib) => {
            capacity.insert("memory".to_string(), Quantity(format!("{kib}Ki")));
        }
        None => tracing::warn!(path = MEMINFO, "no MemTotal; the Node reports no memory"),
    }
    capacity.insert("pods".to_string(), Quantity(max_pods.to_string()));
    match filesystem_usage(ROOT_FILESYSTEM) {
        Some(usage) => {
            let kib = usage.total_bytes / 1024;
            capacity.insert(
                "ephemeral-storage".to_string(),
                Quantity(format!("{kib}Ki")),
            );
        }
        None => tracing::warn!(
            path = ROOT_FILESYSTEM,
            "statvfs failed; the Node reports no ephemeral-storage"
        ),
    }

    let mut allocatable = capacity.clone();
    if let Some(kib) = memory_kib {
        let kib = allocatable_memory_kib(kib, reserved_memory_bytes);
        allocatable.insert("memory".to_string(), Quantity(format!("{kib}Ki")));
    }

    let arch = go_arch(std::env::consts::ARCH);
    let hostname = read_text("/proc/sys/kernel/hostname")
        .map(|text| text.trim().to_lowercase())
        .filter(|hostname| !hostname.is_empty())
        .unwrap_or_else(|| name.to_string());
    NodeFacts {
        name: name.to_string(),
        internal_ip,
        hostname,
        capacity,
        allocatable,
        node_info: node_info(&arch),
        labels: default_labels(name, &arch),
        daemon_port: None,
    }
}

/// The labels the kubelet puts on its Node (`updateDefaultLabels`). The hostname label is
/// the node name, not the host's name: several keel nodes may share a host, and topology
/// spreading on `kubernetes.io/hostname` must still tell them apart.
pub fn default_labels(name: &str, arch: &str) -> BTreeMap<String, String> {
    [
        (LABEL_HOSTNAME, name),
        (LABEL_OS, "linux"),
        (LABEL_ARCH, arch),
        (LABEL_BETA_OS, "linux"),
        (LABEL_BETA_ARCH, arch),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}

/// `arch` is Go's name for the architecture.
fn node_info(arch: &str) -> NodeSystemInfo {
    let version = env!("CARGO_PKG_VERSION");
    // The kubelet gets the kernel release from uname; /proc has the same string and needs no
    // extra nix feature.
    let kernel_version = read_trimmed("/proc/sys/kernel/osrelease");
    let os_image = read_text("/etc/os-release")
        .or_else(|| read_text("/usr/lib/os-release"))
        .and_then(|text| parse_os_release(&text))
        // cAdvisor's answer when there is no os-release.
        .unwrap_or_else(|| "Linux".to_string());
    NodeSystemInfo {
        machine_id: read_trimmed("/etc/machine-id"),
        // Only root can read it; the daemon is root, a test run may not be.
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        kernel_version,
        os_image,
        container_runtime_version: format!("keel://{version}"),
        // kubectl shows this in VERSION; the suffix says which kubelet it really is.
        kubelet_version: format!("v1.37.0-keel.{version}"),
        kube_proxy_version: format!("v1.37.0-keel.{version}"),
        operating_system: "linux".to_string(),
        architecture: arch.to_string(),
        ..NodeSystemInfo::default()
    }
}

/// Rust's architecture names as Go (`GOARCH`) spells them: Kubernetes' labels and nodeInfo
/// use Go's, and images are selected by them.
pub fn go_arch(rust_arch: &str) -> String {
    let go = match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    };
    go.to_string()
}

/// Allocatable memory: total minus the reservation, rounded so as never to promise a
/// partial KiB that is not there.
pub fn allocatable_memory_kib(total_kib: u64, reserved_bytes: u64) -> u64 {
    total_kib.saturating_sub(reserved_bytes.div_ceil(1024))
}

fn read_text(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            tracing::debug!(path, %error, "reading a node fact");
            None
        }
    }
}

fn read_trimmed(path: &str) -> String {
    read_text(path).map_or_else(String::new, |text| text.trim().to_string())
}

/// A `/proc/meminfo` field in KiB (`MemTotal:  16318712 kB`). `None` when the field is
/// missing or not a KiB count: a misread number would be worse than none.
pub fn parse_meminfo_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != field {
            return None;
        }
        let mut words = value.split_whitespace();
        let number = words.next()?.parse::<u64>().ok()?;
        match (words.next(), words.next()) {
            (Some("kB"), None) => Some(number),
            _ => None,
        }
    })
}

/// `PRETTY_NAME` of an os-release file (the kubelet's `osImage`), its shell quoting removed.
/// The last well-formed assignment wins, as when the file is sourced.
pub fn parse_os_release(text: &str) -> Option<String> {
    let mut pretty = None;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        if key.trim() != "PRETTY_NAME" {
            continue;
        }
        if let Some(value) = unquote_shell(value.trim()) {
            pretty = Some(value);
        }
    }
    pretty.filter(|value| !value.is_empty())
}

/// os-release values are shell words: single quotes are literal, double quotes allow
/// `\"`, `\\`, `\$` and `` \` ``. An unterminated quote is malformed: `None`.
fn unquote_shell(value: &str) -> Option<String> {
    let quote = match value.chars().next() {
        Some(quote @ ('"' | '\'')) => quote,
        _ => return Some(value.to_string()),
    };
    let inner = value.strip_prefix(quote)?.strip_suffix(quote)?;
    if quote == '\'' {
        return Some(inner.to_string());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(escaped @ ('"' | '\\' | '$' | '`')) => out.push(escaped),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// A filesystem's size and what unprivileged writers may still use of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsUsage {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl FsUsage {
    /// `None` for an empty (or pseudo) filesystem, where a fraction means nothing.
    pub fn available_fraction(&self) -> Option<f64> {
        (self.total_bytes > 0).then(|| self.available_bytes as f64 / self.total_bytes as f64)
    }
}

// The statvfs fields are u64 on 64-bit Linux but c_ulong (u32) on some 32-bit targets.
#[allow(clippy::unnecessary_cast)]
fn filesystem_usage(path: &str) -> Option<FsUsage> {
    let stat = match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => stat,
        Err(error) => {
            tracing::debug!(path, %error, "statvfs");
            return None;
        }
    };
    let unit = stat.fragment_size() as u64;
    Some(FsUsage {
        total_bytes: (stat.blocks() as u64).saturating_mul(unit),
        available_bytes: (stat.blocks_available() as u64).saturating_mul(unit),
    })
}

/// What the pressure conditions are judged on; `None` when it could not be measured, which
/// reports no pressure (the kubelet's eviction manager also signals only what it observed).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    pub memory_available_bytes: Option<u64>,
    pub disk_available_fraction: Option<f64>,
}

/// Measures [`Pressure`] now: `MemAvailable` and the free share of "/".
pub fn measure_pressure() -> Pressure {
    Pressure {
        memory_available_bytes: read_text(MEMINFO)
            .and_then(|text| parse_meminfo_kib(&text, "MemAvailable"))
            .map(|kib| kib.saturating_mul(1024)),
        disk_available_fraction: filesystem_usage(ROOT_FILESYSTEM)
            .and_then(|usage| usage.available_fraction()),
    }
}
