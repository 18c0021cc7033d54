//! `cargo xtask fuzz`: the cargo-fuzz targets of control-plane/fuzz, each for a while. Every
//! body, patch, selector and path the API server reads, and every HTTP/2 frame the store's
//! client listener repairs, is written by whoever can reach it, so the parsers also meet inputs
//! nobody thought of: a panic, a stack overflow, an input slower
//! than the timeout or memory past the limit fails the target, with the input that did it.
//!
//! The targets build with the nightly (cargo-fuzz's coverage flags), as debug builds without a
//! sanitizer: keel and its dependencies are safe Rust where it matters here, and a sanitized
//! release build of k8s-openapi, tonic and warp would cost CI more minutes than the fuzzing
//! itself. `cargo xtask setup` installs cargo-fuzz.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::{bail, Context};

use crate::{run_step, workspace_root};

/// The targets: the `[[bin]]`s of control-plane/fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &[
    "body_decode",
    "strategic_patch",
    "json_patch",
    "merge_patch",
    "selectors",
    "server_side_apply",
    "http2_authority",
];

/// The fuzz project, relative to the workspace root, where cargo-fuzz runs.
const FUZZ_DIR: &str = "control-plane/fuzz";

/// Where libFuzzer writes the inputs it finds: under target/, so that the checked-in seed
/// corpus (`<FUZZ_DIR>/corpus/<target>`) stays a few readable files while this one grows from
/// run to run.
const SCRATCH_CORPUS: &str = "target/fuzz-corpus";

/// libFuzzer's limits: memory per process; the largest input (64 KiB reaches every code path
/// a larger body would); the longest one input may take, since the parsers promise time linear
/// in their input and a slow input is an attack too.
const LIMITS: &[&str] = &["-rss_limit_mb=2048", "-max_len=65536", "-timeout=10"];

/// How the targets are built (see the module's comment).
const BUILD: &[&str] = &["--dev", "--sanitizer", "none"];

/// How one target's run ended.
pub struct Outcome {
    pub target: &'static str,
    /// Why it failed, with the inputs that made it fail; `None` when it found nothing.
    pub failure: Option<String>,
}

/// `cargo xtask fuzz`: every target for `seconds_per_target`; fails if any target does.
pub fn run(seconds_per_target: u64) -> anyhow::Result<()> {
    let outcomes = run_all(seconds_per_target)?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failure.is_some())
        .map(|o| o.target)
        .collect();
    if !failed.is_empty() {
        bail!("fuzzing failed in {}", failed.join(", "));
    }
    println!(
        "fuzz: {} targets ran {seconds_per_target} s each and found nothing",
        outcomes.len()
    );
    Ok(())
}

/// Builds every target, then runs each for `seconds_per_target`, one line per target. An
/// error is a broken setup (no cargo-fuzz, a target that does not build), not a finding.
pub fn run_all(seconds_per_target: u64) -> anyhow::Result<Vec<Outcome>> {
    let version = cargo_fuzz().arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {
            println!("fuzz: {}", String::from_utf8_lossy(&out.stdout).trim());
        }
        _ => bail!(
            "`cargo +nightly fuzz` does not run: run `cargo xtask setup` (it installs cargo-fuzz; the targets need the nightly toolchain)"
        ),
    }
    // One build for all targets, so that a compile error is told apart from a finding and each
    // run below starts fuzzing at once.
    let mut build = cargo_fuzz();
    build
        .args(["build"])
        .args(BUILD)
        .args(["--fuzz-dir", FUZZ_DIR]);
    run_step(build).context("building the fuzz targets")?;
    TARGETS
        .iter()
        .map(|&target| run_target(target, seconds_per_target))
        .collect()
}

fn run_target(target: &'static str, seconds: u64) -> anyhow::Result<Outcome> {
    let root = workspace_root();
    let scratch = Path::new(SCRATCH_CORPUS).join(target);
    fs::create_dir_all(root.join(&scratch))
        .with_context(|| format!("creating {}", scratch.display()))?;
    let seeds = Path::new(FUZZ_DIR).join("corpus").join(target);
    let started = SystemTime::now();
    let mut fuzz = cargo_fuzz();
    // libFuzzer adds new inputs to the first corpus directory and reads them all.
    fuzz.args(["run"])
        .args(BUILD)
        .args(["--fuzz-dir", FUZZ_DIR, target])
        .arg(scratch)
        .arg(seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(LIMITS);
    let failure = match run_step(fuzz) {
        Ok(()) => None,
        Err(error) => {
            let artifacts = root.join(FUZZ_DIR).join("artifacts").join(target);
            let inputs: Vec<String> = new_artifacts(&artifacts, started)
                .iter()
                .map(|p| {
                    p.strip_prefix(&root)
                        .unwrap_or(p.as_path())
                        .display()
                        .to_string()
                })
                .collect();
            Some(match inputs.first() {
                None => format!("{error:#} (no failing input was saved)"),
                Some(first) => format!(
                    "failing input {}; reproduce in the workspace root with `cargo +nightly fuzz run --dev --sanitizer none --fuzz-dir {FUZZ_DIR} {target} {first}`",
                    inputs.join(", ")
                ),
            })
        }
    };
    match &failure {
        None => println!("fuzz {target}: ok, nothing found in {seconds} s"),
        Some(why) => println!("fuzz {target}: FAILED: {why}"),
    }
    Ok(Outcome { target, failure })
}

/// `cargo +nightly fuzz` in the workspace root. Through rustup's `cargo`, not `$CARGO` (the
/// toolchain running xtask, which takes no `+toolchain`): cargo-fuzz's sanitizer flags are
/// nightly-only. keel's nightly is the machine's `nightly` (shared/TOOLCHAIN.md: no dated
/// nightly can be installed).
fn cargo_fuzz() -> Command {
    let mut command = Command::new("cargo");
    command
        .args(["+nightly", "fuzz"])
        .current_dir(workspace_root());
    command
}

/// The files libFuzzer saved in `dir` since `since` (crash-, oom-, timeout-, leak-…): the
/// inputs of this run's failure, not of an earlier one.
fn new_artifacts(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}
