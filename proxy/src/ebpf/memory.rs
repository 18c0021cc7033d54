//! Kernel memory of keel's pinned maps, split into **service state** and **flow state**
//! (`keel_common::SERVICE_STATE_MAPS`, `FLOW_STATE_MAPS`), as `node-daemon services` shows it.
//!
//! The figure is the kernel's own: the `memlock` line of the map's `/proc/self/fdinfo` entry,
//! which `bpftool map show` prints as `bytes_memlock` (on Linux 6.x the map's memory usage as
//! the kernel accounts it, not max_entries × sizes).

use std::{
    os::fd::{AsFd, AsRawFd},
    path::Path,
};

use aya::maps::MapData;
use keel_common::{FLOW_STATE_MAPS, SERVICE_STATE_MAPS};

use crate::ProxyError;

/// Bytes of each kind of state; a map that is not pinned (the fragment map is not) counts 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StateMemory {
    /// Service, backend and Maglev maps.
    pub service_state_bytes: u64,
    /// Conntrack (main and SYN), affinity, reverse and fragment maps.
    pub flow_state_bytes: u64,
    /// Where the figures come from.
    pub source: &'static str,
}

pub fn state_memory(bpf_dir: &Path) -> Result<StateMemory, ProxyError> {
    let sum = |names: &[&'static str]| -> Result<u64, ProxyError> {
        let mut total = 0;
        for name in names {
            let path = bpf_dir.join(name);
            if !path.exists() {
                continue;
            }
            let map = MapData::from_pin(&path).map_err(|source| ProxyError::Map {
                map: name,
                operation: "open pinned",
                source,
            })?;
            total += memlock(&map).map_err(|e| ProxyError::MapMemory {
                map: name,
                message: e.to_string(),
            })?;
        }
        Ok(total)
    };
    Ok(StateMemory {
        service_state_bytes: sum(&SERVICE_STATE_MAPS)?,
        flow_state_bytes: sum(&FLOW_STATE_MAPS)?,
        source: "kernel memlock (bpftool's bytes_memlock)",
    })
}

/// The `memlock:` figure of an open map, from this process's fdinfo.
fn memlock(map: &MapData) -> std::io::Result<u64> {
    let fd = map.fd().as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    parse_memlock(&text).ok_or_else(|| std::io::Error::other("no memlock line in fdinfo"))
}

fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_read_from_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nmap_type:\t9\nmemlock:\t4719264\nmap_id:\t7\n";
        assert_eq!(parse_memlock(text), Some(4_719_264));
        assert_eq!(parse_memlock("pos:\t0\n"), None);
    }
}
