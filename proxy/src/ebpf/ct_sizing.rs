//! How big the per-packet conntrack map is: a fraction of the node's memory, as Cilium sizes
//! its CT maps (`--bpf-map-dynamic-size-ratio`), between a floor and a ceiling; or a number
//! given outright (`--conntrack-max`, Cilium's `--bpf-ct-global-tcp-max`).

use std::path::Path;

use keel_common::{CtKey, CtValue};
use thiserror::Error;

/// Cilium's default share of the node's memory for its dynamically sized maps.
pub const DEFAULT_MAP_DYNAMIC_SIZE_RATIO: f64 = 0.0025;
/// The dynamic size's floor (Cilium's `limitTableAutoGlobalTCPMin`, 128 Ki entries): a small
/// node still tracks 64 Ki flows.
pub const MIN_DYNAMIC_ENTRIES: u32 = 1 << 17;
/// The least an explicit size may be (Cilium's `LimitTableMin`).
pub const MIN_ENTRIES: u32 = 1 << 10;
/// The most entries, either way (Cilium's `LimitTableMax`, 16 Mi entries).
pub const MAX_ENTRIES: u32 = 1 << 24;

/// Kernel memory per conntrack entry, counted for the ratio: the key and the value, each
/// rounded up to 8 bytes as the kernel stores them, and the 48 bytes of the kernel's own
/// `struct htab_elem` (list node, LRU node, hash) around them. An estimate: the kernel also
/// keeps per-CPU free lists and a bucket array (8 bytes per rounded-up entry).
pub const BYTES_PER_ENTRY: u64 = 48
    + (std::mem::size_of::<CtKey>() as u64).next_multiple_of(8)
    + (std::mem::size_of::<CtValue>() as u64).next_multiple_of(8);

#[derive(Debug, Error, PartialEq)]
pub enum CtSizeError {
    #[error("--conntrack-max {0} is out of range: {MIN_ENTRIES}..={MAX_ENTRIES} entries")]
    OutOfRange(u32),
    #[error("--map-dynamic-size-ratio {0} is out of range: more than 0, at most 1")]
    Ratio(f64),
    #[error("reading MemTotal from /proc/meminfo: {0}")]
    MemInfo(String),
}

/// The conntrack map's size, and whether it was asked for (a pinned map of another size is
/// then replaced rather than kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackSize {
    pub entries: u32,
    pub explicit: bool,
}

/// `max` if given, else `ratio` (default [`DEFAULT_MAP_DYNAMIC_SIZE_RATIO`]) of `mem_total`
/// bytes at [`BYTES_PER_ENTRY`], clamped to [`MIN_DYNAMIC_ENTRIES`]..=[`MAX_ENTRIES`].
pub fn conntrack_size(
    max: Option<u32>,
    ratio: Option<f64>,
    mem_total: u64,
) -> Result<ConntrackSize, CtSizeError> {
    if let Some(max) = max {
        if !(MIN_ENTRIES..=MAX_ENTRIES).contains(&max) {
            return Err(CtSizeError::OutOfRange(max));
        }
        return Ok(ConntrackSize {
            entries: max,
            explicit: true,
        });
    }
    let share = ratio.unwrap_or(DEFAULT_MAP_DYNAMIC_SIZE_RATIO);
    if !(share > 0.0 && share <= 1.0) {
        return Err(CtSizeError::Ratio(share));
    }
    let entries = (mem_total as f64 * share / BYTES_PER_ENTRY as f64) as u64;
    let entries = entries.clamp(u64::from(MIN_DYNAMIC_ENTRIES), u64::from(MAX_ENTRIES));
    Ok(ConntrackSize {
        entries: u32::try_from(entries).unwrap_or(MAX_ENTRIES),
        explicit: ratio.is_some(),
    })
}

/// The node's memory in bytes, from `/proc/meminfo`.
pub fn mem_total(meminfo: &Path) -> Result<u64, CtSizeError> {
    let text = std::fs::read_to_string(meminfo)
        .map_err(|e| CtSizeError::MemInfo(format!("{}: {e}", meminfo.display())))?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Result<u64, CtSizeError> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .ok_or_else(|| CtSizeError::MemInfo("no MemTotal line".into()))?;
    let kib = line
        .trim()
        .strip_suffix("kB")
        .map(str::trim)
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| CtSizeError::MemInfo(format!("MemTotal is not `N kB`: {line:?}")))?;
    Ok(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn entries_follow_memory_between_floor_and_ceiling() {
        assert_eq!(BYTES_PER_ENTRY, 96);
        let size = |mem| conntrack_size(None, None, mem).map(|s| s.entries);
        assert_eq!(
            size(GIB),
            Ok(MIN_DYNAMIC_ENTRIES),
            "a small node gets the floor"
        );
        // 64 GiB × 0.0025 / 96 bytes.
        assert_eq!(size(64 * GIB), Ok(1_789_569));
        assert_eq!(
            size(1 << 50),
            Ok(MAX_ENTRIES),
            "a huge node gets the ceiling"
        );
        let explicit_ratio = conntrack_size(None, Some(0.01), 64 * GIB);
        assert_eq!(
            explicit_ratio,
            Ok(ConntrackSize {
                entries: 7_158_278,
                explicit: true
            })
        );
        assert_eq!(
            conntrack_size(Some(65_536), None, GIB),
            Ok(ConntrackSize {
                entries: 65_536,
                explicit: true
            })
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let error = conntrack_size(Some(10), None, GIB).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("--conntrack-max 10"), "{error}");
        let error = conntrack_size(Some(MAX_ENTRIES + 1), None, GIB)
            .map(|_| ())
            .unwrap_err();
        assert!(error.to_string().contains("--conntrack-max"), "{error}");
        for ratio in [0.0, -1.0, 1.5, f64::NAN] {
            let error = conntrack_size(None, Some(ratio), GIB)
                .map(|_| ())
                .unwrap_err();
            assert!(
                error.to_string().contains("--map-dynamic-size-ratio"),
                "{error}"
            );
        }
    }

    #[test]
    fn meminfo_is_parsed_and_bad_meminfo_is_an_error() {
        let text = "MemTotal:       16318480 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Ok(16_318_480 * 1024));
        assert!(parse_mem_total("MemFree: 1 kB\n").is_err());
        assert!(parse_mem_total("MemTotal: lots\n").is_err());
        assert!(mem_total(Path::new("/proc/meminfo")).is_ok_and(|m| m > 0));
    }
}
