//! `node-daemon`: keel's per-node agent. See the library's docs for its layout.

use clap::Parser;
use keel_node_daemon::{daemon, inspect, Args, Command};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
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
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match &args.command {
        Some(Command::Services { output, bpf_dir }) => inspect::print_services(bpf_dir, *output),
        None if args.cleanup => runtime.block_on(daemon::cleanup(&args)),
        None => runtime.block_on(daemon::run(args)),
    }
}
