//! Debug records through `aya-log` (the daemon's `--bpf-debug-log`), off unless the loader
//! sets [`DEBUG_LOG`]. Every call site is `if debug_log::enabled() { debug!(..) }`: the global
//! is read-only and fixed at load, so with it off the verifier sees a constant false branch
//! and removes the logging code, and a program costs what it did without logs.

/// Name must equal `keel_common::DEBUG_LOG_GLOBAL`.
#[unsafe(no_mangle)]
static DEBUG_LOG: u8 = 0;

#[inline(always)]
pub fn enabled() -> bool {
    // SAFETY: a plain read of a static; volatile so the compiler cannot fold the default
    // value in: the loader changes it in the object.
    unsafe { core::ptr::read_volatile(&DEBUG_LOG) != 0 }
}
