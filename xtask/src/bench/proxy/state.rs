//! What a mode holds in the kernel for N services: BPF map memory for ebpf (split into
//! service and flow state), the printed ruleset's size for the netfilter modes.

use std::{fs, time::Duration};

use anyhow::bail;
use keel_lab::Lab;

/// What [`state_size`] measured: the total, and for ebpf its service and flow parts.
#[derive(Default)]
pub(super) struct StateSize {
    pub(super) total: u64,
    pub(super) service: u64,
    pub(super) flow: u64,
}

/// See `Cell::state_bytes`.
pub(super) fn state_size(
    lab: &Lab,
    mode: &str,
    bpf_dir: &std::path::Path,
) -> anyhow::Result<StateSize> {
    let total = |total| StateSize {
        total,
        ..StateSize::default()
    };
    let node = lab.on_node(None);
    let output = |program: &str, args: &[&str]| -> anyhow::Result<String> {
        let mut command = std::process::Command::new(program);
        command.args(args);
        let (code, lines) =
            keel_lab::Child::spawn(program, command, &node)?.finish(Duration::from_secs(120))?;
        if code != Some(0) {
            bail!("{program} {} failed: {lines:?}", args.join(" "));
        }
        Ok(lines.join("\n"))
    };
    match mode {
        "ebpf" => {
            let mut size = StateSize::default();
            for entry in fs::read_dir(bpf_dir)?.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains("link_") {
                    continue;
                }
                let json = output(
                    "bpftool",
                    &["-j", "map", "show", "pinned", &path.to_string_lossy()],
                )?;
                let info: serde_json::Value = serde_json::from_str(&json)?;
                let bytes = info["bytes_memlock"].as_u64().unwrap_or(0);
                size.total += bytes;
                if keel_common::SERVICE_STATE_MAPS.contains(&name.as_str()) {
                    size.service += bytes;
                } else if keel_common::FLOW_STATE_MAPS.contains(&name.as_str()) {
                    size.flow += bytes;
                }
            }
            Ok(size)
        }
        "iptables" => Ok(total(output("iptables-legacy-save", &[])?.len() as u64)),
        "ipvs" => Ok(total(output("ipvsadm", &["-Ln"])?.len() as u64)),
        _ => Ok(total(
            output("nft", &["list", "table", "ip", "keel"])?.len() as u64,
        )),
    }
}
