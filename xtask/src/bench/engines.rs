//! `cargo xtask bench engines`: the embedded engines the store's raft log could sit on, side
//! by side on this disk, doing group commit as the log will (`keel-engine-bench`, in the
//! control-plane crate). The report goes to `bench-results/<date>/engines.{md,json,svg}`.

use std::{fs, process::Stdio};

use anyhow::{bail, Context};

use crate::{cargo, run_step, workspace_root};

pub fn run() -> anyhow::Result<()> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "keel-control-plane",
        "--bin",
        "keel-engine-bench",
    ]);
    run_step(build)?;
    // On the disk the store's data directory would be on (the workspace's), not a tmpfs.
    let target = workspace_root().join("target");
    let scratch = tempfile::Builder::new()
        .prefix("keel-bench-engines-")
        .tempdir_in(&target)
        .context("a scratch directory under target/")?;
    let output = std::process::Command::new(target.join("release/keel-engine-bench"))
        .arg(scratch.path())
        .stderr(Stdio::inherit())
        .output()
        .context("running keel-engine-bench")?;
    if !output.status.success() {
        bail!("keel-engine-bench failed ({})", output.status);
    }
    let cells: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).context("keel-engine-bench's JSON")?;
    let mut markdown = String::from(
        "### Raft log on an embedded engine: group commit, fdatasync per batch, 256-byte entries\n\n\
         | engine | clients | appends/s | p50 (ms) | p99 (ms) | entries per sync |\n\
         |---|---|---|---|---|---|\n",
    );
    for cell in &cells {
        markdown.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} |\n",
            cell["engine"].as_str().unwrap_or("?"),
            cell["clients"],
            cell["appends_per_second"].as_f64().unwrap_or(0.0),
            cell["p50_ms"].as_f64().unwrap_or(0.0),
            cell["p99_ms"].as_f64().unwrap_or(0.0),
            cell["entries_per_sync"].as_f64().unwrap_or(0.0),
        ));
    }
    println!("\n{markdown}");
    let dir = super::results_dir()?;
    fs::write(dir.join("engines.md"), &markdown)?;
    fs::write(dir.join("engines.json"), &output.stdout)?;
    let series: Vec<(String, Vec<(f64, f64)>)> = ["redb", "fjall"]
        .iter()
        .map(|engine| {
            let points = cells
                .iter()
                .filter(|c| c["engine"] == *engine)
                .filter_map(|c| Some((c["clients"].as_f64()?, c["appends_per_second"].as_f64()?)))
                .collect();
            ((*engine).to_owned(), points)
        })
        .collect();
    super::plot::lines_over(
        &dir.join("engines.svg"),
        "raft log appends/s by concurrent clients (group commit, fdatasync)",
        "concurrent clients",
        &series,
    )?;
    println!("results: {}", dir.join("engines.md").display());
    Ok(())
}
