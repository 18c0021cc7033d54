//! keel's kernel programs, as object files built from `ebpf/` by this crate's build script
//! (nightly, `bpfel-unknown-none`, bpf-linker) and embedded here, aligned for aya's ELF parser.
//! The service proxy loads [`PROXY`]; the pod runtime loads [`OOM`].

/// The socket, tc and counter programs and their maps (`ebpf/src/main.rs`).
pub static PROXY: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keel.bpf.o"));

/// The `oom/mark_victim` tracepoint program and its ring buffer (`ebpf/src/oom.rs`).
pub static OOM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keel-oom.bpf.o"));

/// Drops this process's resident pages of an embedded object once it has been loaded. The
/// loader reads an object once and keeps what it needs, but the pages it touched stay in
/// the daemon's resident set for good (1.2 MB for [`PROXY`]). They stay mapped: anything
/// that reads the object again faults them back in from the binary.
pub fn release_resident_pages(object: &'static [u8]) {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return,
    };
    // Only whole pages inside the object: the statics beside it are left alone.
    let start = (object.as_ptr() as usize).next_multiple_of(page);
    let end = (object.as_ptr() as usize + object.len()) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: [start, end) lies inside `object`, a static in the binary's read-only data,
    // mapped privately from the file and never written. MADV_DONTNEED on such a mapping
    // only removes this process's page table entries: the memory stays valid, and a later
    // read sees the file's bytes, which are the same. A failure changes nothing.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropped pages read back the same: the object is still whole after its pages go.
    #[test]
    fn an_object_reads_the_same_after_its_pages_are_released() {
        let before = PROXY.to_vec();
        release_resident_pages(PROXY);
        assert_eq!(PROXY, &before[..]);
        assert!(PROXY.starts_with(b"\x7fELF"));
    }
}
