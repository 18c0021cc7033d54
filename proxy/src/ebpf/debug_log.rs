//! The programs' `aya-log` debug records (`node-daemon --bpf-debug-log`), read from their ring
//! buffer and written to the daemon's `tracing` output.
//!
//! The programs log only when the loader sets their read-only `DEBUG_LOG` global
//! (`keel_common::DEBUG_LOG_GLOBAL`): off, the verifier removes every log call, so the flag
//! costs nothing unless given. Records are emitted at `info` (errors and warnings at their own
//! level) under the target `keel::bpf`: the flag is the opt-in, and the daemon's default filter
//! (`info`) would hide `debug` events. The program's level is kept as the `bpf_level` field.

use aya::Ebpf;
use tokio::io::{unix::AsyncFd, Interest};

use super::LoadError;

/// A `log::Log` that forwards to `tracing`: aya-log speaks the `log` crate's interface.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = record.level();
        let program = record.target();
        match level {
            log::Level::Error => {
                tracing::error!(target: "keel::bpf", bpf_level = %level, program, "{}", record.args())
            }
            log::Level::Warn => {
                tracing::warn!(target: "keel::bpf", bpf_level = %level, program, "{}", record.args())
            }
            _ => {
                tracing::info!(target: "keel::bpf", bpf_level = %level, program, "{}", record.args())
            }
        }
    }

    fn flush(&self) {}
}

/// Takes the programs' log ring buffer out of `ebpf` and forwards its records until the
/// daemon exits. Needs a tokio runtime (the ring buffer is polled through its fd).
pub fn start(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let logger = aya_log::EbpfLogger::init_with_logger(ebpf, ToTracing)
        .map_err(|e| LoadError::DebugLog(e.to_string()))?;
    // SAFETY: the fd is the ring buffer's map, owned by the logger, which the AsyncFd owns:
    // it stays open, and the same, for as long as the AsyncFd lives.
    let mut logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(|e| LoadError::DebugLog(format!("polling the log ring buffer: {e}")))?;
    tokio::spawn(async move {
        loop {
            let mut guard = match logger.readable_mut().await {
                Ok(guard) => guard,
                Err(error) => {
                    tracing::warn!("program debug log stopped: {error}");
                    return;
                }
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}
