//! keel's kernel programs, as object files built from `ebpf/` by this crate's build script
//! (nightly, `bpfel-unknown-none`, bpf-linker) and embedded here, aligned for aya's ELF parser.
//! The service proxy loads [`PROXY`]; the pod runtime loads [`OOM`].

/// The socket, tc and counter programs and their maps (`ebpf/src/main.rs`).
pub static PROXY: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keel.bpf.o"));

/// The `oom/mark_victim` tracepoint program and its ring buffer (`ebpf/src/oom.rs`).
pub static OOM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keel-oom.bpf.o"));
