//! `cargo xtask bench proxy --vm`: the proxy bench inside the Debian guest of `cargo xtask
//! vm`. The guest prints its results between two markers on the serial console; this side
//! reads them and writes the report beside the host's.

use std::{fs, time::Duration};

use anyhow::{bail, Context};

use super::proxy::{RESULTS_BEGIN, RESULTS_END};
use crate::vm::{boot, build_guest, Payload};

/// `cargo xtask bench proxy --vm`: the proxy bench inside the guest. Figures are emulated;
/// they are written beside the host's results as `vm-results.json` and `vm-results.md`.
pub fn run(args: Vec<String>) -> anyhow::Result<()> {
    let guest = build_guest(&Payload::Bench { args })?;
    let mut results = None;
    let mut capturing = false;
    let (done, _) = boot(&guest, Duration::from_secs(4 * 3600), |line| {
        if line.contains(RESULTS_BEGIN) {
            capturing = true;
        } else if line.contains(RESULTS_END) {
            capturing = false;
        } else if capturing {
            results = Some(line.to_owned());
        }
    })?;
    let Some(results) = results.filter(|_| done) else {
        bail!("the bench in the VM did not finish with results");
    };
    let dir = super::results_dir()?;
    let cells: Vec<super::proxy::Cell> =
        serde_json::from_str(&results).context("the VM's bench results")?;
    fs::write(dir.join("vm-results.json"), results)?;
    let markdown = super::proxy::markdown(&cells, true);
    fs::write(dir.join("vm-results.md"), &markdown)?;
    println!("{markdown}");
    println!("vm results: {}", dir.join("vm-results.json").display());
    Ok(())
}
