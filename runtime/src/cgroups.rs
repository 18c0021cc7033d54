//! Pod and container cgroups, on cgroup v2 or on the v1 hierarchies of a hybrid host.
//!
//! Every container gets `<keel>/pods/<pod uid>/<container>` in the cgroup2 tree (where keel's
//! socket programs see it) and, when memory and CPU are v1 controllers (hybrid hosts, such as
//! this project's machines), the same relative path in the `memory`, `cpu` and `cpuacct`
//! hierarchies. Which applies is read from the mount table at start-up: no configuration.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use keel_api::pod::ResourceRequirements;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cannot read the mount table: {0}")]
    MountInfo(#[from] procfs::ProcError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("keel's cgroup {cgroup} is not below the cgroup2 mount {mount}")]
    Outside { cgroup: PathBuf, mount: PathBuf },
    #[error("{field}: {reason}")]
    Resource { field: &'static str, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where memory and CPU limits are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Controllers {
    /// Pure cgroup v2 with the memory and cpu controllers: limits go into the cgroup2 tree.
    V2,
    /// v1 hierarchies (memory, cpu, cpuacct), each at its own mount, with keel's path below.
    V1 {
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
    },
}

/// keel's cgroups: the base of each hierarchy keel uses.
#[derive(Clone, Debug)]
pub struct CgroupLayout {
    /// keel's cgroup in the cgroup2 tree (`--cgroup`).
    pub unified: PathBuf,
    /// Where the cgroup2 tree is mounted: the root of `unified`'s ancestors.
    pub v2_root: PathBuf,
    pub controllers: Controllers,
}

/// The CPU period the quota is given in, as the kubelet uses (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

impl CgroupLayout {
    /// Detects the layout for keel's cgroup2 directory `unified`.
    pub fn detect(unified: &Path) -> Result<Self, CgroupError> {
        let mounts = procfs::process::Process::myself()?.mountinfo()?;
        let cgroup2 = keel_host::cgroup::cgroup2_mount().map_err(|e| CgroupError::Io {
            path: unified.to_owned(),
            source: io::Error::other(e.to_string()),
        })?;
        let relative = unified
            .strip_prefix(&cgroup2)
            .map_err(|_| CgroupError::Outside {
                cgroup: unified.to_owned(),
                mount: cgroup2.clone(),
            })?
            .to_owned();
        let v2_controllers =
            fs::read_to_string(cgroup2.join("cgroup.controllers")).unwrap_or_default();
        let has = |name: &str| v2_controllers.split_whitespace().any(|c| c == name);
        let controllers = if has("memory") && has("cpu") {
            Controllers::V2
        } else {
            let v1 = |controller: &str| {
                mounts
                    .iter()
                    .filter(|m| m.fs_type == "cgroup")
                    .find(|m| m.super_options.contains_key(controller))
                    .map(|m| m.mount_point.join(&relative))
            };
            Controllers::V1 {
                memory: v1("memory"),
                cpu: v1("cpu"),
                cpuacct: v1("cpuacct"),
            }
        };
        Ok(Self {
            unified: unified.to_owned(),
            v2_root: cgroup2,
            controllers,
        })
    }

    /// The relative path of a pod's cgroup below each base.
    fn pod_relative(uid: &str) -> PathBuf {
        Path::new("pods").join(format!("pod-{uid}"))
    }

    /// Every directory of a container's cgroup, one per hierarchy.
    pub fn container_dirs(&self, uid: &str, container: &str) -> Vec<PathBuf> {
        let relative = Self::pod_relative(uid).join(container);
        self.bases()
            .into_iter()
            .map(|base| base.join(&relative))
            .collect()
    }

    fn bases(&self) -> Vec<PathBuf> {
        let mut bases = vec![self.unified.clone()];
        if let Controllers::V1 {
            memory,
            cpu,
            cpuacct,
        } = &self.controllers
        {
            bases.extend([memory, cpu, cpuacct].into_iter().flatten().cloned());
        }
        bases
    }

    /// The cgroup2 `cgroup.procs` of a pod's pause process (`<pod>/pause`, a leaf, so that
    /// pure v2 hosts' no-internal-processes rule holds), created if needed.
    pub fn pause_procs(&self, uid: &str) -> Result<PathBuf, CgroupError> {
        let relative = Self::pod_relative(uid).join("pause");
        if self.controllers == Controllers::V2 {
            self.enable_v2_controllers(&relative)?;
        }
        let dir = self.unified.join(relative);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(dir.join("cgroup.procs"))
    }

    /// The cgroup2 `cgroup.procs` of the containers' shims: inside keel's cgroup, so that
    /// everything keel started is found (and can be killed) there.
    pub fn shim_procs(&self) -> Result<PathBuf, CgroupError> {
        let dir = self.unified.join("shims");
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(dir.join("cgroup.procs"))
    }

    /// Creates the container's cgroups and writes its limits. Returns the `cgroup.procs`
    /// files its process must join.
    pub fn create_container(
        &self,
        uid: &str,
        container: &str,
        resources: &ResourceRequirements,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        let limits = Limits::from_resources(resources)?;
        let relative = Self::pod_relative(uid).join(container);
        if self.controllers == Controllers::V2 {
            // Controllers must be enabled in every ancestor's subtree_control.
            self.enable_v2_controllers(&relative)?;
        }
        let mut procs = Vec::new();
        for base in self.bases() {
            let dir = base.join(&relative);
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            procs.push(dir.join("cgroup.procs"));
        }
        self.write_limits(&relative, &limits)?;
        Ok(procs)
    }

    fn write_limits(&self, relative: &Path, limits: &Limits) -> Result<(), CgroupError> {
        match &self.controllers {
            Controllers::V2 => {
                let dir = self.unified.join(relative);
                if let Some(bytes) = limits.memory_bytes {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    write_if_present(&dir.join("memory.swap.max"), "0")?;
                }
                if let Some(quota) = limits.cpu_quota_us {
                    write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                write(&dir.join("cpu.weight"), &limits.cpu_weight().to_string())?;
            }
            Controllers::V1 { memory, cpu, .. } => {
                if let (Some(base), Some(bytes)) = (memory, limits.memory_bytes) {
                    let dir = base.join(relative);
                    write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // With swap accounting, memory+swap gets the same limit: no swapping
                    // past the limit (the kubelet's behaviour).
                    write_if_present(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string())?;
                }
                if let Some(base) = cpu {
                    let dir = base.join(relative);
                    write(&dir.join("cpu.shares"), &limits.cpu_shares.to_string())?;
                    if let Some(quota) = limits.cpu_quota_us {
                        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                        write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes a pod's cgroups in every hierarchy. Its processes must have exited; any that
    /// remain are killed first (cgroup.kill) so nothing outlives its pod.
    pub fn remove_pod(&self, uid: &str) -> Result<(), CgroupError> {
        let relative = Self::pod_relative(uid);
        let unified = self.unified.join(&relative);
        let kill = unified.join("cgroup.kill");
        if kill.exists() {
            let _ = fs::write(&kill, "1");
        }
        for base in self.bases() {
            let dir = base.join(&relative);
            remove_tree(&dir)?;
        }
        Ok(())
    }

    /// Removes keel's directories in the v1 hierarchies (the cgroup2 one is the daemon's
    /// own cgroup, removed with it).
    pub fn remove_all(&self) -> Result<(), CgroupError> {
        for base in self.bases().into_iter().skip(1) {
            remove_tree(&base)?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer has acted in the container's memory cgroup
    /// (v1 `memory.oom_control`, v2 `memory.events`); `None` where not accounted.
    pub fn oom_kills(&self, uid: &str, container: &str) -> Option<u64> {
        let relative = Self::pod_relative(uid).join(container);
        let (file, key) = match &self.controllers {
            Controllers::V2 => (
                self.unified.join(&relative).join("memory.events"),
                "oom_kill",
            ),
            Controllers::V1 { memory, .. } => (
                memory.as_ref()?.join(&relative).join("memory.oom_control"),
                "oom_kill",
            ),
        };
        stat_value(&fs::read_to_string(file).ok()?, key)
    }

    /// CPU seconds used and memory working set of a container, where the controllers say.
    pub fn usage(&self, uid: &str, container: &str) -> Usage {
        let relative = Self::pod_relative(uid).join(container);
        let read = |path: PathBuf| -> Option<String> { fs::read_to_string(path).ok() };
        match &self.controllers {
            Controllers::V2 => {
                let dir = self.unified.join(&relative);
                let cpu = read(dir.join("cpu.stat"))
                    .and_then(|s| stat_value(&s, "usage_usec"))
                    .map(|us| us as f64 / 1e6);
                let memory = read(dir.join("memory.current"))
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(|current| {
                        let inactive = read(dir.join("memory.stat"))
                            .and_then(|s| stat_value(&s, "inactive_file"))
                            .unwrap_or(0);
                        current.saturating_sub(inactive)
                    });
                Usage {
                    cpu_seconds: cpu,
                    memory_working_set: memory,
                }
            }
            Controllers::V1 {
                memory, cpuacct, ..
            } => {
                let cpu = cpuacct
                    .as_ref()
                    .and_then(|base| read(base.join(&relative).join("cpuacct.usage")))
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(|ns| ns as f64 / 1e9);
                let memory = memory.as_ref().and_then(|base| {
                    let dir = base.join(&relative);
                    let usage = read(dir.join("memory.usage_in_bytes"))?
                        .trim()
                        .parse::<u64>()
                        .ok()?;
                    let inactive = read(dir.join("memory.stat"))
                        .and_then(|s| stat_value(&s, "total_inactive_file"))
                        .unwrap_or(0);
                    Some(usage.saturating_sub(inactive))
                });
                Usage {
                    cpu_seconds: cpu,
                    memory_working_set: memory,
                }
            }
        }
    }
}

/// A container's resource usage; `None` where the host does not account it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: Option<f64>,
    pub memory_working_set: Option<u64>,
}

fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The numbers written into cgroup files for a container's resources, as the kubelet
/// computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpu_quota_us: Option<u64>,
    /// v1 `cpu.shares`: the request in millicores × 1024 / 1000, at least 2.
    pub cpu_shares: u64,
}

impl Limits {
    pub fn from_resources(resources: &ResourceRequirements) -> Result<Self, CgroupError> {
        let memory_bytes = resources
            .limits
            .memory
            .as_ref()
            .map(|q| q.bytes())
            .transpose()
            .map_err(|reason| CgroupError::Resource {
                field: "resources.limits.memory",
                reason,
            })?;
        let cpu_limit = resources
            .limits
            .cpu
            .as_ref()
            .map(|q| q.millicores())
            .transpose()
            .map_err(|reason| CgroupError::Resource {
                field: "resources.limits.cpu",
                reason,
            })?;
        // As in Kubernetes, a limit without a request is also the request.
        let cpu_request = resources
            .requests
            .cpu
            .as_ref()
            .map(|q| q.millicores())
            .transpose()
            .map_err(|reason| CgroupError::Resource {
                field: "resources.requests.cpu",
                reason,
            })?
            .or(cpu_limit);
        Ok(Self {
            memory_bytes,
            // At least 1 ms per period: the kernel refuses less.
            cpu_quota_us: cpu_limit.map(|m| (m * CPU_PERIOD_US / 1000).max(1000)),
            cpu_shares: cpu_request.map_or(2, |m| (m * 1024 / 1000).max(2)),
        })
    }

    /// v2 `cpu.weight` for the shares (the kubelet's conversion).
    pub fn cpu_weight(&self) -> u64 {
        1 + (self.cpu_shares.saturating_sub(2) * 9999) / 262_142
    }
}

impl CgroupLayout {
    /// Enables the memory and cpu controllers for `relative` below keel's cgroup: in the
    /// subtree_control of every cgroup above it, from the cgroup2 root down. On a host whose
    /// init already delegates them (systemd does) the ancestors above keel's cgroup are left
    /// as they are; a bare cgroup2 mount (a minimal VM, a container host without systemd)
    /// gets them enabled, as any runtime needs. A directory is written only when it lacks one.
    fn enable_v2_controllers(&self, relative: &Path) -> Result<(), CgroupError> {
        let above = self
            .unified
            .strip_prefix(&self.v2_root)
            .map_err(|_| CgroupError::Outside {
                cgroup: self.unified.clone(),
                mount: self.v2_root.clone(),
            })?;
        let mut dir = self.v2_root.clone();
        let mut chain = vec![dir.clone()];
        for part in above.components().chain(relative.components()) {
            dir.push(part);
            chain.push(dir.clone());
        }
        // Every directory but the last (the leaf the process goes into) delegates.
        for (i, dir) in chain.iter().enumerate().take(chain.len().saturating_sub(1)) {
            if i > 0 {
                fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
            let control = dir.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).map_err(io_error(&control))?;
            let has = |name: &str| enabled.split_whitespace().any(|c| c == name);
            if !(has("memory") && has("cpu")) {
                write(&control, "+memory +cpu")?;
            }
        }
        Ok(())
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_error(path))
}

fn write_if_present(path: &Path, value: &str) -> Result<(), CgroupError> {
    if path.exists() {
        write(path, value)?;
    }
    Ok(())
}

/// rmdir, deepest first (cgroup directories are removed with rmdir although they list
/// files). A missing directory is fine.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    // A cgroup whose last process has just exited can be busy for a moment.
    for attempt in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && attempt < 49 => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keel_api::{pod::ResourceList, Quantity};

    use super::*;

    fn resources(
        request_cpu: Option<&str>,
        limit_cpu: Option<&str>,
        memory: Option<&str>,
    ) -> ResourceRequirements {
        ResourceRequirements {
            requests: ResourceList {
                cpu: request_cpu.map(Quantity::new),
                memory: None,
            },
            limits: ResourceList {
                cpu: limit_cpu.map(Quantity::new),
                memory: memory.map(Quantity::new),
            },
        }
    }

    #[test]
    fn limits_follow_the_kubelet() {
        let limits = Limits::from_resources(&resources(Some("250m"), Some("500m"), Some("64Mi")))
            .expect("valid");
        assert_eq!(limits.memory_bytes, Some(64 << 20));
        assert_eq!(limits.cpu_quota_us, Some(50_000));
        assert_eq!(limits.cpu_shares, 256);
        // No request: the limit is the request. Neither: the minimum shares.
        let limit_only = Limits::from_resources(&resources(None, Some("1"), None)).expect("valid");
        assert_eq!(limit_only.cpu_shares, 1024);
        let none = Limits::from_resources(&resources(None, None, None)).expect("valid");
        assert_eq!(
            (none.cpu_shares, none.cpu_quota_us, none.cpu_weight()),
            (2, None, 1)
        );
        // Tiny limits are raised to the kernel's minimum quota.
        let tiny = Limits::from_resources(&resources(None, Some("1m"), None)).expect("valid");
        assert_eq!(tiny.cpu_quota_us, Some(1000));
    }

    #[test]
    fn malformed_quantities_name_the_field() {
        let err = Limits::from_resources(&resources(None, None, Some("lots"))).expect_err("bad");
        assert!(err.to_string().contains("resources.limits.memory"), "{err}");
    }

    #[test]
    fn stat_files_are_read_by_key() {
        let stat = "usage_usec 1500000\nuser_usec 1000000\n";
        assert_eq!(stat_value(stat, "usage_usec"), Some(1_500_000));
        assert_eq!(stat_value(stat, "missing"), None);
    }
}
