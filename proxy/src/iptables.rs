//! The iptables proxy mode, with kube-proxy's rule layout:
//!
//! ```text
//! nat PREROUTING, OUTPUT → KEEL-SERVICES ─ -d VIP -p P --dport N → KEEL-SVC-<hash>
//!                                      └─ dst-type LOCAL → KEEL-NODEPORTS ─ --dport NP → KEEL-MARK-MASQ, KEEL-SVC-<hash>
//! KEEL-SVC-<hash>: (affinity: -m recent --rcheck → its KEEL-SEP) then
//!                  -m statistic --mode random --probability 1/(n-i) → KEEL-SEP-<hash>
//! KEEL-SEP-<hash>: -s EP → KEEL-MARK-MASQ (hairpin); (affinity: -m recent --set); DNAT EP:PORT
//! nat POSTROUTING → KEEL-POSTROUTING: marked packets are masqueraded
//! filter INPUT, FORWARD, OUTPUT → KEEL-SERVICES: services without endpoints REJECT
//! ```
//!
//! A sync writes, in one `iptables-restore --noflush` (atomic per table), only the chains
//! whose rules changed since the last sync, and deletes the chains that are gone, as
//! kube-proxy's partial syncs do. The first sync, the one after a failure and one an hour
//! are full: they rewrite every chain and delete any keel chain the kernel holds that is not
//! wanted. Nothing outside keel's chains is touched but the jump rules, checked at every full
//! sync.
//!
//! The binary is `iptables-legacy-restore` where present: iptables-nft's `--noflush` restore is
//! quadratic in the number of chains (shared/BENCH-NOTES.md: 340 s at 4k services).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use keel_host::hash::suffix;
use thiserror::Error;

use crate::{
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable},
    ProxyError, ServiceProxy, SyncStats,
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
    pub save: String,
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
                save: "iptables-legacy-save".into(),
                restore: "iptables-legacy-restore".into(),
            }
        } else {
            Self {
                iptables: "iptables".into(),
                save: "iptables-save".into(),
                restore: "iptables-restore".into(),
            }
        }
    }
}

pub struct IptablesProxy {
    binaries: Binaries,
    /// keel's chains and their rules as of the last successful sync; `None` when the kernel's
    /// state is unknown (at start, after a failure, when a full sync is due).
    written: Option<Ruleset>,
    /// When the kernel was last rewritten whole: partial syncs trust `written`, and a periodic
    /// full sync repairs anything changed behind keel's back (kube-proxy does the same).
    last_full_sync: Option<Instant>,
}

/// How often a sync rewrites every chain even though `written` says nothing changed.
const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

impl IptablesProxy {
    pub fn new(binaries: Binaries) -> Self {
        Self {
            binaries,
            written: None,
            last_full_sync: None,
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

    /// What a full sync starts from: the keel chains that exist in the kernel. Their rules are
    /// not read (a full sync rewrites every wanted chain whatever it holds), only their names,
    /// to delete the unwanted ones.
    fn kernel_chains(&self) -> Result<Ruleset, IptablesError> {
        let mut existing = Ruleset::default();
        for (table, chains) in [("nat", &mut existing.nat), ("filter", &mut existing.filter)] {
            let listing = run(&self.binaries.save, &["-t", table])?;
            for chain in keel_chains(&listing) {
                chains.insert(chain, String::new());
            }
        }
        Ok(existing)
    }

    fn try_sync(&mut self, table: &ServiceTable) -> Result<SyncStats, IptablesError> {
        let desired = Ruleset::build(table);
        let full_due = self
            .last_full_sync
            .is_none_or(|at| at.elapsed() >= FULL_SYNC_PERIOD);
        let (previous, full) = match self.written.take() {
            Some(written) if !full_due => (written, false),
            _ => (self.kernel_chains()?, true),
        };
        let update = desired.update_from(&previous, full);
        if !update.is_empty() {
            restore(&self.binaries.restore, &update.text)?;
        }
        if full {
            // Checked on every full sync, so a flushed built-in chain is repaired within the hour.
            self.ensure_jumps()?;
            self.last_full_sync = Some(Instant::now());
        }
        self.written = Some(desired);
        Ok(SyncStats {
            written: update.rules,
            removed: update.deleted_chains,
        })
    }
}

impl ServiceProxy for IptablesProxy {
    fn name(&self) -> &'static str {
        "iptables"
    }

    /// Writes only the chains whose rules changed since the last sync (kube-proxy's
    /// `MinimizeIPTablesRestore`): one endpoint change rewrites its service's chains, not the
    /// 100,000 rules of 10,000 services. After a failure `written` is gone, so the retry is a
    /// full sync from what the kernel holds.
    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        self.try_sync(table).map_err(ProxyError::Iptables)
    }
}

/// The names of keel's chains in an `iptables-save` listing (`:KEEL-SVC-… - [0:0]` lines).
fn keel_chains(listing: &str) -> impl Iterator<Item = String> + '_ {
    listing.lines().filter_map(|line| {
        let name = line.strip_prefix(':')?.split_whitespace().next()?;
        name.starts_with("KEEL-").then(|| name.to_owned())
    })
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
        let Ok(listing) = run(&binaries.save, &["-t", table]) else {
            continue;
        };
        let chains: Vec<String> = keel_chains(&listing).collect();
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

/// keel's chains in both tables, each with its rules in order (`-A CHAIN …` lines).
#[derive(Debug, Default)]
struct Ruleset {
    nat: BTreeMap<String, String>,
    filter: BTreeMap<String, String>,
}

/// The restore input that turns one ruleset into another.
#[derive(Debug)]
struct Update {
    text: String,
    /// Rules written.
    rules: usize,
    deleted_chains: usize,
}

impl Update {
    fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl Ruleset {
    fn build(table: &ServiceTable) -> Self {
        let mut rules = Ruleset::default();
        for chain in ["KEEL-SERVICES", "KEEL-NODEPORTS"] {
            rules.nat.insert(chain.to_owned(), String::new());
        }
        rules
            .filter
            .insert("KEEL-SERVICES".to_owned(), String::new());
        rules.nat_rule(
            "KEEL-POSTROUTING",
            &format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        );
        rules.nat_rule(
            "KEEL-POSTROUTING",
            &format!("-j MARK --xor-mark {MASQ_MARK}"),
        );
        rules.nat_rule("KEEL-POSTROUTING", "-j MASQUERADE");
        rules.nat_rule("KEEL-MARK-MASQ", &format!("-j MARK --or-mark {MASQ_MARK}"));
        for (frontend, entry) in &table.services {
            rules.service(frontend, entry);
        }
        // Last, so ClusterIP rules win: anything else addressed to the node may be a NodePort.
        rules.nat_rule(
            "KEEL-SERVICES",
            "-m addrtype --dst-type LOCAL -j KEEL-NODEPORTS",
        );
        rules
    }

    fn nat_rule(&mut self, chain: &str, rule: &str) {
        append(&mut self.nat, chain, rule);
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
            append(
                &mut self.filter,
                "KEEL-SERVICES",
                &format!("{dst} -p {proto} --dport {port} -m comment --comment {comment} -j REJECT --reject-with icmp-port-unreachable"),
            );
            return;
        }
        let svc = format!("KEEL-SVC-{}", suffix(&format!("{}/{frontend}", entry.name)));
        if node_port {
            // Masqueraded, as kube-proxy does for externalTrafficPolicy Cluster: the endpoint
            // may be on another node, and its reply must come back through this one to be
            // translated, not go straight to a client that never spoke to it.
            self.nat_rule(
                "KEEL-NODEPORTS",
                &format!(
                    "-p {proto} --dport {port} -m comment --comment {comment} -j KEEL-MARK-MASQ"
                ),
            );
            self.nat_rule(
                "KEEL-NODEPORTS",
                &format!("-p {proto} --dport {port} -m comment --comment {comment} -j {svc}"),
            );
        } else {
            self.nat_rule(
                "KEEL-SERVICES",
                &format!(
                    "-d {}/32 -p {proto} --dport {port} -m comment --comment {comment} -j {svc}",
                    frontend.vip
                ),
            );
        }
        let endpoints: Vec<(String, std::net::SocketAddrV4)> = entry
            .backends
            .iter()
            .map(|b| (format!("KEEL-SEP-{}", suffix(&format!("{svc}/{b}"))), *b))
            .collect();
        if let Some(timeout) = entry.affinity_timeout {
            for (sep, _) in &endpoints {
                self.nat_rule(
                    &svc,
                    &format!("-m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}"),
                );
            }
        }
        let n = endpoints.len();
        for (i, (sep, _)) in endpoints.iter().enumerate() {
            if i + 1 < n {
                let probability = 1.0 / (n - i) as f64;
                self.nat_rule(
                    &svc,
                    &format!("-m statistic --mode random --probability {probability:.10} -j {sep}"),
                );
            } else {
                self.nat_rule(&svc, &format!("-j {sep}"));
            }
        }
        for (sep, backend) in &endpoints {
            self.nat_rule(sep, &format!("-s {}/32 -j KEEL-MARK-MASQ", backend.ip()));
            if entry.affinity_timeout.is_some() {
                self.nat_rule(sep, &format!("-m recent --name {sep} --set"));
            }
            self.nat_rule(
                sep,
                &format!("-p {proto} -j DNAT --to-destination {backend}"),
            );
        }
    }

    /// The restore input from `previous` to `self`. Chains whose rules changed (all of them
    /// when `full`) are declared, which flushes them under `--noflush`, and refilled; chains of
    /// `previous` that are gone are declared and deleted; unchanged chains are not mentioned.
    /// References stay valid: a chain that jumps to a deleted chain has changed too.
    fn update_from(&self, previous: &Ruleset, full: bool) -> Update {
        let mut update = Update {
            text: String::new(),
            rules: 0,
            deleted_chains: 0,
        };
        for (table, chains, old) in [
            ("nat", &self.nat, &previous.nat),
            ("filter", &self.filter, &previous.filter),
        ] {
            let changed: Vec<(&String, &String)> = chains
                .iter()
                .filter(|(chain, body)| full || old.get(*chain) != Some(body))
                .collect();
            let stale: Vec<&String> = old.keys().filter(|c| !chains.contains_key(*c)).collect();
            if changed.is_empty() && stale.is_empty() {
                continue;
            }
            let _ = writeln!(update.text, "*{table}");
            for chain in changed.iter().map(|(c, _)| *c).chain(stale.iter().copied()) {
                let _ = writeln!(update.text, ":{chain} - [0:0]");
            }
            for (_, body) in &changed {
                update.text.push_str(body);
                update.rules += body.lines().count();
            }
            for chain in &stale {
                let _ = writeln!(update.text, "-X {chain}");
            }
            update.deleted_chains += stale.len();
            update.text.push_str("COMMIT\n");
        }
        update
    }
}

/// Appends `-A chain rule` to the chain's body, creating the chain.
fn append(chains: &mut BTreeMap<String, String>, chain: &str, rule: &str) {
    let body = chains.entry(chain.to_owned()).or_default();
    let _ = writeln!(body, "-A {chain} {rule}");
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
pub(crate) fn restore(binary: &str, text: &str) -> Result<(), IptablesError> {
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

    fn nat_text(rules: &Ruleset) -> String {
        rules.nat.values().cloned().collect()
    }

    #[test]
    fn probabilities_split_evenly() {
        let nat = nat_text(&Ruleset::build(&table(&[2, 3, 4], None)));
        assert!(nat.contains("--probability 0.3333333333"), "{nat}");
        assert!(nat.contains("--probability 0.5000000000"), "{nat}");
        assert_eq!(nat.matches("-j DNAT --to-destination").count(), 3);
        assert_eq!(
            nat.matches("-j KEEL-MARK-MASQ").count(),
            3,
            "hairpin masquerade per endpoint"
        );
    }

    #[test]
    fn a_node_port_is_masqueraded_before_its_service() {
        let mut services = table(&[2, 3], None);
        let entry = services
            .services
            .values()
            .next()
            .cloned()
            .expect("one service");
        services.services.insert(
            Frontend {
                vip: std::net::Ipv4Addr::UNSPECIFIED,
                port: 30080,
                protocol: L4Protocol::Tcp,
            },
            entry,
        );
        let rules = Ruleset::build(&services);
        let node_ports = &rules.nat["KEEL-NODEPORTS"];
        let mark = node_ports
            .find("--dport 30080 -m comment --comment \"default/web:http\" -j KEEL-MARK-MASQ");
        let jump = node_ports.find("-j KEEL-SVC-");
        assert!(
            matches!((mark, jump), (Some(m), Some(j)) if m < j),
            "mark first, then the service: {node_ports}"
        );
    }

    #[test]
    fn no_endpoints_reject_in_filter_and_affinity_uses_recent() {
        let rules = Ruleset::build(&table(&[], None));
        let filter = &rules.filter["KEEL-SERVICES"];
        assert!(
            filter.contains("-d 10.96.0.10/32 -p tcp --dport 80"),
            "{filter}"
        );
        assert!(filter.contains("REJECT"));
        assert!(!nat_text(&rules).contains("KEEL-SVC-"));
        let sticky = nat_text(&Ruleset::build(&table(&[2], Some(60))));
        assert!(sticky.contains("--rcheck --seconds 60 --reap"), "{sticky}");
        assert!(sticky.contains("--set"));
    }

    #[test]
    fn an_endpoint_change_writes_only_its_service_chains() {
        let before = Ruleset::build(&table(&[2, 3], None));
        let after = Ruleset::build(&table(&[2], None));
        let update = after.update_from(&before, false);
        let gone: Vec<&String> = before
            .nat
            .keys()
            .filter(|c| !after.nat.contains_key(*c))
            .collect();
        assert_eq!(gone.len(), 1, "the removed endpoint's chain");
        assert!(
            update.text.contains(&format!(":{} - [0:0]", gone[0]))
                && update.text.contains(&format!("-X {}", gone[0])),
            "{}",
            update.text
        );
        assert_eq!(update.deleted_chains, 1);
        // The service chain changed (one jump fewer); KEEL-SERVICES and the kept endpoint's
        // chain did not, so they are not mentioned, and the filter table is not touched.
        assert!(update.text.contains(":KEEL-SVC-"), "{}", update.text);
        assert!(!update.text.contains(":KEEL-SERVICES"), "{}", update.text);
        assert!(!update.text.contains("*filter"), "{}", update.text);
        assert_eq!(update.text.matches(":KEEL-").count(), 2, "{}", update.text);
        assert!(update.text.ends_with("COMMIT\n"));
        // Chain names fit iptables' 28 characters.
        assert!(!before.nat.is_empty());
        assert!(before.nat.keys().all(|c| c.len() <= 28));
    }

    #[test]
    fn an_unchanged_table_writes_nothing_and_a_full_sync_everything() {
        let rules = Ruleset::build(&table(&[2, 3], Some(60)));
        let again = Ruleset::build(&table(&[2, 3], Some(60)));
        assert!(again.update_from(&rules, false).is_empty());
        let full = again.update_from(&rules, true);
        let total: usize = again
            .nat
            .values()
            .chain(again.filter.values())
            .map(|b| b.lines().count())
            .sum();
        assert_eq!(full.rules, total);
        assert!(full.text.contains("*filter") && full.text.contains(":KEEL-SERVICES"));
    }

    #[test]
    fn a_full_sync_deletes_keel_chains_the_kernel_holds_and_only_those() {
        let listing = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:KEEL-SEP-OLD - [0:0]\n:KUBE-SERVICES - [0:0]\n:KEEL-SERVICES - [0:0]\n-A PREROUTING -j KEEL-SERVICES\nCOMMIT\n";
        let mut kernel = Ruleset::default();
        for chain in keel_chains(listing) {
            kernel.nat.insert(chain, String::new());
        }
        assert_eq!(kernel.nat.len(), 2, "{kernel:?}");
        let update = Ruleset::build(&table(&[2], None)).update_from(&kernel, true);
        assert!(update.text.contains("-X KEEL-SEP-OLD"), "{}", update.text);
        assert!(!update.text.contains("KUBE-"), "{}", update.text);
        assert!(!update.text.contains("-X KEEL-SERVICES"), "{}", update.text);
        assert_eq!(update.deleted_chains, 1);
    }
}
