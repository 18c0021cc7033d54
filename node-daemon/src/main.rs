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
    limit_malloc_arenas();
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
        runtime.spawn(trim_heap());
        runtime.block_on(daemon::run(args))
    }
}

/// Gives free heap memory back to the kernel every few seconds. On free(), glibc returns only
/// the top of the heap; after a burst of pod starts, freed buffers lie between live ones and
/// stay resident. malloc_trim also releases the whole free pages inside the heap. It walks
/// the free lists of two arenas, which takes well under a millisecond here.
async fn trim_heap() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        // SAFETY: malloc_trim only releases memory glibc holds free; it has no
        // preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// glibc gives every thread that allocates an arena of its own, up to 8 per core, and keeps
/// what was freed in each. The daemon's pod work runs on short-lived blocking threads (a burst
/// of pod starts spawns dozens), so their arenas would hold memory long after the burst; two
/// arenas are enough for two worker threads and a daemon that is mostly idle (the usual
/// MALLOC_ARENA_MAX=2 of long-running services). An explicit MALLOC_ARENA_MAX still wins.
///
/// (Fixing the mmap and trim thresholds as well, so that the kernel BTF parse at start could
/// not raise them, made no difference to the cluster bench's RSS: 38.6 MB with, 38.7 without.)
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets an allocator parameter; called before any thread is spawned.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
