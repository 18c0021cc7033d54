//! Named network namespaces (`/run/netns/NAME`), created with iproute2 so that an operator
//! can inspect a lab with the same `ip netns` they would use on any host.

use std::{
    fs::File,
    path::PathBuf,
    process::{Command, Output},
};

use thiserror::Error;

use crate::ledger::{link_dir, netns_path, Ledger, Resource};

#[derive(Debug, Error)]
pub enum CommandError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output, CommandError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(CommandError::Failed {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<Output, CommandError> {
    run("ip", args)
}

/// A network namespace that exists for as long as this value does.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Written into this process's ledger (see [`crate::ledger`]).
    recorded: bool,
}

impl Netns {
    /// Creates the namespace with its loopback up. A stale namespace of the same name (left by
    /// a killed run) is replaced.
    pub fn create(name: &str) -> Result<Self, CommandError> {
        let _ = ip(&["netns", "del", name]);
        let ledger = Ledger::host();
        let hold = ledger.hold();
        ip(&["netns", "add", name])?;
        let recorded = ledger.record(Resource::netns(name));
        drop(hold);
        let netns = Self {
            name: name.to_owned(),
            recorded,
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The guard of a namespace that exists already (one a dead run left), to delete it.
    #[cfg(test)]
    pub(crate) fn adopt(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            recorded: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// A handle to the namespace, for `setns`.
    pub fn open(&self) -> std::io::Result<File> {
        File::open(self.path())
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<Output, CommandError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets a sysctl inside the namespace (`net.*` sysctls are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), CommandError> {
        let path = self.path();
        let net = format!("--net={}", path.display());
        let assignment = format!("{key}={value}");
        run(
            "nsenter",
            &[net.as_str(), "sysctl", "-q", "-w", assignment.as_str()],
        )
        .map(drop)
    }
}

/// Deletes the namespace `name`; `true` once it is gone (deleted already included).
pub(crate) fn delete(name: &str) -> bool {
    if !netns_path(name).exists() {
        return true; // by the code under test
    }
    match ip(&["netns", "del", name]) {
        Ok(_) => true,
        Err(err) => {
            eprintln!("keel-lab: cannot delete netns {name}: {err}");
            false
        }
    }
}

/// Deletes the host link `name`; `true` once it is gone (deleted already included).
pub(crate) fn delete_link(name: &str) -> bool {
    if !link_dir(name).exists() {
        return true;
    }
    match ip(&["link", "del", name]) {
        Ok(_) => true,
        Err(err) => {
            eprintln!("keel-lab: cannot delete link {name}: {err}");
            false
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if delete(&self.name) && self.recorded {
            Ledger::host().released();
        }
    }
}
