//! `cargo xtask test`: what CI runs. Setup (a no-op when all is present), build, format and
//! lint checks, then every test — unit tests and the root-only end-to-end tests alike.

use anyhow::bail;

use crate::{build, cargo, is_root, run_step, setup};

pub fn run(filter: Option<&str>) -> anyhow::Result<()> {
    if !is_root() {
        bail!("keel's tests load BPF programs and create network namespaces: run `cargo xtask test` as root");
    }
    setup::run()?;
    let bin_dir = build::run(false)?;

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run_step(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run_step(clippy)?;

    let mut test = cargo();
    test.args(["test", "--workspace"])
        .env("KEEL_BIN_DIR", &bin_dir);
    if let Some(filter) = filter {
        test.arg(filter);
    }
    run_step(test)?;

    if filter.is_none() {
        // The demo is part of the product: prove `cargo xtask run` works, then tear it down.
        crate::run::smoke(&bin_dir)?;
    }
    Ok(())
}
