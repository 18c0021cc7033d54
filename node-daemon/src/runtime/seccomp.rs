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

/// Strips the `SYS_` prefix from a `stringify!`-ed libc constant name.
const fn strip_sys_prefix(name: &'static str) -> &'static str {
    match name.as_bytes() {
        [b'S', b'Y', b'S', b'_', rest @ ..] => match core::str::from_utf8(rest) {
            Ok(stripped) => stripped,
            Err(_) => name,
        },
        _ => name,
    }
}

/// `syscalls![SYS_read, SYS_write]` -> `&[("read", libc::SYS_read), ...]`.
/// Using the libc constant directly means a name that does not exist for the
/// target fails to compile instead of silently mapping to a wrong number.
macro_rules! syscalls {
    ($($sys:ident),* $(,)?) => {
        &[$((strip_sys_prefix(stringify!($sys)), libc::$sys)),*]
    };
}

/// Allowed on every supported architecture (Docker's unconditional list,
/// minus `name_to_handle_at`, minus names libc does not define here).
const ALLOW_COMMON: &[Syscall] = syscalls![
    SYS_accept,
    SYS_accept4,
    SYS_adjtimex,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_dup,
    SYS_dup3,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_get_robust_list,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_io_setup,
    SYS_io_submit,
    SYS_io_uring_enter,
    SYS_io_uring_register,
    SYS_io_uring_setup,
    SYS_ioctl,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lgetxattr,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdirat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_openat,
    SYS_openat2,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_mrelease,
    SYS_pselect6,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_set_robust_list,
    SYS_set_tid_address,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_setsid,
    SYS_setsockopt,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd4,
    SYS_socketpair,
    SYS_splice,
    SYS_statfs,
    SYS_statx,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlinkat,
    SYS_utimensat,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
    // CAP_SYS_CHROOT is in the default capability set, so Docker allows chroot.
    SYS_chroot,
];

/// Legacy syscalls that only x86_64 has (aarch64 uses the *at variants),
/// plus `arch_prctl`/`modify_ldt` which Docker allows on amd64 (TLS setup).
#[cfg(target_arch = "x86_64")]
const ALLOW_ARCH: &[Syscall] = syscalls![
    SYS_access,
    SYS_alarm,
    SYS_chmod,
    SYS_chown,
    SYS_creat,
    SYS_dup2,
    SYS_epoll_create,
    SYS_epoll_ctl_old,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_fork,
    SYS_futimesat,
    SYS_getdents,
    SYS_getpgrp,
    SYS_get_thread_area,
    SYS_inotify_init,
    SYS_lchown,
    SYS_link,
    SYS_lstat,
    SYS_mkdir,
    SYS_open,
    SYS_pause,
    SYS_pipe,
    SYS_poll,
    SYS_readlink,
    SYS_rename,
    SYS_rmdir,
    SYS_select,
    SYS_set_thread_area,
    SYS_signalfd,
    SYS_stat,
    SYS_symlink,
    SYS_time,
    SYS_unlink,
    SYS_utime,
    SYS_utimes,
    SYS_vfork,
    SYS_arch_prctl,
    SYS_modify_ldt,
];
#[cfg(target_arch = "aarch64")]
const ALLOW_ARCH: &[Syscall] = syscalls![];

/// libc only defines `SYS_io_pgetevents` for musl targets.
#[cfg(target_env = "musl")]
const ALLOW_LIBC_SPECIFIC: &[Syscall] = syscalls![SYS_io_pgetevents];
#[cfg(not(target_env = "musl"))]
const ALLOW_LIBC_SPECIFIC: &[Syscall] = syscalls![];

/// Explicitly denied syscalls. The default action already refuses them; this
/// table documents why, and `runtime_default` refuses to build a filter that
/// allows any of them. Syscalls with no libc constant on x86_64/aarch64 (so
/// absent here, still EPERM by default): umount (only umount2 exists),
/// vm86/vm86old (i386 only), create_module/get_kernel_syms/query_module
/// (removed in 2.6), pciconfig_* (alpha/powerpc/sparc), stime and
/// clock_settime64 (32-bit ABIs).
const DENIED_COMMON: &[Syscall] = syscalls![
    // Reshaping the mount tree can overmount or unmask /proc and /sys paths the
    // runtime hid, or expose host filesystems; the fs* / *_mount / open_tree
    // calls are the same power through the new mount API.
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_fsopen,
    SYS_fsconfig,
    SYS_fsmount,
    SYS_fspick,
    SYS_move_mount,
    SYS_open_tree,
    SYS_mount_setattr,
    // Joining host namespaces (setns) or creating new ones: unshare/clone with
    // CLONE_NEWUSER hands out a full capability set inside a new user namespace,
    // the usual entry point to netfilter/overlayfs/... kernel privilege escalation.
    SYS_setns,
    SYS_unshare,
    // Replace or restart the host kernel.
    SYS_kexec_load,
    SYS_reboot,
    // Load or remove code in the host kernel.
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    // eBPF verifier bugs are a recurring kernel exploit vector; perf events leak
    // kernel addresses and enable side channels.
    SYS_bpf,
    SYS_perf_event_open,
    // userfaultfd lets an exploit stall the kernel mid-copy to win races.
    SYS_userfaultfd,
    // Reading/writing other processes' memory or stealing their fds; before
    // Linux 4.8 ptrace could also rewrite syscalls to bypass seccomp.
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_process_madvise,
    SYS_pidfd_getfd,
    SYS_kcmp,
    // Kernel keyrings are not namespaced: keys of the host and other containers.
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    // Host-wide resources: swap, process accounting (writes an arbitrary file),
    // the system clock (not namespaced), filesystem quotas.
    SYS_swapon,
    SYS_swapoff,
    SYS_acct,
    SYS_settimeofday,
    SYS_clock_settime,
    SYS_quotactl,
    SYS_quotactl_fd,
    // Kernel log and profiling interfaces leak kernel addresses (KASLR bypass)
    // and paths; syslog can also clear the host's log.
    SYS_syslog,
    SYS_lookup_dcookie,
    // "Shocker" escape: open files by handle, bypassing the mount namespace
    // and chroot; name_to_handle_at produces the handles.
    SYS_open_by_handle_at,
    SYS_name_to_handle_at,
    // Filesystem-wide event monitoring beyond the container's view.
    SYS_fanotify_init,
    // Obsolete (removed in 3.1); no legitimate use.
    SYS_nfsservctl,
    // Would rename the host if the UTS namespace is shared.
    SYS_sethostname,
    SYS_setdomainname,
    // Hang up the controlling terminal.
    SYS_vhangup,
    // NUMA placement (CAP_SYS_NICE in Docker): noisy-neighbour and topology leak.
    SYS_get_mempolicy,
    SYS_mbind,
    SYS_set_mempolicy,
    SYS_set_mempolicy_home_node,
];

#[cfg(target_arch = "x86_64")]
const DENIED_ARCH: &[Syscall] = syscalls![
    SYS_kexec_file_load,
    // a.out loader with a history of bugs.
    SYS_uselib,
    // Raw x86 I/O port access: direct hardware control.
    SYS_iopl,
    SYS_ioperm,
    // Obsolete interfaces (_sysctl removed in 5.5) that leak host information.
    SYS_sysfs,
    SYS__sysctl,
    SYS_ustat,
];
#[cfg(all(target_arch = "aarch64", not(target_env = "musl")))]
const DENIED_ARCH: &[Syscall] = syscalls![SYS_kexec_file_load];
#[cfg(all(target_arch = "aarch64", target_env = "musl"))]
const DENIED_ARCH: &[Syscall] = syscalls![];

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

    /// Syscalls the brief requires to be denied. Each must be in the deny
    /// tables or in NOT_IN_LIBC (no libc constant for this target).
    const REQUIRED_DENIED: &[&str] = &[
        "mount",
        "umount2",
        "pivot_root",
        "kexec_load",
        "kexec_file_load",
        "bpf",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "keyctl",
        "add_key",
        "request_key",
        "init_module",
        "finit_module",
        "delete_module",
        "swapon",
        "swapoff",
        "reboot",
        "setns",
        "unshare",
        "open_by_handle_at",
        "perf_event_open",
        "userfaultfd",
        "acct",
        "settimeofday",
        "clock_settime",
        "quotactl",
        "lookup_dcookie",
        "syslog",
        "uselib",
        "fanotify_init",
        "name_to_handle_at",
        "vm86",
        "iopl",
        "ioperm",
        "create_module",
        "nfsservctl",
        "get_kernel_syms",
        "query_module",
        "sysfs",
        "_sysctl",
        "ustat",
        "pciconfig_read",
        "pciconfig_write",
        "pciconfig_iobase",
        "kcmp",
    ];

    #[cfg(target_arch = "x86_64")]
    const NOT_IN_LIBC: &[&str] = &[
        "vm86",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "pciconfig_read",
        "pciconfig_write",
        "pciconfig_iobase",
    ];
    #[cfg(all(target_arch = "aarch64", not(target_env = "musl")))]
    const NOT_IN_LIBC: &[&str] = &[
        "uselib",
        "vm86",
        "iopl",
        "ioperm",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "sysfs",
        "_sysctl",
        "ustat",
        "pciconfig_read",
        "pciconfig_write",
        "pciconfig_iobase",
    ];
    #[cfg(all(target_arch = "aarch64", target_env = "musl"))]
    const NOT_IN_LIBC: &[&str] = &[
        "kexec_file_load",
        "uselib",
        "vm86",
        "iopl",
        "ioperm",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "sysfs",
        "_sysctl",
        "ustat",
        "pciconfig_read",
        "pciconfig_write",
        "pciconfig_iobase",
    ];

    #[test]
    fn program_builds_and_is_non_empty() {
        let program = runtime_default().expect("filter builds");
        assert!(program.len() > clone3_enosys_prefix().len());
        assert!(
            program.len() <= BPF_MAXINSNS,
            "{} instructions",
            program.len()
        );
        assert_eq!(program[..5], clone3_enosys_prefix()[..]);
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000);
        assert_eq!(strip_sys_prefix("SYS_read"), "read");
        assert_eq!(strip_sys_prefix("SYS__sysctl"), "_sysctl");
    }

    #[test]
    fn allow_and_deny_lists_are_disjoint() {
        let allowed: Vec<&Syscall> = allowlist().collect();
        let allowed_names: BTreeSet<&str> = allowed.iter().map(|s| s.0).collect();
        let allowed_nrs: BTreeSet<libc::c_long> = allowed.iter().map(|s| s.1).collect();
        assert_eq!(
            allowed_names.len(),
            allowed.len(),
            "duplicate name in allowlist"
        );
        assert_eq!(
            allowed_nrs.len(),
            allowed.len(),
            "duplicate number in allowlist"
        );

        for &(name, nr) in denylist() {
            assert!(
                !allowed_names.contains(name),
                "{name} is allowed and denied"
            );
            assert!(
                !allowed_nrs.contains(&nr),
                "{name} ({nr}) is allowed and denied"
            );
        }

        let denied_names: BTreeSet<&str> = denylist().map(|s| s.0).collect();
        for name in REQUIRED_DENIED {
            assert!(
                !allowed_names.contains(name),
                "{name} must not be allowlisted"
            );
            assert!(
                denied_names.contains(name) ^ NOT_IN_LIBC.contains(name),
                "{name} must be in exactly one of the deny table / NOT_IN_LIBC"
            );
        }

        // Argument-checked or specially handled syscalls must not be
        // unconditionally allowed.
        for name in ["clone", "clone3", "personality", "socket", "unshare"] {
            assert!(
                !allowed_names.contains(name),
                "{name} is unconditionally allowed"
            );
        }
        for nr in [
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_personality,
            libc::SYS_socket,
        ] {
            assert!(!allowed_nrs.contains(&nr));
        }
        // The exec path must stay open.
        for name in [
            "execve", "execveat", "mmap", "mprotect", "openat", "read", "close",
        ] {
            assert!(allowed_names.contains(name), "{name} must be allowed");
        }
    }

    /// Minimal classic-BPF interpreter for the instructions seccompiler and
    /// the clone3 prefix emit, run against a synthetic `struct seccomp_data`.
    fn eval(program: &[sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let code = |c: u32| c as u16;
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = &program[pc];
            pc += 1;
            let (jt, jf, k) = (insn.jt as usize, insn.jf as usize, insn.k);
            match insn.code {
                c if c == code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) => {
                    let off = k as usize;
                    acc = u32::from_le_bytes([
                        data[off],
                        data[off + 1],
                        data[off + 2],
                        data[off + 3],
                    ]);
                }
                c if c == code(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) => acc &= k,
                c if c == code(libc::BPF_JMP | libc::BPF_JA) => pc += k as usize,
                c if c == code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) => {
                    pc += if acc == k { jt } else { jf }
                }
                c if c == code(libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) => {
                    pc += if acc > k { jt } else { jf }
                }
                c if c == code(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) => {
                    pc += if acc >= k { jt } else { jf }
                }
                c if c == code(libc::BPF_RET | libc::BPF_K) => return k,
                other => panic!("unexpected BPF opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn filter_semantics() {
        let p = runtime_default().expect("filter builds");
        let run = |nr: libc::c_long, arg0: u64| eval(&p, AUDIT_ARCH, nr, [arg0, 0, 0, 0, 0, 0]);

        for &(name, nr) in allowlist() {
            assert_eq!(run(nr, 0), RET_ALLOW, "{name} should be allowed");
        }
        for &(name, nr) in denylist() {
            assert_eq!(run(nr, 0), RET_EPERM, "{name} should be EPERM");
        }
        assert_eq!(run(libc::SYS_clone3, 0), RET_ENOSYS);
        assert_eq!(run(9999, 0), RET_EPERM, "unknown syscall");

        // clone: fork/thread flags pass, any namespace flag is refused.
        let sigchld = libc::SIGCHLD as u64;
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(run(libc::SYS_clone, sigchld), RET_ALLOW);
        assert_eq!(run(libc::SYS_clone, thread), RET_ALLOW);
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
        ] {
            assert_eq!(
                run(libc::SYS_clone, sigchld | flag as u64),
                RET_EPERM,
                "flag {flag:#x}"
            );
        }

        for value in PERSONALITY_ALLOWED {
            assert_eq!(
                run(libc::SYS_personality, value),
                RET_ALLOW,
                "personality {value:#x}"
            );
        }
        assert_eq!(
            run(libc::SYS_personality, 0x0040000),
            RET_EPERM,
            "ADDR_NO_RANDOMIZE"
        );
        assert_eq!(
            run(libc::SYS_personality, 0x0400000),
            RET_EPERM,
            "READ_IMPLIES_EXEC"
        );

        assert_eq!(run(libc::SYS_socket, libc::AF_INET as u64), RET_ALLOW);
        assert_eq!(run(libc::SYS_socket, libc::AF_UNIX as u64), RET_ALLOW);
        assert_eq!(run(libc::SYS_socket, AF_VSOCK), RET_EPERM);

        // Foreign ABI: killed by seccompiler's arch check, clone3 included.
        let i386 = 3 | 0x4000_0000; // AUDIT_ARCH_I386
        assert_eq!(eval(&p, i386, 20, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(eval(&p, i386, libc::SYS_clone3, [0; 6]), RET_KILL_PROCESS);
        // x32 numbers (same AUDIT_ARCH on x86_64) never match the allowlist.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(libc::SYS_read | 0x4000_0000, 0), RET_EPERM);
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Forks; the child sets no_new_privs, installs `program` and returns
    /// `body()` as its exit code. Returns the child's exit code (or
    /// 1000 + signal if it was killed). Only async-signal-safe work in the
    /// child: everything that allocates is prepared by the caller.
    fn run_filtered_child(program: &BpfProgram, body: impl FnOnce() -> i32) -> i32 {
        // SAFETY: fork/_exit/waitpid/prctl with valid arguments; the child only
        // makes raw syscalls and never returns into the test harness.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
            if pid == 0 {
                let code = if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    2
                } else if apply(program).is_err() {
                    3
                } else if libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) != 2 {
                    4 // not in SECCOMP_MODE_FILTER
                } else {
                    body()
                };
                libc::_exit(code);
            }
            wait_for(pid)
        }
    }

    /// waitpid with EINTR retry; exit code, or 1000 + signal number.
    unsafe fn wait_for(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r == -1 && errno() == libc::EINTR {
                continue;
            }
            return 999;
        }
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            1000 + libc::WTERMSIG(status)
        } else {
            998
        }
    }

    fn child_check_name(code: i32) -> &'static str {
        match code {
            0 => "ok",
            2 => "prctl(PR_SET_NO_NEW_PRIVS)",
            3 => "apply() failed",
            4 => "PR_GET_SECCOMP != 2 after apply",
            10 => "getpid",
            11 => "write to pipe",
            12 => "bpf not EPERM",
            13 => "keyctl not EPERM",
            14 => "unshare(CLONE_NEWUSER) not EPERM",
            15 => "mount tmpfs not EPERM",
            16 => "umount2 not EPERM",
            17 => "ptrace(PTRACE_ATTACH) not EPERM",
            18 => "process_vm_readv not EPERM",
            19 => "clone3 not ENOSYS",
            20 => "clone(CLONE_NEWUSER) not EPERM",
            21 => "setns not EPERM",
            22 => "personality(ADDR_NO_RANDOMIZE) not EPERM",
            23 => "personality(0xffffffff) query failed",
            24 => "socket(AF_VSOCK) not EPERM",
            25 => "socket(AF_UNIX) failed",
            26 => "fork() under filter failed",
            27 => "pthread_create under filter failed",
            28 => "perf_event_open not EPERM",
            30 => "execv failed",
            _ => "unknown (>=1000: killed by signal code-1000)",
        }
    }

    extern "C" fn thread_main(arg: *mut libc::c_void) -> *mut libc::c_void {
        arg
    }

    #[test]
    fn filter_denies_in_forked_child() {
        let program = runtime_default().expect("filter builds");
        // A path that does not exist: unfiltered, mount/umount2 would fail with
        // ENOENT (so EPERM can only come from seccomp), and a broken filter can
        // never leave a mount behind in the host's mount namespace.
        let mnt = CString::new(format!("/tmp/keel-seccomp-test-{}/mnt", std::process::id()))
            .expect("no NUL");
        let (tmpfs, none) = (c"tmpfs", c"none");
        let mut fds = [0; 2];
        // SAFETY: valid out-pointer for two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);

        let code = run_filtered_child(&program, || unsafe {
            // SAFETY (whole closure): raw syscalls with valid or null pointers.
            let denied = |ret: libc::c_long| ret == -1 && errno() == libc::EPERM;

            if libc::getpid() <= 0 {
                return 10;
            }
            if libc::write(fds[1], b"k".as_ptr().cast(), 1) != 1 {
                return 11;
            }
            // bpf(BPF_MAP_CREATE, NULL, 0): unfiltered this is EFAULT/EINVAL.
            if !denied(libc::syscall(libc::SYS_bpf, 0, 0usize, 0)) {
                return 12;
            }
            // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0).
            if !denied(libc::syscall(libc::SYS_keyctl, 0, -3, 0)) {
                return 13;
            }
            if !denied(libc::c_long::from(libc::unshare(libc::CLONE_NEWUSER))) {
                return 14;
            }
            let m = libc::mount(
                none.as_ptr(),
                mnt.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            );
            if !denied(libc::c_long::from(m)) {
                return 15;
            }
            if !denied(libc::c_long::from(libc::umount2(
                mnt.as_ptr(),
                libc::MNT_DETACH,
            ))) {
                return 16;
            }
            // A pid that cannot exist (> PID_MAX_LIMIT): unfiltered this is
            // ESRCH, so EPERM proves the filter; and a broken filter can't
            // stop a real process (e.g. the host's init).
            let no_such_pid = libc::pid_t::MAX;
            let r = libc::ptrace(libc::PTRACE_ATTACH, no_such_pid, 0usize, 0usize);
            if !denied(r) {
                return 17;
            }
            let r = libc::syscall(
                libc::SYS_process_vm_readv,
                libc::getpid(),
                0usize,
                0,
                0usize,
                0,
                0,
            );
            if !denied(r) {
                return 18;
            }
            // clone3(NULL, 0): unfiltered EINVAL; must be ENOSYS for glibc's fallback.
            let r = libc::syscall(libc::SYS_clone3, 0usize, 0usize);
            if !(r == -1 && errno() == libc::ENOSYS) {
                return 19;
            }
            let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
            let r = libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize);
            if r == 0 {
                libc::_exit(0); // filter broken: we are the new child
            }
            if !denied(r) {
                if r > 0 {
                    wait_for(r as libc::pid_t);
                }
                return 20;
            }
            if !denied(libc::c_long::from(libc::setns(-1, 0))) {
                return 21;
            }
            if !denied(libc::c_long::from(libc::personality(0x0040000))) {
                return 22;
            }
            if libc::personality(0xffff_ffff) == -1 {
                return 23;
            }
            if !denied(libc::c_long::from(libc::socket(
                libc::AF_VSOCK,
                libc::SOCK_STREAM,
                0,
            ))) {
                return 24;
            }
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if s < 0 {
                return 25;
            }
            libc::close(s);
            let r = libc::syscall(libc::SYS_perf_event_open, 0usize, 0, -1, -1, 0);
            if !denied(r) {
                return 28;
            }
            // Plain fork (clone without namespace flags) still works.
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(42);
            }
            if pid < 0 || wait_for(pid) != 42 {
                return 26;
            }
            // pthread_create: glibc tries clone3 first and must fall back to clone.
            let mut thread: libc::pthread_t = std::mem::zeroed();
            let arg = 7usize as *mut libc::c_void;
            if libc::pthread_create(&mut thread, std::ptr::null(), thread_main, arg) != 0 {
                return 27;
            }
            let mut ret: *mut libc::c_void = std::ptr::null_mut();
            if libc::pthread_join(thread, &mut ret) != 0 || ret != arg {
                return 27;
            }
            0
        });

        let mut byte = [0u8; 1];
        // SAFETY: reading into a 1-byte buffer from our own pipe.
        let n = unsafe {
            libc::close(fds[1]);
            let n = libc::read(fds[0], byte.as_mut_ptr().cast(), 1);
            libc::close(fds[0]);
            n
        };
        assert_eq!(
            code,
            0,
            "child check {code} failed: {}",
            child_check_name(code)
        );
        assert_eq!(
            (n, byte[0]),
            (1, b'k'),
            "write under the filter did not arrive"
        );
    }

    #[test]
    fn exec_works_under_filter() {
        let program = runtime_default().expect("filter builds");
        let sh = c"/bin/sh";
        if !std::path::Path::new("/bin/sh").exists() {
            eprintln!("skipping: no /bin/sh");
            return;
        }
        // The shell forks (subshell), execs /bin/true and reads /proc: the
        // dynamic loader and libc start-up run entirely under the filter.
        let script = c"( exit 0 ) && cat /proc/self/status >/dev/null && /bin/true";
        let argv = [
            c"sh".as_ptr(),
            c"-c".as_ptr(),
            script.as_ptr(),
            std::ptr::null(),
        ];
        let code = run_filtered_child(&program, || unsafe {
            // SAFETY: NUL-terminated argv of valid C strings.
            libc::execv(sh.as_ptr(), argv.as_ptr());
            30
        });
        assert_eq!(
            code,
            0,
            "exec under filter: {code} ({})",
            child_check_name(code)
        );
    }

    #[test]
    fn apply_rejects_empty_program() {
        assert!(matches!(
            apply(&Vec::new()),
            Err(SeccompError::EmptyProgram)
        ));
    }
}
