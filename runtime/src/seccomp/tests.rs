use super::{tables::strip_sys_prefix, *};
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
                acc = u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
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
    let mnt =
        CString::new(format!("/tmp/keel-seccomp-test-{}/mnt", std::process::id())).expect("no NUL");
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
