//! Builds the hostile program the security tests run inside containers (`attack/attack.c`),
//! statically, so that it runs in the test images whatever libc they lack.

use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=attack/attack.c");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("attack");
    let status = Command::new(env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&out)
        .arg("attack/attack.c")
        .status()
        .expect("a C compiler (gcc) builds the tests' attack program");
    assert!(status.success(), "building attack/attack.c failed");
}
