//! Source NAT for IPVS's NAT mode. A backend replies to the client's address; when that is
//! a ClusterIP (a local client connecting to a VIP gets the VIP as its source) or another
//! pod on the same bridge, the reply would bypass IPVS. So IPVS connections leave with the
//! node's address, as kube-proxy's IPVS mode does for them (its masquerade mark, set from an
//! ipset of ClusterIPs). keel matches IPVS's own connection state instead (`-m ipvs`): one
//! rule, nothing to keep in step with the table.

use std::process::Command;

use super::IpvsError;
use crate::iptables::Binaries;

const COMMENT: &str = "keel ipvs masquerade";

fn rule() -> [&'static str; 15] {
    [
        "-m",
        "ipvs",
        "--ipvs",
        "--vdir",
        "ORIGINAL",
        "--vmethod",
        "MASQ",
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "MASQUERADE",
        "-w",
        "5",
    ]
}

fn iptables(binaries: &Binaries, action: &str) -> Result<bool, IpvsError> {
    let output = Command::new(&binaries.iptables)
        .args(["-t", "nat", action, "POSTROUTING"])
        .args(rule())
        .output()
        .map_err(|e| IpvsError::Masquerade(format!("{}: {e}", binaries.iptables)))?;
    Ok(output.status.success())
}

/// Installs the rule unless present, and lets netfilter see IPVS connections
/// (`net.ipv4.vs.conntrack`), without which it cannot NAT them. Also has IPVS drop its own
/// connection entries to a real server that was removed (`net.ipv4.vs.expire_nodest_conn`,
/// as kube-proxy sets it): otherwise a UDP client that keeps its source port stays with the
/// removed backend, whatever conntrack entries the sync deletes.
pub fn ensure(binaries: &Binaries) -> Result<(), IpvsError> {
    for sysctl in ["conntrack", "expire_nodest_conn"] {
        std::fs::write(format!("/proc/sys/net/ipv4/vs/{sysctl}"), "1")
            .map_err(|e| IpvsError::Masquerade(format!("net.ipv4.vs.{sysctl}: {e}")))?;
    }
    if iptables(binaries, "-C")? {
        return Ok(());
    }
    if !iptables(binaries, "-A")? {
        return Err(IpvsError::Masquerade(format!(
            "{} -t nat -A POSTROUTING {} failed (is xt_ipvs available?)",
            binaries.iptables,
            rule().join(" ")
        )));
    }
    Ok(())
}

/// Removes the rule (every copy of it).
pub fn remove(binaries: &Binaries) -> Result<(), IpvsError> {
    while iptables(binaries, "-D")? {}
    Ok(())
}
