//! `cargo xtask build`: the workspace, including the eBPF object (built and embedded by
//! node-daemon's build script with the nightly toolchain).

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
