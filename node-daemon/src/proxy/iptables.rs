//! The iptables proxy mode, with kube-proxy's rule layout:
//!
//! ```text
//! nat PREROUTING, OUTPUT → KEEL-SERVICES ─ -d VIP -p P --dport N → KEEL-SVC-<hash>
//!                                      └─ dst-type LOCAL → KEEL-NODEPORTS ─ --dport NP → KEEL-SVC-<hash>
//! KEEL-SVC-<hash>: (affinity: -m recent --rcheck → its KEEL-SEP) then
//!                  -m statistic --mode random --probability 1/(n-i) → KEEL-SEP-<hash>
//! KEEL-SEP-<hash>: -s EP → KEEL-MARK-MASQ (hairpin); (affinity: -m recent --set); DNAT EP:PORT
//! nat POSTROUTING → KEEL-POSTROUTING: marked packets are masqueraded
//! filter INPUT, FORWARD, OUTPUT → KEEL-SERVICES: services without endpoints REJECT
//! ```
//!
//! Every sync writes keel's chains whole, in one `iptables-restore --noflush` (atomic per
//! table), and deletes the chains it wrote last time that are gone now. Nothing outside
//! keel's chains is touched but the jump rules, added once.
//!
//! The binary is `iptables-legacy-restore` where present: iptables-nft's `--noflush` restore is
//! quadratic in the number of chains (shared/BENCH-NOTES.md: 340 s at 4k services).

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
};

use thiserror::Error;

use crate::{
    proxy::{hash::suffix, ProxyError, ServiceProxy, SyncStats},
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable},
};

/// The mark that asks KEEL-POSTROUTING to masquerade a packet (kube-proxy's value).
const MASQ_MARK: &str = "0x4000";

/// Jump rules from the built-in chains: (table, chain, target, comment).
const JUMPS: [(&str, &str, &str, &str); 6] = [
    ("nat", "PREROUTING", "KEEL-SERVICES", "keel service portals"),
    ("nat", "OUTPUT", "KEEL-SERVICES", "keel service portals"),
    (
        "nat",
        "POSTROUTING",
        "KEEL-POSTROUTING",
        "keel postrouting rules",
    ),
    (
        "filter",
        "INPUT",
        "KEEL-SERVICES",
        "keel services without endpoints",
    ),
    (
        "filter",
        "FORWARD",
        "KEEL-SERVICES",
        "keel services without endpoints",
    ),
    (
        "filter",
        "OUTPUT",
        "KEEL-SERVICES",
        "keel services without endpoints",
    ),
];

#[derive(Debug, Error)]
pub enum IptablesError {
    #[error("cannot run {binary}: {source} (is iptables installed?)")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("{binary} failed: {stderr}")]
    Failed { binary: String, stderr: String },
}

/// Which iptables to run.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub iptables: String,
    pub restore: String,
}

impl Binaries {
    /// The legacy binaries when installed, else the default ones.
    pub fn detect() -> Self {
        let legacy = Command::new("iptables-legacy")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if legacy {
            Self {
                iptables: "iptables-legacy".into(),
                restore: "iptables-legacy-restore".into(),
            }
        } else {
            Self {
                iptables: "iptables".into(),
                restore: "iptables-restore".into(),
            }
        }
    }
}

pub struct IptablesProxy {
    binaries: Binaries,
    /// keel's chains as of the last successful sync, per table.
    nat_chains: BTreeSet<String>,
    filter_chains: BTreeSet<String>,
    /// The last ruleset written: an identical one is not written again.
    last: Option<String>,
    jumps_ensured: bool,
}

impl IptablesProxy {
    pub fn new(binaries: Binaries) -> Self {
        Self {
            binaries,
            nat_chains: BTreeSet::new(),
            filter_chains: BTreeSet::new(),
            last: None,
            jumps_ensured: false,
        }
    }

    /// Adds the jump rules unless present (`-C` checks, `-I` inserts first in the chain).
    fn ensure_jumps(&self) -> Result<(), IptablesError> {
        for (table, chain, target, comment) in JUMPS {
            let rule = ["-m", "comment", "--comment", comment, "-j", target];
            let check = run(
                &self.binaries.iptables,
                &[&["-w", "-t", table, "-C", chain][..], &rule[..]].concat(),
            );
            if check.is_err() {
                run(
                    &self.binaries.iptables,
                    &[&["-w", "-t", table, "-I", chain][..], &rule[..]].concat(),
                )?;
            }
        }
        Ok(())
    }
}

impl ServiceProxy for IptablesProxy {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        let rules = Rules::build(table);
        let text = rules.render(&self.nat_chains, &self.filter_chains);
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(SyncStats::default());
        }
        restore(&self.binaries.restore, &text).map_err(ProxyError::Iptables)?;
        if !self.jumps_ensured {
            self.ensure_jumps().map_err(ProxyError::Iptables)?;
            self.jumps_ensured = true;
        }
        let removed = self.nat_chains.difference(&rules.nat_chains).count()
            + self.filter_chains.difference(&rules.filter_chains).count();
        self.nat_chains = rules.nat_chains;
        self.filter_chains = rules.filter_chains;
        self.last = Some(text);
        Ok(SyncStats {
            written: rules.rule_count,
            removed,
        })
    }
}

/// Removes keel's jumps and chains from both tables (for `--cleanup`, and when another mode
/// starts). Missing rules and chains are fine.
pub fn cleanup(binaries: &Binaries) -> Result<(), IptablesError> {
    for (table, chain, target, comment) in JUMPS {
        let rule = ["-m", "comment", "--comment", comment, "-j", target];
        while run(
            &binaries.iptables,
            &[&["-w", "-t", table, "-D", chain][..], &rule[..]].concat(),
        )
        .is_ok()
        {}
    }
    for table in ["nat", "filter"] {
        let Ok(listing) = run(&binaries.iptables, &["-w", "-t", table, "-S"]) else {
            continue;
        };
        let chains: Vec<String> = listing
            .lines()
            .filter_map(|l| l.strip_prefix("-N "))
            .filter(|c| c.starts_with("KEEL-"))
            .map(str::to_owned)
            .collect();
        let mut text = format!("*{table}\n");
        for chain in &chains {
            let _ = writeln!(text, ":{chain} - [0:0]");
        }
        for chain in &chains {
            let _ = writeln!(text, "-X {chain}");
        }
        text.push_str("COMMIT\n");
        if !chains.is_empty() {
            restore(&binaries.restore, &text)?;
        }
    }
    Ok(())
}

/// One sync's rules, table by table.
struct Rules {
    nat: String,
    filter: String,
    nat_chains: BTreeSet<String>,
    filter_chains: BTreeSet<String>,
    rule_count: usize,
}

impl Rules {
    fn build(table: &ServiceTable) -> Self {
        let mut rules = Rules {
            nat: String::new(),
            filter: String::new(),
            nat_chains: [
                "KEEL-SERVICES",
                "KEEL-NODEPORTS",
                "KEEL-POSTROUTING",
                "KEEL-MARK-MASQ",
            ]
            .map(String::from)
            .into(),
            filter_chains: BTreeSet::from(["KEEL-SERVICES".to_owned()]),
            rule_count: 0,
        };
        rules.nat_rule(&format!(
            "-A KEEL-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
        ));
        rules.nat_rule(&format!(
            "-A KEEL-POSTROUTING -j MARK --xor-mark {MASQ_MARK}"
        ));
        rules.nat_rule("-A KEEL-POSTROUTING -j MASQUERADE");
        rules.nat_rule(&format!("-A KEEL-MARK-MASQ -j MARK --or-mark {MASQ_MARK}"));
        for (frontend, entry) in &table.services {
            rules.service(frontend, entry);
        }
        // Last, so ClusterIP rules win: anything else addressed to the node may be a NodePort.
        rules.nat_rule("-A KEEL-SERVICES -m addrtype --dst-type LOCAL -j KEEL-NODEPORTS");
        rules
    }

    fn nat_rule(&mut self, rule: &str) {
        self.nat.push_str(rule);
        self.nat.push('\n');
        self.rule_count += 1;
    }

    fn service(&mut self, frontend: &Frontend, entry: &ServicePortEntry) {
        let proto = protocol(frontend.protocol);
        let port = frontend.port;
        let comment = format!("\"{}\"", entry.name);
        let node_port = frontend.vip.is_unspecified();
        if entry.backends.is_empty() {
            // kube-proxy's answer to a service without endpoints: refuse, do not time out.
            let dst = if node_port {
                "-m addrtype --dst-type LOCAL".to_owned()
            } else {
                format!("-d {}/32", frontend.vip)
            };
            let _ = writeln!(
                self.filter,
                "-A KEEL-SERVICES {dst} -p {proto} --dport {port} -m comment --comment {comment} -j REJECT --reject-with icmp-port-unreachable"
            );
            self.rule_count += 1;
            return;
        }
        let svc = format!("KEEL-SVC-{}", suffix(&format!("{}/{frontend}", entry.name)));
        self.nat_chains.insert(svc.clone());
        if node_port {
            self.nat_rule(&format!("-A KEEL-NODEPORTS -p {proto} --dport {port} -m comment --comment {comment} -j {svc}"));
        } else {
            self.nat_rule(&format!(
                "-A KEEL-SERVICES -d {}/32 -p {proto} --dport {port} -m comment --comment {comment} -j {svc}",
                frontend.vip
            ));
        }
        let endpoints: Vec<(String, std::net::SocketAddrV4)> = entry
            .backends
            .iter()
            .map(|b| (format!("KEEL-SEP-{}", suffix(&format!("{svc}/{b}"))), *b))
            .collect();
        if let Some(timeout) = entry.affinity_timeout {
            for (sep, _) in &endpoints {
                self.nat_rule(&format!(
                    "-A {svc} -m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}"
                ));
            }
        }
        let n = endpoints.len();
        for (i, (sep, _)) in endpoints.iter().enumerate() {
            if i + 1 < n {
                let probability = 1.0 / (n - i) as f64;
                self.nat_rule(&format!(
                    "-A {svc} -m statistic --mode random --probability {probability:.10} -j {sep}"
                ));
            } else {
                self.nat_rule(&format!("-A {svc} -j {sep}"));
            }
        }
        for (sep, backend) in &endpoints {
            self.nat_chains.insert(sep.clone());
            self.nat_rule(&format!(
                "-A {sep} -s {}/32 -j KEEL-MARK-MASQ",
                backend.ip()
            ));
            if entry.affinity_timeout.is_some() {
                self.nat_rule(&format!("-A {sep} -m recent --name {sep} --set"));
            }
            self.nat_rule(&format!(
                "-A {sep} -p {proto} -j DNAT --to-destination {backend}"
            ));
        }
    }

    /// The restore input: every current chain declared (which flushes it under `--noflush`),
    /// its rules, then the chains of the last sync that are gone, declared and deleted.
    fn render(&self, old_nat: &BTreeSet<String>, old_filter: &BTreeSet<String>) -> String {
        let mut text = String::new();
        for (table, chains, old, body) in [
            ("nat", &self.nat_chains, old_nat, &self.nat),
            ("filter", &self.filter_chains, old_filter, &self.filter),
        ] {
            let _ = writeln!(text, "*{table}");
            let stale: Vec<&String> = old.difference(chains).collect();
            for chain in chains.iter().chain(stale.iter().copied()) {
                let _ = writeln!(text, ":{chain} - [0:0]");
            }
            text.push_str(body);
            for chain in stale {
                let _ = writeln!(text, "-X {chain}");
            }
            text.push_str("COMMIT\n");
        }
        text
    }
}

fn protocol(protocol: L4Protocol) -> &'static str {
    match protocol {
        L4Protocol::Tcp => "tcp",
        L4Protocol::Udp => "udp",
    }
}

fn run(binary: &str, args: &[&str]) -> Result<String, IptablesError> {
    let output =
        Command::new(binary)
            .args(args)
            .output()
            .map_err(|source| IptablesError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
    if !output.status.success() {
        return Err(IptablesError::Failed {
            binary: format!("{binary} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `RESTORE --noflush` with `text` on stdin: one atomic commit per table.
fn restore(binary: &str, text: &str) -> Result<(), IptablesError> {
    let spawn_error = |source| IptablesError::Spawn {
        binary: binary.to_owned(),
        source,
    };
    let mut child = Command::new(binary)
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        return Err(IptablesError::Failed {
            binary: format!("{binary} --noflush"),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::*;

    fn table(backends: &[u8], affinity: Option<u32>) -> ServiceTable {
        crate::service_table::testing::web(backends, affinity)
    }

    #[test]
    fn probabilities_split_evenly() {
        let rules = Rules::build(&table(&[2, 3, 4], None));
        assert!(
            rules.nat.contains("--probability 0.3333333333"),
            "{}",
            rules.nat
        );
        assert!(
            rules.nat.contains("--probability 0.5000000000"),
            "{}",
            rules.nat
        );
        assert_eq!(rules.nat.matches("-j DNAT --to-destination").count(), 3);
        assert_eq!(
            rules.nat.matches("-j KEEL-MARK-MASQ").count(),
            3,
            "hairpin masquerade per endpoint"
        );
    }

    #[test]
    fn no_endpoints_reject_in_filter_and_affinity_uses_recent() {
        let rules = Rules::build(&table(&[], None));
        assert!(
            rules.filter.contains("-d 10.96.0.10/32 -p tcp --dport 80"),
            "{}",
            rules.filter
        );
        assert!(rules.filter.contains("REJECT"));
        assert!(!rules.nat.contains("KEEL-SVC-"));
        let sticky = Rules::build(&table(&[2], Some(60)));
        assert!(
            sticky.nat.contains("--rcheck --seconds 60 --reap"),
            "{}",
            sticky.nat
        );
        assert!(sticky.nat.contains("--set"));
    }

    #[test]
    fn stale_chains_are_declared_and_deleted() {
        let before = Rules::build(&table(&[2, 3], None));
        let after = Rules::build(&table(&[2], None));
        let text = after.render(&before.nat_chains, &before.filter_chains);
        let gone: Vec<&String> = before.nat_chains.difference(&after.nat_chains).collect();
        assert_eq!(gone.len(), 1);
        assert!(
            text.contains(&format!(":{} - [0:0]", gone[0]))
                && text.contains(&format!("-X {}", gone[0])),
            "{text}"
        );
        assert!(text.ends_with("COMMIT\n"));
        // Chain names fit iptables' 28 characters.
        assert!(before.nat_chains.iter().all(|c| c.len() <= 28));
    }
}
