//! The official Python client (PyPI `kubernetes`) against keel's API server: the script
//! `tests/python/client_session.py` lists, creates, patches, watches and resumes, and reads a
//! 410 for an expired version. The watch cache is started small so that version 1 has left it.

mod support;

use std::process::Command;

use support::api::{client_tool, ApiServer, Backend};

#[test]
fn python_client_session() {
    let server = ApiServer::start(Backend::Keel, &["--watch-cache-size", "5"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/client_session.py"
    );
    let out = Command::new(client_tool("python"))
        .arg(script)
        .arg(&server.kubeconfig)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "the Python client session failed:\n{stdout}\n{}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.output().join("\n")
    );
}
