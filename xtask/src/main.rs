//! `cargo xtask`: the one place that knows how to set up, build, run and test keel.
//!
//! # Layout
//! - [`setup`]: Debian packages, the nightly toolchain's rust-src, bpf-linker, bpffs.
//! - [`build`]: the workspace, whose node-daemon build script builds the eBPF object.
//! - [`test`](mod@test): lints, then every test, including the root-only end-to-end ones.
//! - [`run`]: a real cluster on this host (one member, one node, a demo Deployment behind a
//!   Service), or a lab of members and nodes in network namespaces.
//! - [`bench`](mod@bench): measurements (connect latency through the socket LB, …).
//! - [`vm`]: a Debian kernel under qemu running keel's tests (IPVS, a second kernel).

mod bench;
mod build;
mod dead_runs;
mod fuzz;
#[cfg(test)]
mod layout;
mod leftovers;
mod run;
mod setup;
mod summary;
mod test;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "keel's developer commands")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what keel needs (idempotent; prints every check).
    Setup,
    /// Build the eBPF object and the workspace.
    Build {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Set up if needed, build, lint, and run every test (as root).
    Test {
        /// Only run tests whose name contains this (host tests only).
        filter: Option<String>,
        /// Skip the second kernel (`cargo xtask vm test`), for a quicker loop.
        #[arg(long)]
        no_vm: bool,
    },
    /// Start a keel cluster on this host (or a lab: --members, --nodes); Ctrl-C tears it down.
    Run(run::RunArgs),
    /// Measure (as root): `bench socket`.
    Bench(bench::BenchArgs),
    /// Fuzz the API server's parsers (cargo-fuzz on nightly), every target in turn.
    Fuzz {
        /// How long each target runs, in seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// keel's tests in a stock Debian kernel under qemu (adds IPVS): `vm build`, `vm test`.
    #[command(subcommand)]
    Vm(vm::VmCommand),
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Setup => setup::run(),
        Cmd::Build { release } => build::run(release).map(drop),
        Cmd::Test { filter, no_vm } => test::run(filter.as_deref(), !no_vm),
        Cmd::Run(args) => run::run(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Fuzz { seconds } => fuzz::run(seconds),
        Cmd::Vm(command) => vm::run(command),
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo` as invoked by the user (the same toolchain that runs xtask).
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Runs a command, echoing it; a failure names the command.
fn run_step(mut command: Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}").replace('"', "");
    println!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
