//! Source NAT for IPVS's NAT mode, only where a reply would otherwise miss the node, so that
//! a pod reached through a ClusterIP sees its client's address (issue 20), as under
//! kube-proxy's IPVS mode and keel's iptables mode.
//!
//! nat POSTROUTING sends IPVS's own connections (`-m ipvs --vdir ORIGINAL --vmethod MASQ`,
//! IPVS's connection state, so nothing there follows the table) to `KEEL-IPVS-MASQ`, which
//! masquerades:
//!
//! - local clients (`--src-type LOCAL`): a process on the node dialling a ClusterIP leaves
//!   with the ClusterIP itself as its source (it is an address of `keel-svc0`); a backend's
//!   reply to it would be addressed to an address every node holds (kube-proxy masquerades
//!   these too);
//! - NodePorts (the virtual address is outside the service CIDR: NodePort services sit on
//!   the node addresses): the backend may be elsewhere, and its reply must come back through
//!   this node to be translated (externalTrafficPolicy Cluster; keel's iptables mode does
//!   the same);
//! - hairpin: a pod reaching itself through its service would receive a packet whose source
//!   is its own address, which it drops as martian. One `-s EP -d EP` rule per backend
//!   address (iptables cannot compare source and destination; kube-proxy keeps an ipset,
//!   KUBE-LOOP-BACK, for the same per-endpoint list).
//!
//! Everything else keeps its source: a pod's connection to a pod on the same bridge is
//! un-NATed on the way back because bridged replies pass netfilter (br_netfilter, which the
//! daemon enables), and IPVS sees them at its FORWARD hook. There is no `--cluster-cidr` /
//! `--masquerade-all` in keel (the iptables mode has neither), so off-cluster clients of a
//! ClusterIP routed to the node are not masqueraded either.
//!
//! The chain is written whole by one `iptables-restore --noflush` (atomic) whenever the set of
//! backend addresses changes.

use std::{collections::BTreeSet, net::Ipv4Addr, process::Command};

use super::IpvsError;
use crate::{iptables::Binaries, tracker::Ipv4Cidr};

const COMMENT: &str = "keel ipvs masquerade";
pub const CHAIN: &str = "KEEL-IPVS-MASQ";

/// What selects IPVS NAT connections, then `target`.
fn jump(target: &str) -> Vec<&str> {
    vec![
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
        target,
        "-w",
        "5",
    ]
}

fn iptables(binaries: &Binaries, args: &[&str]) -> Result<bool, IpvsError> {
    let output = Command::new(&binaries.iptables)
        .args(args)
        .output()
        .map_err(|e| IpvsError::Masquerade(format!("{}: {e}", binaries.iptables)))?;
    Ok(output.status.success())
}

fn postrouting(binaries: &Binaries, action: &str, target: &str) -> Result<bool, IpvsError> {
    let mut args = vec!["-t", "nat", action, "POSTROUTING"];
    args.extend(jump(target));
    iptables(binaries, &args)
}

/// The rules of [`CHAIN`] (as `iptables-restore` lines).
pub fn chain_rules(service_cidr: Ipv4Cidr, backends: &BTreeSet<Ipv4Addr>) -> Vec<String> {
    let mut rules = vec![
        format!("-A {CHAIN} -m addrtype --src-type LOCAL -j MASQUERADE"),
        format!("-A {CHAIN} -m ipvs ! --vaddr {service_cidr} -j MASQUERADE"),
    ];
    rules.extend(
        backends
            .iter()
            .map(|ip| format!("-A {CHAIN} -s {ip}/32 -d {ip}/32 -j MASQUERADE")),
    );
    rules
}

/// The `iptables-restore --noflush` input that replaces the chain's rules (declaring a chain
/// flushes it).
pub fn restore_input(service_cidr: Ipv4Cidr, backends: &BTreeSet<Ipv4Addr>) -> String {
    let mut text = format!("*nat\n:{CHAIN} - [0:0]\n");
    for rule in chain_rules(service_cidr, backends) {
        text.push_str(&rule);
        text.push('\n');
    }
    text.push_str("COMMIT\n");
    text
}

/// Lets netfilter see IPVS connections (`net.ipv4.vs.conntrack`), without which it cannot NAT
/// them, and has IPVS drop its own connection entries to a real server that was removed
/// (`net.ipv4.vs.expire_nodest_conn`, as kube-proxy sets it): otherwise a UDP client that
/// keeps its source port stays with the removed backend, whatever conntrack entries the sync
/// deletes.
pub fn ensure_sysctls() -> Result<(), IpvsError> {
    for sysctl in ["conntrack", "expire_nodest_conn"] {
        std::fs::write(format!("/proc/sys/net/ipv4/vs/{sysctl}"), "1")
            .map_err(|e| IpvsError::Masquerade(format!("net.ipv4.vs.{sysctl}: {e}")))?;
    }
    Ok(())
}

/// Writes the chain for `backends`, then the jump to it unless present. Also removes the
/// rule of earlier versions that masqueraded every IPVS connection.
pub fn write(
    binaries: &Binaries,
    service_cidr: Ipv4Cidr,
    backends: &BTreeSet<Ipv4Addr>,
) -> Result<(), IpvsError> {
    crate::iptables::restore(&binaries.restore, &restore_input(service_cidr, backends))
        .map_err(|e| IpvsError::Masquerade(e.to_string()))?;
    while postrouting(binaries, "-D", "MASQUERADE")? {}
    if postrouting(binaries, "-C", CHAIN)? {
        return Ok(());
    }
    if !postrouting(binaries, "-A", CHAIN)? {
        return Err(IpvsError::Masquerade(format!(
            "{} -t nat -A POSTROUTING {} failed (is xt_ipvs available?)",
            binaries.iptables,
            jump(CHAIN).join(" ")
        )));
    }
    Ok(())
}

/// Removes the jump (every copy), the chain, and the rule of earlier versions.
pub fn remove(binaries: &Binaries) -> Result<(), IpvsError> {
    while postrouting(binaries, "-D", CHAIN)? {}
    while postrouting(binaries, "-D", "MASQUERADE")? {}
    // Absent chains make these fail: nothing to remove.
    iptables(binaries, &["-w", "5", "-t", "nat", "-F", CHAIN])?;
    iptables(binaries, &["-w", "5", "-t", "nat", "-X", CHAIN])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr() -> Ipv4Cidr {
        "10.96.0.0/12".parse().expect("valid CIDR")
    }

    #[test]
    fn masquerades_local_clients_node_ports_and_hairpin_only() {
        let backends: BTreeSet<Ipv4Addr> =
            [Ipv4Addr::new(10, 244, 0, 3), Ipv4Addr::new(10, 244, 0, 2)]
                .into_iter()
                .collect();
        assert_eq!(
            chain_rules(cidr(), &backends),
            [
                "-A KEEL-IPVS-MASQ -m addrtype --src-type LOCAL -j MASQUERADE",
                "-A KEEL-IPVS-MASQ -m ipvs ! --vaddr 10.96.0.0/12 -j MASQUERADE",
                "-A KEEL-IPVS-MASQ -s 10.244.0.2/32 -d 10.244.0.2/32 -j MASQUERADE",
                "-A KEEL-IPVS-MASQ -s 10.244.0.3/32 -d 10.244.0.3/32 -j MASQUERADE",
            ]
        );
        // No rule without a condition: a pod client keeps its address.
        assert!(chain_rules(cidr(), &backends)
            .iter()
            .all(|r| r != "-A KEEL-IPVS-MASQ -j MASQUERADE"));
    }

    #[test]
    fn restore_input_redeclares_the_chain_in_one_commit() {
        let text = restore_input(cidr(), &BTreeSet::new());
        assert_eq!(
            text,
            "*nat\n:KEEL-IPVS-MASQ - [0:0]\n\
             -A KEEL-IPVS-MASQ -m addrtype --src-type LOCAL -j MASQUERADE\n\
             -A KEEL-IPVS-MASQ -m ipvs ! --vaddr 10.96.0.0/12 -j MASQUERADE\n\
             COMMIT\n"
        );
    }

    #[test]
    fn the_jump_selects_ipvs_nat_connections() {
        assert_eq!(
            jump(CHAIN).join(" "),
            "-m ipvs --ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment keel ipvs masquerade -j KEEL-IPVS-MASQ -w 5"
        );
    }
}
