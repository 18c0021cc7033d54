//! The OOM watcher: keel's program on the `oom/mark_victim` tracepoint, and the task that
//! reads its ring buffer. Every kill reaches the pod workers the moment the kernel picks its
//! victim; they turn it into `OOMKilled` and cross-check with the cgroup's own counter, so
//! a kill is never missed if the ring buffer overflows or the watcher is unavailable.

use std::{fs, path::PathBuf};

use aya::{
    maps::{Array, MapData, RingBuf},
    programs::TracePoint,
    EbpfLoader,
};
use keel_common::{
    OomEvent, OOM_CFG_ANON_RSS, OOM_CFG_FILE_RSS, OOM_CFG_PID, OOM_CFG_SHMEM_RSS, OOM_CFG_TOTAL_VM,
    OOM_CONFIG_MAP, OOM_EVENTS_MAP, PROG_OOM,
};
use thiserror::Error;
use tokio::{io::unix::AsyncFd, sync::broadcast, task::JoinHandle};

static OOM_PROGRAM: &[u8] = keel_bpf::OOM;

/// Where tracefs may be mounted.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub enum OomError {
    #[error("tracefs is not mounted (looked for {0:?}); mount it: mount -t tracefs nodev /sys/kernel/tracing")]
    NoTracefs(PathBuf),
    #[error("oom/mark_victim: {0}")]
    Format(String),
    #[error("loading the OOM program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the OOM program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("the OOM maps: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("the OOM ring buffer: {0}")]
    Poll(#[from] std::io::Error),
}

/// The field offsets of `oom/mark_victim`, from its `format` file: `(config index, offset)`.
pub fn field_offsets(format: &str) -> Result<Vec<(u32, u32)>, OomError> {
    let wanted = [
        ("pid", OOM_CFG_PID),
        ("total_vm", OOM_CFG_TOTAL_VM),
        ("anon_rss", OOM_CFG_ANON_RSS),
        ("file_rss", OOM_CFG_FILE_RSS),
        ("shmem_rss", OOM_CFG_SHMEM_RSS),
    ];
    let mut offsets = Vec::new();
    for line in format.lines() {
        // `	field:int pid;	offset:8;	size:4;	signed:1;`
        let Some(field) = line.trim().strip_prefix("field:") else {
            continue;
        };
        let mut parts = field.split(';');
        let declaration = parts.next().unwrap_or_default();
        let name = declaration.split_whitespace().last().unwrap_or_default();
        let offset = parts
            .find_map(|p| p.trim().strip_prefix("offset:"))
            .and_then(|o| o.parse::<u32>().ok());
        if let (Some((_, index)), Some(offset)) = (wanted.iter().find(|(n, _)| *n == name), offset)
        {
            offsets.push((*index, offset));
        }
    }
    if !offsets.iter().any(|(index, _)| *index == OOM_CFG_PID) {
        return Err(OomError::Format("the record has no pid field".into()));
    }
    Ok(offsets)
}

fn read_format() -> Result<String, OomError> {
    for root in TRACEFS {
        let path = PathBuf::from(root).join("events/oom/mark_victim/format");
        if let Ok(text) = fs::read_to_string(&path) {
            return Ok(text);
        }
    }
    Err(OomError::NoTracefs(PathBuf::from(TRACEFS[0])))
}

/// Loads and attaches the OOM program; the returned task forwards every kill to `events`
/// until it is aborted (which detaches the program).
pub fn start(events: broadcast::Sender<OomEvent>) -> Result<JoinHandle<()>, OomError> {
    let offsets = field_offsets(&read_format()?)?;
    let mut ebpf = EbpfLoader::new().load(OOM_PROGRAM)?;
    keel_bpf::release_resident_pages(OOM_PROGRAM);
    let mut config: Array<&mut MapData, u32> = Array::try_from(
        ebpf.map_mut(OOM_CONFIG_MAP)
            .ok_or_else(|| OomError::Format(format!("no map {OOM_CONFIG_MAP} in the object")))?,
    )?;
    for (index, offset) in offsets {
        config.set(index, offset, 0)?;
    }
    let program: &mut TracePoint = ebpf
        .program_mut(PROG_OOM)
        .ok_or_else(|| OomError::Format(format!("no program {PROG_OOM} in the object")))?
        .try_into()?;
    program.load()?;
    program.attach("oom", "mark_victim")?;
    let ring = RingBuf::try_from(
        ebpf.take_map(OOM_EVENTS_MAP)
            .ok_or_else(|| OomError::Format(format!("no map {OOM_EVENTS_MAP} in the object")))?,
    )?;
    // SAFETY: the ring buffer owns its map fd for as long as it lives, and the AsyncFd owns
    // the ring buffer from here on.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
    Ok(tokio::spawn(async move {
        // The program stays attached for as long as `ebpf` lives: as long as this task.
        let _ebpf = ebpf;
        loop {
            let Ok(mut guard) = ring.readable_mut().await else {
                tracing::error!("the OOM ring buffer cannot be polled; OOM kills are now seen through cgroup counters only");
                return;
            };
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if let Some(event) = parse(&item) {
                    let _ = events.send(event);
                }
            }
            guard.clear_ready();
        }
    }))
}

fn parse(bytes: &[u8]) -> Option<OomEvent> {
    if bytes.len() < std::mem::size_of::<OomEvent>() {
        return None;
    }
    // SAFETY: OomEvent is plain integers (any bit pattern is valid) and the length was
    // checked; read_unaligned makes no alignment assumption about the ring buffer.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<OomEvent>()) })
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of `OomEvent::timestamp_ns`.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// What the OOM attribution reads of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCandidate {
    pub name: String,
    /// The cgroup's OOM-kill count as last read, and now (`None`: not accounted).
    pub kills_seen: Option<u64>,
    pub kills_now: Option<u64>,
    /// The container's main process.
    pub pid: Option<i32>,
}

/// The container a reported kill belongs to: the one whose cgroup counted a kill since it
/// was last read, else the one whose main process is the victim (hosts that keep no
/// counter). Never the cgroup of the task that ran the OOM killer: under a global OOM (or a
/// pod-level limit) that is any task at all, while the kernel counts the kill in the
/// victim's own memory cgroup (`memory.events`/`memory.oom_control` `oom_kill`) before it
/// marks the victim, so the counter has moved by the time the event is read.
pub fn victim(candidates: &[OomCandidate], victim_pid: u32) -> Option<&OomCandidate> {
    let counted = candidates
        .iter()
        .find(|c| matches!((c.kills_seen, c.kills_now), (Some(seen), Some(now)) if now > seen));
    counted.or_else(|| {
        let pid = i32::try_from(victim_pid).ok().filter(|p| *p > 0)?;
        candidates.iter().find(|c| c.pid == Some(pid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = "name: mark_victim\nID: 609\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;\n\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:unsigned long anon_rss;\toffset:24;\tsize:8;\tsigned:0;\n\tfield:unsigned long file_rss;\toffset:32;\tsize:8;\tsigned:0;\n\tfield:unsigned long shmem_rss;\toffset:40;\tsize:8;\tsigned:0;\n";

    #[test]
    fn offsets_come_from_the_format_file() {
        let offsets = field_offsets(FORMAT_6_18).expect("valid");
        assert_eq!(
            offsets,
            [
                (OOM_CFG_PID, 8),
                (OOM_CFG_TOTAL_VM, 16),
                (OOM_CFG_ANON_RSS, 24),
                (OOM_CFG_FILE_RSS, 32),
                (OOM_CFG_SHMEM_RSS, 40)
            ]
        );
        // Older kernels (6.1) report only the pid: the rest stays absent.
        let old = "format:\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offsets(old).expect("valid"), [(OOM_CFG_PID, 8)]);
        assert!(field_offsets("garbage").is_err());
    }

    fn candidate(
        name: &str,
        seen: Option<u64>,
        now: Option<u64>,
        pid: Option<i32>,
    ) -> OomCandidate {
        OomCandidate {
            name: name.to_owned(),
            kills_seen: seen,
            kills_now: now,
            pid,
        }
    }

    fn victim_name(candidates: &[OomCandidate], pid: u32) -> Option<&str> {
        victim(candidates, pid).map(|c| c.name.as_str())
    }

    #[test]
    fn the_cgroup_that_counted_the_kill_is_the_victim_whatever_the_pid() {
        // A kill of a child process of `b` (not its main pid), while `a` ran the OOM killer.
        let pod = [
            candidate("a", Some(0), Some(0), Some(100)),
            candidate("b", Some(2), Some(3), Some(200)),
        ];
        assert_eq!(victim_name(&pod, 201), Some("b"));
        // Even when the victim's pid happens to be another container's main process: the
        // counter is the kernel's own attribution.
        assert_eq!(victim_name(&pod, 100), Some("b"));
    }

    #[test]
    fn another_pods_kill_is_not_claimed() {
        let pod = [
            candidate("a", Some(1), Some(1), Some(100)),
            candidate("b", Some(0), Some(0), Some(200)),
        ];
        assert_eq!(victim_name(&pod, 999), None);
        // A counter already read for an earlier event does not claim the next one.
        assert_eq!(victim_name(&pod, 0), None);
    }

    #[test]
    fn without_counters_the_main_pid_decides() {
        let pod = [
            candidate("a", None, None, Some(100)),
            candidate("b", None, None, Some(200)),
        ];
        assert_eq!(victim_name(&pod, 200), Some("b"));
        assert_eq!(victim_name(&pod, 300), None);
        // Hostile or absent pids: 0 and values past i32 never match a container without one.
        let unknown = [candidate("a", None, None, None)];
        assert_eq!(victim_name(&unknown, 0), None);
        assert_eq!(victim_name(&unknown, u32::MAX), None);
        // A counter that went backwards (a recreated cgroup) is not a kill.
        let reset = [candidate("a", Some(5), Some(0), None)];
        assert_eq!(victim_name(&reset, 1), None);
    }
}
