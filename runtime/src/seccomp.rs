//! The `RuntimeDefault` seccomp profile: an in-code equivalent of the default
//! profile shipped by Docker/moby (`profiles/seccomp/default.json`) and containerd,
//! specialised for a container holding Docker's default capability set
//! (CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID, SETFCAP,
//! SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE).
//!
//! Shape of the filter:
//! * default action `Errno(EPERM)`: anything not listed fails like a missing
//!   privilege would, which software already handles (unlike SIGSYS/kill);
//! * an allowlist of syscalls Docker allows unconditionally, plus `chroot`
//!   (Docker gates it on CAP_SYS_CHROOT, which is in the default set);
//! * argument-checked rules for `clone`, `personality` and `socket`;
//! * `clone3` returns `ENOSYS` (see `clone3_enosys_prefix`).
//!
//! Deliberate differences from Docker's profile:
//! * `ptrace`, `process_vm_readv`, `process_vm_writev` and `name_to_handle_at`
//!   are denied (Docker allows them; the first three only on kernels >= 4.8).
//!   Workloads that need a debugger must ask for an explicit profile.
//! * Only the native ABI is allowed. Docker also allows the i386 and x32 ABIs on
//!   x86_64 (and arm32 on aarch64); here a syscall made through a foreign ABI
//!   kills the process (seccompiler's architecture check), and x32 syscall
//!   numbers (`nr | 0x4000_0000`) never match the allowlist, so they get EPERM.
//!   Both mean no ABI-confusion bypass of the numeric rules below.
//! * Syscalls without a `libc::SYS_*` constant for the target are left out and
//!   therefore get EPERM (e.g. `io_pgetevents` on glibc targets).
//!
//! Only x86_64 and aarch64 are supported; gate `mod seccomp` accordingly.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("keel's seccomp profile supports only x86_64 and aarch64");

/// A syscall as `(name without the SYS_ prefix, number)`.
pub type Syscall = (&'static str, libc::c_long);

/// Errors from building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// An argument condition or rule was rejected by seccompiler.
    #[error("invalid argument rule for syscall `{syscall}`")]
    Rule {
        /// Syscall the rule belongs to.
        syscall: &'static str,
        /// seccompiler's reason.
        #[source]
        source: BackendError,
    },
    /// A syscall was listed twice; the tables are inconsistent.
    #[error("syscall `{0}` is listed more than once in the allowlist")]
    DuplicateSyscall(&'static str),
    /// A syscall is both allowed and on the explicit deny list.
    #[error("syscall `{0}` is both allowed and explicitly denied")]
    AllowDenyConflict(&'static str),
    /// seccompiler rejected the filter as a whole.
    #[error("failed to assemble the seccomp filter")]
    Build(#[source] BackendError),
    /// seccompiler failed to translate the filter to BPF.
    #[error("failed to compile the seccomp filter to BPF")]
    Compile(#[source] BackendError),
    /// The program exceeds the kernel's BPF_MAXINSNS.
    #[error("seccomp program has {0} instructions, the kernel accepts at most 4096")]
    TooLarge(usize),
    /// `apply` was handed an empty program.
    #[error("refusing to install an empty seccomp program")]
    EmptyProgram,
    /// `prctl(PR_SET_NO_NEW_PRIVS)` or `seccomp(SECCOMP_SET_MODE_FILTER)` failed.
    #[error("failed to install the seccomp filter")]
    Install(#[source] std::io::Error),
}

/// `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET | CLONE_NEWCGROUP` (0x7E02_0000): `clone` is allowed only if
/// none of these is set. (`CLONE_NEWTIME` shares its bit with CSIGNAL in
/// `clone` and can only be requested via `clone3`/`unshare`, both blocked.)
pub const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `personality` values Docker permits: PER_LINUX (0), PER_LINUX32 (0x8),
/// UNAME26 (0x20000), PER_LINUX32|UNAME26 (0x20008) and 0xffffffff (query).
/// Everything else is refused, notably ADDR_NO_RANDOMIZE (disables ASLR) and
/// READ_IMPLIES_EXEC (makes all readable mappings executable).
const PERSONALITY_ALLOWED: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// `AF_VSOCK`: current moby profiles refuse it so a container cannot talk to
/// the hypervisor/host over vsock (host agents often listen there).
const AF_VSOCK: u64 = 40;

/// Kernel limit on classic BPF program length (BPF_MAXINSNS).
const BPF_MAXINSNS: usize = 4096;

#[cfg(target_arch = "x86_64")]
const TARGET_ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const TARGET_ARCH: TargetArch = TargetArch::aarch64;

// AUDIT_ARCH_* from <linux/audit.h> (libc has no constants for them):
// EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// Every syscall the filter allows without looking at arguments.
fn allowlist() -> impl Iterator<Item = &'static Syscall> {
    ALLOW_COMMON
        .iter()
        .chain(ALLOW_ARCH)
        .chain(ALLOW_LIBC_SPECIFIC)
}

/// Every syscall that is explicitly denied (see the table comments).
fn denylist() -> impl Iterator<Item = &'static Syscall> {
    DENIED_COMMON.iter().chain(DENIED_ARCH)
}

fn condition(
    syscall: &'static str,
    arg: u8,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SeccompError> {
    // Dword: the kernel reads these arguments (clone flags, personality,
    // socket family) as 32-bit values, so only the low half can matter.
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|source| SeccompError::Rule { syscall, source })
}

fn rule(
    syscall: &'static str,
    conditions: Vec<SeccompCondition>,
) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conditions).map_err(|source| SeccompError::Rule { syscall, source })
}

/// Argument-checked rules; a call whose arguments match no rule gets EPERM.
/// A syscall's name, number and the argument rules under which it is allowed.
type ConditionalRule = (&'static str, libc::c_long, Vec<SeccompRule>);

fn conditional_rules() -> Result<Vec<ConditionalRule>, SeccompError> {
    // clone: threads and fork are fine, new namespaces are not (same reason as
    // unshare). s390x passes flags in arg1, but s390x is not supported here.
    let clone = vec![rule(
        "clone",
        vec![condition(
            "clone",
            0,
            SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
            0,
        )?],
    )?];

    let personality = PERSONALITY_ALLOWED
        .iter()
        .map(|&value| {
            rule(
                "personality",
                vec![condition("personality", 0, SeccompCmpOp::Eq, value)?],
            )
        })
        .collect::<Result<Vec<_>, _>>()?;

    let socket = vec![rule(
        "socket",
        vec![condition("socket", 0, SeccompCmpOp::Ne, AF_VSOCK)?],
    )?];

    // mknod: files, FIFOs and sockets, never a character or block device. A device node
    // of the host's disk, opened in the container, is the disk (Docker leans on the device
    // cgroup for this; keel refuses the node itself, and mounts the root file system and
    // volumes nodev besides).
    let file_kinds = |syscall: &'static str, mode_arg: u8| {
        [0, libc::S_IFREG, libc::S_IFIFO, libc::S_IFSOCK]
            .iter()
            .map(|&kind| {
                rule(
                    syscall,
                    vec![condition(
                        syscall,
                        mode_arg,
                        SeccompCmpOp::MaskedEq(u64::from(libc::S_IFMT)),
                        u64::from(kind),
                    )?],
                )
            })
            .collect::<Result<Vec<_>, _>>()
    };

    let mut rules = vec![
        ("clone", libc::SYS_clone, clone),
        ("personality", libc::SYS_personality, personality),
        ("socket", libc::SYS_socket, socket),
        ("mknodat", libc::SYS_mknodat, file_kinds("mknodat", 2)?),
    ];
    #[cfg(target_arch = "x86_64")]
    rules.push(("mknod", libc::SYS_mknod, file_kinds("mknod", 1)?));
    Ok(rules)
}

/// Hand-written BPF placed in front of seccompiler's program, because a
/// `SeccompFilter` has a single match action and `clone3` needs a different
/// one: return ENOSYS, not EPERM. clone3 passes its flags in a struct that
/// seccomp cannot inspect, so it cannot be filtered like `clone`; ENOSYS makes
/// glibc (pthread_create, posix_spawn) fall back to `clone`, whereas EPERM
/// would be reported as a hard failure. This matches Docker.
///
/// Jumps in classic BPF are relative, so prepending leaves seccompiler's
/// program valid; for other syscalls or a foreign ABI control falls through
/// to it unchanged (and its own architecture check).
fn clone3_enosys_prefix() -> Vec<sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // Offsets in `struct seccomp_data { int nr; __u32 arch; ... }`.
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;
    // SYS_clone3 is 435 on every architecture, so the cast cannot truncate.
    const CLONE3_NR: u32 = libc::SYS_clone3 as u32;

    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // 0: A = arch; not native -> skip to seccompiler's program (index 5).
        insn(LD_W_ABS, 0, 0, ARCH_OFFSET),
        insn(JEQ_K, 0, 3, AUDIT_ARCH),
        // 2: A = nr; not clone3 -> index 5.
        insn(LD_W_ABS, 0, 0, NR_OFFSET),
        insn(JEQ_K, 0, 1, CLONE3_NR),
        // 4: clone3 -> ENOSYS.
        insn(
            RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA),
        ),
    ]
}

/// Builds the `RuntimeDefault` filter for the architecture keel was built for.
///
/// Pure computation (no syscalls): build it in the parent before forking and
/// only [`apply`] it in the child.
pub fn runtime_default() -> Result<BpfProgram, SeccompError> {
    let denied: BTreeSet<libc::c_long> = denylist().map(|&(_, nr)| nr).collect();
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();

    let mut add = |name: &'static str, nr: libc::c_long, chain: Vec<SeccompRule>| {
        if denied.contains(&nr) {
            return Err(SeccompError::AllowDenyConflict(name));
        }
        if rules.insert(nr, chain).is_some() {
            return Err(SeccompError::DuplicateSyscall(name));
        }
        Ok(())
    };
    for &(name, nr) in allowlist() {
        add(name, nr, Vec::new())?;
    }
    for (name, nr, chain) in conditional_rules()? {
        add(name, nr, chain)?;
    }
    // clone3 must never reach the allowlist: the prefix handles it.
    if rules.contains_key(&libc::SYS_clone3) {
        return Err(SeccompError::AllowDenyConflict("clone3"));
    }

    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TARGET_ARCH,
    )
    .map_err(SeccompError::Build)?;
    let main: BpfProgram = filter.try_into().map_err(SeccompError::Compile)?;

    let mut program = clone3_enosys_prefix();
    program.extend(main);
    if program.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLarge(program.len()));
    }
    Ok(program)
}

/// Installs `program` on the calling thread (no TSYNC); it is inherited by
/// children and survives `execve`, and can never be removed.
///
/// Call it in the container's init process as the last step before `execve`:
/// after uid/gid/groups and capabilities are dropped (setuid, setgroups, capset
/// remain allowed, but doing them first keeps the runtime's own setup out of
/// the filter's way) and after `prctl(PR_SET_NO_NEW_PRIVS, 1)`, which the
/// kernel requires for a caller without CAP_SYS_ADMIN. Unlike
/// `seccompiler::apply_filter` it does not set no_new_privs itself.
/// The filter allows `execve`/`execveat` and what the dynamic loader needs.
#[allow(clippy::ptr_arg)] // BpfProgram is Vec<sock_filter>; keep the public type.
pub fn apply(program: &BpfProgram) -> Result<(), SeccompError> {
    if program.is_empty() {
        return Err(SeccompError::EmptyProgram);
    }
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| SeccompError::TooLarge(program.len()))?,
        // seccompiler's sock_filter is the kernel's struct sock_filter, as libc's is.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // seccomp(2) itself rather than seccompiler::apply_filter, which also sets
    // no_new_privs: a container allowed to escalate keeps setuid programs working, and its
    // filter is installed while it still holds CAP_SYS_ADMIN.
    // SAFETY: `fprog` points into `program`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Install(std::io::Error::last_os_error()));
    }
    Ok(())
}

mod tables;

use tables::{ALLOW_ARCH, ALLOW_COMMON, ALLOW_LIBC_SPECIFIC, DENIED_ARCH, DENIED_COMMON};

#[cfg(test)]
mod tests;
