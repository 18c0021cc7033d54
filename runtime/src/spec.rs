//! What the daemon hands a container's shim: one JSON file per container run
//! (`state/pods/<uid>/containers/<name>/spec.json`), everything resolved beforehand, and what
//! the shim writes back (`running.json`, `exit.json`). The contract between the pod worker,
//! the shim, the code that builds the container's root file system, and `nsexec`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::security::Security;

/// What the shim runs: everything resolved by the daemon beforehand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimSpec {
    /// `namespace/name`, for messages.
    pub pod: String,
    pub container: String,
    pub container_dir: PathBuf,
    /// The container's process: `argv[0]` is looked up in `PATH` inside the container.
    pub argv: Vec<String>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub working_dir: String,
    pub uid: u32,
    pub gid: u32,
    /// Capabilities, no_new_privs, seccomp, masks (the defaults for specs written before).
    #[serde(default)]
    pub security: Security,
    pub rootfs: RootfsSpec,
    /// Host files bind-mounted over paths in the container (`/etc/hosts`, …).
    pub files: Vec<BindFile>,
    /// The container's volumes (absent in specs written before keel had volumes).
    #[serde(default)]
    pub mounts: Vec<BindMount>,
    /// The pod's pause process: its namespaces are joined.
    pub pause_pid: i32,
    /// Join the pause's PID namespace instead of getting one's own.
    pub share_pid_namespace: bool,
    /// `cgroup.procs` files the container's process writes itself into before exec.
    pub cgroup_procs: Vec<PathBuf>,
    pub log_file: PathBuf,
    /// The kubelet's `containerLogMaxSize`: the log file is rotated when it would grow past it.
    #[serde(default = "default_log_max_size")]
    pub log_max_size: u64,
    /// The kubelet's `containerLogMaxFiles`: the live file and the rotated ones kept.
    #[serde(default = "default_log_max_files")]
    pub log_max_files: u32,
}

/// The kubelet's defaults: 10Mi and 5 files.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;

fn default_log_max_size() -> u64 {
    DEFAULT_LOG_MAX_SIZE
}

fn default_log_max_files() -> u32 {
    DEFAULT_LOG_MAX_FILES
}

/// The longest line written as one log entry: longer output is split into entries tagged
/// `P` (partial) with the last one `F`, as CRI runtimes do, so the shim never holds more
/// than this of a line whatever the container writes.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// Written by the shim when the container's process has been exec'd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub pid: i32,
    pub started_at: String,
}

/// Written by the shim when the container is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// The exit status, or 128 + the signal that killed it (as a shell reports it).
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Set when the process never started: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
    pub started_at: String,
    pub finished_at: String,
}

/// How the container's root file system is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RootfsSpec {
    /// An overlay of a writable layer on the image's read-only root file system.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// A private copy of the image's root file system (where overlayfs is unavailable).
    Copy { dir: PathBuf },
}

/// A host file bind-mounted over a path inside the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindFile {
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub target: String,
}

/// A volume bind-mounted at a path inside the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindMount {
    /// On the host: an emptyDir's directory or a hostPath.
    pub source: PathBuf,
    /// A path inside `source`, resolved inside it by the shim (never through a link out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Absolute, inside the container.
    pub target: String,
    pub read_only: bool,
}
