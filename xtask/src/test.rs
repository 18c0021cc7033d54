//! `cargo xtask test`: what CI runs. Setup (a no-op when all is present), build, format, lint
//! and rustdoc checks, then every test — unit tests and the root-only end-to-end tests alike — and
//! the integration tests once more in a Debian kernel under qemu (`--no-vm` skips that).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context};

use crate::{build, cargo, is_root, leftovers, run_step, setup, summary::FailureReports};

/// Where the tests record what they skipped (`keel_tests::skip`), one line each.
pub const SKIPPED_FILE_ENV: &str = "KEEL_SKIPPED_FILE";

/// How long a process the tests started may take to go once `cargo test` has returned.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub fn run(filter: Option<&str>, vm: bool) -> anyhow::Result<()> {
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
    // The docs are read with private items (these crates are programs, not libraries): every
    // intra-doc link resolves and no comment's `<word>` is taken for an HTML tag.
    let mut doc = cargo();
    doc.args([
        "doc",
        "--workspace",
        "--no-deps",
        "--document-private-items",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    run_step(doc)?;

    crate::dead_runs::sweep();
    let skipped_file = tempfile::NamedTempFile::new().context("a file for skipped tests")?;
    let run_tag = leftovers::new_tag();
    let mut test = cargo();
    // Every test binary runs even after one fails: the summary then counts them all.
    test.args(["test", "--workspace", "--no-fail-fast"])
        .env("KEEL_BIN_DIR", &bin_dir)
        .env(SKIPPED_FILE_ENV, skipped_file.path())
        .env(leftovers::RUN_TAG_ENV, &run_tag);
    if let Some(filter) = filter {
        test.arg(filter);
    }
    let (mut passed, mut failed, failures) = run_counting(test)?;
    // A process the tests left running breaks the rule that a run leaves the host as it found
    // it: it is killed, named, and fails the run.
    let left = leftovers::sweep(&run_tag, LEFTOVER_GRACE);
    if !left.is_empty() {
        println!("the tests left {} process(es) running; killed:", left.len());
        for process in &left {
            println!("  {process}");
        }
        failed += 1;
    }
    // Every test process is gone now: what their ledgers still name, a test's guard missed.
    let missed = crate::dead_runs::sweep();
    if missed > 0 {
        println!("the tests left {missed} namespace(s), cgroup(s), link(s) or pin(s) behind (removed above)");
        failed += 1;
    }
    // A skipped test returned Ok and was counted as passed: move it.
    let skipped_lines = std::fs::read_to_string(skipped_file.path()).unwrap_or_default();
    let mut skipped: Vec<String> = skipped_lines.lines().map(str::to_owned).collect();
    passed = passed.saturating_sub(skipped.len() as u64);

    if filter.is_none() {
        // The demo is part of the product: prove `cargo xtask run` works, then tear it down.
        crate::run::smoke(&bin_dir)?;
        passed += 1;
    }
    if vm && filter.is_none() && failed == 0 {
        // The same integration tests on a second kernel, a Debian one with IPVS.
        let result = crate::vm::run_all()?;
        println!(
            "tests in the Debian kernel: {} passed, {} failed, {} skipped",
            result.passed,
            result.failed,
            result.skipped.len()
        );
        passed += result.passed;
        skipped.extend(
            result
                .skipped
                .iter()
                .map(|s| format!("(Debian kernel) {s}")),
        );
    }
    if filter.is_none() {
        // The API server's parsers against inputs nobody wrote a test for: each target is one
        // test, passed when it finds nothing in its time.
        for outcome in crate::fuzz::run_all(20)? {
            if outcome.failure.is_some() {
                failed += 1;
            } else {
                passed += 1;
            }
        }
    }
    failures.print("host");
    for line in &skipped {
        println!("skipped: {line}");
    }
    // One closing line for the whole run: cargo's own last line is that of its last test
    // binary, often a crate's empty doc-tests.
    println!(
        "tests: {passed} passed, {failed} failed, {} skipped",
        skipped.len()
    );
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines; returns
/// the counts and what the failed binaries printed about their failures.
fn run_counting(mut command: Command) -> anyhow::Result<(u64, u64, FailureReports)> {
    println!("$ {}", format!("{command:?}").replace('"', ""));
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let (mut passed, mut failed) = (0, 0);
    let mut failures = FailureReports::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        failures.feed(&line);
        if let Some(result) = line.strip_prefix("test result: ") {
            passed += crate::summary::count_before(result, " passed");
            failed += crate::summary::count_before(result, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed ({status})");
    }
    Ok((passed, failed, failures))
}
