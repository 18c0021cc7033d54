//! `node-daemon`: keel's per-node agent. See the library's docs for its layout.

use clap::Parser;
use keel_node_daemon::{daemon, inspect, monitor, Args, Command, ImageCommand};
use keel_runtime as runtime;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The pause and shim processes are this binary too. They must not start threads: the
    // pause is PID 1 of a pod, the shim forks the container.
    match &args.command {
        Some(Command::Pause { hostname }) => return runtime::pause::main(hostname),
        Some(Command::Shim { spec }) => return runtime::shim::main(spec),
        // Single-threaded too: it enters a PID namespace and forks.
        Some(Command::Nsexec { spec, pid, command }) => {
            std::process::exit(runtime::nsexec::run(spec, *pid, command)?)
        }
        Some(Command::Exec {
            pod,
            namespace,
            container,
            state_dir,
            command,
        }) => {
            let code =
                runtime::cli::exec(state_dir, namespace, pod, container.as_deref(), command)?;
            std::process::exit(code)
        }
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match &args.command {
        Some(Command::Services { output, bpf_dir }) => {
            return inspect::print_services(bpf_dir, *output)
        }
        Some(Command::Monitor {
            output,
            services,
            kinds,
            reasons,
            bpf_dir,
        }) => {
            let filter = monitor::Filter::parse(services, kinds, reasons)?;
            return monitor::run(bpf_dir, *output, &filter);
        }
        Some(Command::Pods { output, state_dir }) => {
            return runtime::cli::print_pods(state_dir, *output)
        }
        Some(Command::Describe {
            pod,
            namespace,
            state_dir,
        }) => return runtime::cli::describe(state_dir, namespace, pod),
        Some(Command::Logs {
            pod,
            namespace,
            container,
            follow,
            previous,
            timestamps,
            state_dir,
        }) => {
            return runtime::cli::print_logs(
                state_dir,
                namespace,
                pod,
                container.as_deref(),
                *follow,
                *previous,
                *timestamps,
            )
        }
        Some(Command::Image { command, state_dir }) => {
            return match command {
                ImageCommand::Import { file, name } => {
                    runtime::cli::import_image(state_dir, file, name.as_deref())
                }
                ImageCommand::List => runtime::cli::list_images(state_dir),
            }
        }
        _ => {}
    }
    tune_malloc();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Pod work runs on blocking threads (a burst of pod starts spawns dozens); tokio
        // keeps an idle one 10 s by default, with its stack and allocator caches. Two seconds
        // still reuses threads within a burst.
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .enable_all()
        .build()?;
    if args.cleanup {
        runtime.block_on(daemon::cleanup(&args))
    } else {
        runtime.block_on(daemon::run(args))
    }
}

/// glibc's defaults suit a short-lived program, not a daemon that stays small for weeks.
/// Each setting yields to its environment variable (or `GLIBC_TUNABLES`), so an operator
/// can still choose.
///
/// - Arenas: glibc gives every thread that allocates an arena of its own, up to 8 per core,
///   and keeps what was freed in each. Pod work runs on short-lived blocking threads, whose
///   arenas would hold memory long after a burst; two arenas are enough for two worker
///   threads (the usual MALLOC_ARENA_MAX=2 of long-running services).
/// - The mmap threshold: glibc raises it to the size of the largest block freed, up to
///   32 MiB. Loading the eBPF programs parses the kernel's BTF (a 5.5 MB buffer, twice), after
///   which every buffer below that size comes from the heap, where a hole left by a freed
///   one is not given back. Fixed at 128 KiB (glibc's initial value), large buffers are
///   mapped and unmapped whole.
/// - The trim threshold: fixed too (setting the mmap threshold stops its adjustment), at
///   512 KiB: free memory at the top of the heap goes back to the kernel.
fn tune_malloc() {
    let settings = [
        (
            "MALLOC_ARENA_MAX",
            "glibc.malloc.arena_max",
            libc::M_ARENA_MAX,
            2,
        ),
        (
            "MALLOC_MMAP_THRESHOLD_",
            "glibc.malloc.mmap_threshold",
            libc::M_MMAP_THRESHOLD,
            128 * 1024,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            "glibc.malloc.trim_threshold",
            libc::M_TRIM_THRESHOLD,
            512 * 1024,
        ),
    ];
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    for (variable, tunable, parameter, value) in settings {
        if std::env::var_os(variable).is_some() || tunables.contains(tunable) {
            continue;
        }
        // SAFETY: mallopt only sets an allocator parameter; called before any thread is
        // spawned.
        unsafe {
            libc::mallopt(parameter, value);
        }
    }
}
