//! Builds keel's kernel programs (ebpf/) into the object files this crate embeds: one `cargo
//! build` always yields a proxy and a runtime whose programs match their map types.
//!
//! The programs need the nightly toolchain with rust-src and bpf-linker
//! (`cargo xtask setup` installs them); this script only drives that toolchain.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

const TARGET: &str = "bpfel-unknown-none";
const PROGRAM_BINARY: &str = "keel";
const OOM_BINARY: &str = "keel-oom";

fn main() {
    if let Err(message) = build() {
        // A build script reports failure by panicking; say what to do first.
        panic!("building the eBPF programs failed: {message}\nhint: run `cargo xtask setup`");
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest_dir
        .parent()
        .ok_or("keel-bpf has no parent directory")?;
    let ebpf_dir = workspace.join("ebpf");
    for input in [
        "ebpf/src",
        "ebpf/Cargo.toml",
        "ebpf/Cargo.lock",
        "common/src",
        "common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }

    // A target dir of its own: the outer cargo holds the lock on the workspace's.
    let target_dir = out_dir.join("ebpf-target");
    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf_dir)
        // BTF in the object lets aya and bpftool show typed maps.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\x1f-Clink-arg=--btf",
        );
    // The outer (stable) build's compiler settings must not leak into the nightly one.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(key);
    }
    let status = cargo
        .status()
        .map_err(|e| format!("cannot run `rustup run nightly cargo`: {e}"))?;
    if !status.success() {
        return Err(format!("`{cargo:?}` failed with {status}"));
    }
    let release = target_dir.join(TARGET).join("release");
    copy(&release.join(PROGRAM_BINARY), &out_dir.join("keel.bpf.o"))?;
    copy(&release.join(OOM_BINARY), &out_dir.join("keel-oom.bpf.o"))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}
