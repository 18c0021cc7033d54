//! Attaching the per-packet programs to an interface, so that they outlive the daemon and a
//! new daemon takes their place without a gap, on both of the kernel's tc interfaces:
//!
//! - **tcx** (Linux 6.6+): a BPF link, pinned as `<program>_<interface>` beside the socket
//!   programs' links and swapped make-before-break ([`super::pins::swap_link`]).
//! - **classic tc** (older kernels, or `--enable-tcx=false`): a `cls_bpf` filter on the
//!   `clsact` qdisc. A filter is not a file and cannot be pinned; it stays attached until it
//!   is deleted, whatever happens to the process that made it (a SIGKILLed daemon's filters
//!   keep translating). keel's filters therefore sit at one fixed priority and handle per
//!   direction: a new daemon *replaces* the filter there in one netlink request (the kernel
//!   swaps the program atomically), never adds a second, and `--cleanup` finds them by name.
//!
//! Which one is used is probed, not guessed from the kernel version: a tcx link is tried and
//! a kernel that does not know the attach type refuses it.

use std::{io, path::Path};

use aya::programs::{
    links::LinkOrder,
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
    ProgramError, SchedClassifier, TcAttachType,
};
use keel_common::{PROG_TC_EGRESS, PROG_TC_INGRESS};

use super::LoadError;

/// keel's filter priority on classic tc: 1, the first filter to run, as Cilium's are.
pub const CLASSIC_PRIORITY: u16 = 1;
/// keel's filter handle on classic tc (`tc filter show` prints it as `0x4b45`, "KE").
pub const CLASSIC_HANDLE: TcHandle = TcHandle::new(0, 0x4b45);

/// How the programs were attached, for the start-up log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcKind {
    Tcx,
    Classic,
}

/// Attaches `program` (loaded) to `interface`: through tcx when `try_tcx` and the kernel has
/// it, else as keel's classic filter, replacing the one a previous daemon left there.
pub fn attach(
    program: &mut SchedClassifier,
    name: &'static str,
    attach_type: TcAttachType,
    interface: &str,
    bpf_dir: &Path,
    try_tcx: bool,
) -> Result<TcKind, LoadError> {
    let failed = |source| LoadError::Interface {
        name,
        interface: interface.to_owned(),
        source,
    };
    if try_tcx {
        let options = TcAttachOptions::TcxOrder(LinkOrder::default());
        match program.attach_with_options(interface, attach_type, options) {
            Ok(link_id) => {
                let link = program
                    .take_link(link_id)
                    .map_err(|source| LoadError::Program { name, source })?;
                super::pin_link(link, name, &format!("{name}_{interface}"), bpf_dir)?;
                return Ok(TcKind::Tcx);
            }
            Err(error) if lacks_tcx(&error) => {
                tracing::info!(
                    program = name,
                    interface,
                    "the kernel has no tcx: attaching through classic tc"
                );
            }
            Err(error) => return Err(failed(error)),
        }
    }
    // Classic tc needs the clsact qdisc. One that exists already makes this fail, which is
    // fine; a real failure shows in the attach that follows.
    if let Err(error) = tc::qdisc_add_clsact(interface) {
        tracing::debug!(interface, "clsact qdisc not added: {error}");
    }
    let existing = SchedClassifierLink::attached(
        interface,
        attach_type,
        CLASSIC_PRIORITY,
        CLASSIC_HANDLE,
        None,
    )
    .map_err(|e| failed(ProgramError::from(TcError::IoError(e))))?;
    // Replace keel's filter in place; create it where there is none yet.
    let link_id = match program.attach_to_link(existing) {
        Ok(link_id) => link_id,
        Err(_) => program
            .attach_with_options(
                interface,
                attach_type,
                TcAttachOptions::Netlink(NlOptions {
                    priority: CLASSIC_PRIORITY,
                    handle: CLASSIC_HANDLE,
                    classid: None,
                }),
            )
            .map_err(failed)?,
    };
    // The filter must outlive this process, as a pinned tcx link does: taken out of the
    // program's keeping (whose drop would delete it) and let go without detaching.
    let link = program
        .take_link(link_id)
        .map_err(|source| LoadError::Program { name, source })?;
    std::mem::forget(link);
    Ok(TcKind::Classic)
}

/// A tcx attach the kernel refused because it has no tcx (before 6.6: the attach type is
/// unknown to `BPF_LINK_CREATE`).
fn lacks_tcx(error: &ProgramError) -> bool {
    let ProgramError::SyscallError(syscall) = error else {
        return false;
    };
    matches!(
        syscall.io_error.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
    )
}

/// A detach that found nothing of keel's: no such filter, or no clsact qdisc to hold one.
fn is_absent(error: &TcError) -> bool {
    match error {
        TcError::NetlinkError(e) => {
            matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL))
        }
        TcError::IoError(e) => e.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

/// Deletes keel's classic tc filters from every interface of this network namespace (tcx
/// links go with their pins). Returns how many (interface, direction) pairs had one.
pub fn remove_classic_filters() -> Result<usize, TcError> {
    let mut removed = 0;
    // The interfaces of the calling thread's namespace (/sys/class/net shows the one sysfs
    // was mounted in, which need not be it).
    let interfaces = nix::net::if_::if_nameindex().map_err(io::Error::from)?;
    for interface in interfaces.iter() {
        let interface = interface.name().to_string_lossy();
        for (attach_type, program) in [
            (TcAttachType::Ingress, PROG_TC_INGRESS),
            (TcAttachType::Egress, PROG_TC_EGRESS),
        ] {
            match tc::qdisc_detach_program(&interface, attach_type, program) {
                Ok(()) => removed += 1,
                Err(error) if is_absent(&error) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(removed)
}
