//! The OOM watcher's ABI: its ring buffer of kills and the tracepoint field offsets.

/// The OOM watcher's ring buffer of [`OomEvent`]s.
pub const OOM_EVENTS_MAP: &str = "keel_oom_ev_v1";
/// Its size in bytes (a power of two, a multiple of the page size): room for hundreds of
/// kills between two reads, and the daemon reads each as it comes. The kernel maps all of it
/// into the daemon at once, so every KiB here is resident (it was 256 KiB).
pub const OOM_EVENTS_BYTES: u32 = 32 * 1024;
/// The OOM watcher's configuration: an array of `u32`, indexed by the `OOM_CFG_*` constants.
pub const OOM_CONFIG_MAP: &str = "keel_oom_cfg_v1";
/// Offsets of the `oom/mark_victim` tracepoint's fields in its record, as the kernel's
/// `format` file gives them (the daemon reads it: kernels differ). 0: the field is absent.
pub const OOM_CFG_PID: u32 = 0;
pub const OOM_CFG_TOTAL_VM: u32 = 1;
pub const OOM_CFG_ANON_RSS: u32 = 2;
pub const OOM_CFG_FILE_RSS: u32 = 3;
pub const OOM_CFG_SHMEM_RSS: u32 = 4;
pub const OOM_CFG_ENTRIES: u32 = 5;
/// The OOM program.
pub const PROG_OOM: &str = "keel_oom_victim";

/// One OOM kill, as `oom/mark_victim` saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomEvent {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when the victim was chosen.
    pub timestamp_ns: u64,
    /// The cgroup2 id (the inode of its directory) of the task that ran the OOM killer: under
    /// a memory cgroup's own OOM a task inside that cgroup, under a global OOM any task at
    /// all. Not the victim's: the runtime attributes a kill by the victim's cgroup counter.
    pub cgroup_id: u64,
    /// The victim's memory when chosen, in KiB (0 where the kernel does not report it).
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    /// The victim's pid (host namespace).
    pub pid: u32,
    /// Always zero.
    pub pad: u32,
}
