//! `cargo xtask build`: the workspace, including the eBPF objects (built and embedded by the
//! keel-bpf crate's build script with the nightly toolchain).

use std::path::PathBuf;

use crate::{cargo, run_step, workspace_root};

/// Builds every binary and test; returns the directory holding the binaries.
pub fn run(release: bool) -> anyhow::Result<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--workspace", "--all-targets"]);
    if release {
        command.arg("--release");
    }
    run_step(command)?;
    let dir = workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" });
    println!("built: {}", dir.display());
    Ok(dir)
}

/// Builds the daemon and the agent with optimisations; returns where they are.
pub fn build_release() -> anyhow::Result<PathBuf> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "keel-node-daemon",
        "-p",
        "keel-lab",
    ]);
    run_step(build)?;
    let bin_dir = workspace_root().join("target/release");
    std::env::set_var("KEEL_BIN_DIR", &bin_dir);
    Ok(bin_dir)
}
