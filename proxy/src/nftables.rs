//! The nftables proxy mode, shaped like kube-proxy's nftables mode: one table of keel's own
//! (`ip keel`), a verdict map keyed by `daddr . protocol . port` so that finding a service is
//! one lookup whatever their number, one chain per service port and per endpoint.
//!
//! ```text
//! nat-prerouting / nat-output ─► services: ip daddr . l4proto . th dport vmap @service-ips
//!                                          fib daddr type local → l4proto . th dport vmap @service-nodeports
//! ext-<hash> (a NodePort): mark for masquerade, goto svc-<hash>
//! svc-<hash>: (affinity: ip saddr @sep-<hash>-affinity → goto sep-<hash>) numgen random mod n vmap {…}
//! sep-<hash>: ip saddr EP → mark for masquerade; (affinity: update @…); dnat to EP:PORT
//! nat-postrouting: marked → masquerade        filter-*: @no-endpoints → reject
//! ```
//!
//! The first sync (and any sync after a failure) replaces the table in one `nft -f`
//! transaction. Later syncs write only the difference, as kube-proxy does: the map elements
//! that changed, the chains of the services that changed, and the removal of what is gone —
//! still one transaction, so a change is atomic and costs what changed, not what exists.

use std::{
    fmt::Write as _,
    io::Write as _,
    net::SocketAddrV4,
    process::{Command, Stdio},
};

use keel_host::hash::suffix;
use thiserror::Error;

use crate::{
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable},
    ProxyError, ServiceProxy, SyncStats,
};

/// keel's table.
pub const TABLE: &str = "keel";
const MASQ_MARK: &str = "0x4000";

#[derive(Debug, Error)]
pub enum NftError {
    #[error("cannot run nft: {0} (is nftables installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("nft rejected keel's ruleset: {0}")]
    Failed(String),
}

#[derive(Default)]
pub struct NftablesProxy {
    /// What the kernel holds, as of the last successful sync; `None`: unknown, replace all.
    current: Option<ServiceTable>,
}

impl ServiceProxy for NftablesProxy {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        let current = self.current.take();
        // On failure `current` stays None: the kernel's state is unknown, and the next attempt
        // replaces everything.
        let stats = match &current {
            Some(current) if current == table => {
                self.current = Some(table.clone());
                return Ok(SyncStats::default());
            }
            Some(current) => {
                let (text, stats) = diff(current, table);
                apply(&text).map_err(ProxyError::Nft)?;
                stats
            }
            None if table_exists() => {
                let (text, stats) = full(table);
                apply(&text).map_err(ProxyError::Nft)?;
                stats
            }
            None => first_load(table).map_err(ProxyError::Nft)?,
        };
        self.current = Some(table.clone());
        Ok(stats)
    }
}

/// Services per transaction of a first load. Measured with nft 1.0.6 on this kernel: 10,000
/// services × 10 endpoints in one transaction take 175 s, nearly all of it in the kernel and
/// growing faster than linearly with the transaction; in transactions of 1,000 they take 24 s
/// (of 250, 30 s: every nft call re-reads the table first).
const FIRST_LOAD_CHUNK: usize = 1_000;

/// Fills a table that does not exist yet: the skeleton, then the services in chunks. Not
/// atomic, which is fine with nothing there before; a restarted daemon finds the table and
/// replaces it atomically instead.
fn first_load(table: &ServiceTable) -> Result<SyncStats, NftError> {
    let (skeleton, mut stats) = full(&ServiceTable::default());
    apply(&skeleton)?;
    let mut loaded = ServiceTable::default();
    let entries: Vec<(&Frontend, &ServicePortEntry)> = table.services.iter().collect();
    for chunk in entries.chunks(FIRST_LOAD_CHUNK) {
        let mut next = loaded.clone();
        next.services
            .extend(chunk.iter().map(|(f, e)| (**f, (*e).clone())));
        let (text, chunk_stats) = diff(&loaded, &next);
        apply(&text)?;
        stats.written += chunk_stats.written;
        loaded = next;
    }
    Ok(stats)
}

/// Whether keel's table exists (from a previous daemon, or a failed sync).
fn table_exists() -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Deletes keel's table, if any.
pub fn cleanup() -> Result<(), NftError> {
    // Creating it first makes the delete succeed whether or not it existed.
    apply(&format!("table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

/// What one service port becomes in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Plan {
    /// The map or set it is an element of, and the element.
    container: &'static str,
    element: String,
    /// The key alone, to delete the element.
    key: String,
    /// `(name, body)` of its chains: the service chain first, then one per endpoint.
    chains: Vec<(String, String)>,
    /// `(name, declaration body)` of its affinity sets.
    sets: Vec<(String, String)>,
}

impl Plan {
    fn new(frontend: &Frontend, entry: &ServicePortEntry) -> Self {
        let proto = protocol(frontend.protocol);
        let node_port = frontend.vip.is_unspecified();
        let key = if node_port {
            format!("{proto} . {}", frontend.port)
        } else {
            format!("{} . {proto} . {}", frontend.vip, frontend.port)
        };
        if entry.backends.is_empty() {
            let container = if node_port {
                "no-endpoint-nodeports"
            } else {
                "no-endpoint-services"
            };
            return Plan {
                container,
                element: key.clone(),
                key,
                chains: Vec::new(),
                sets: Vec::new(),
            };
        }
        let svc = format!("svc-{}", suffix(&format!("{}/{frontend}", entry.name)));
        let seps: Vec<(String, &SocketAddrV4)> = entry
            .backends
            .iter()
            .map(|b| (format!("sep-{}", suffix(&format!("{svc}/{b}"))), b))
            .collect();
        let mut sets = Vec::new();
        let mut svc_body = String::new();
        if let Some(timeout) = entry.affinity_timeout {
            for (sep, _) in &seps {
                sets.push((
                    format!("{sep}-affinity"),
                    format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
                ));
                let _ = writeln!(svc_body, "    ip saddr @{sep}-affinity goto {sep}");
            }
        }
        let targets: Vec<String> = seps
            .iter()
            .enumerate()
            .map(|(i, (sep, _))| format!("{i} : goto {sep}"))
            .collect();
        let _ = writeln!(
            svc_body,
            "    numgen random mod {} vmap {{ {} }}",
            seps.len(),
            targets.join(", ")
        );
        let mut chains = vec![(svc.clone(), svc_body)];
        for (sep, backend) in &seps {
            let mut body = format!(
                "    ip saddr {} meta mark set meta mark | {MASQ_MARK}\n",
                backend.ip()
            );
            if entry.affinity_timeout.is_some() {
                let _ = writeln!(body, "    update @{sep}-affinity {{ ip saddr }}");
            }
            let _ = writeln!(body, "    meta l4proto {proto} dnat to {backend}");
            chains.push((sep.clone(), body));
        }
        // A NodePort's packets are marked for masquerade first, as kube-proxy's external
        // chains do for externalTrafficPolicy Cluster: the endpoint may be on another node,
        // and its reply must come back through this one to be translated.
        let (container, target) = if node_port {
            let ext = format!("ext-{}", suffix(&format!("{}/{frontend}", entry.name)));
            chains.push((
                ext.clone(),
                format!("    meta mark set meta mark | {MASQ_MARK}\n    goto {svc}\n"),
            ));
            ("service-nodeports", ext)
        } else {
            ("service-ips", svc.clone())
        };
        Plan {
            container,
            element: format!("{key} : goto {target}"),
            key,
            chains,
            sets,
        }
    }

    /// Rules and elements, for the stats.
    fn size(&self) -> usize {
        1 + self
            .chains
            .iter()
            .map(|(_, body)| body.lines().count())
            .sum::<usize>()
    }
}

/// The whole table, replacing whatever keel's table held.
fn full(table: &ServiceTable) -> (String, SyncStats) {
    let plans: Vec<Plan> = table
        .services
        .iter()
        .map(|(f, e)| Plan::new(f, e))
        .collect();
    let members = |container: &str| -> Vec<String> {
        plans
            .iter()
            .filter(|p| p.container == container)
            .map(|p| p.element.clone())
            .collect()
    };
    let mut text = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    let _ = writeln!(
        text,
        "  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict\n{}  }}",
        elements(&members("service-ips"))
    );
    let _ = writeln!(
        text,
        "  map service-nodeports {{ type inet_proto . inet_service : verdict\n{}  }}",
        elements(&members("service-nodeports"))
    );
    let _ = writeln!(
        text,
        "  set no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service\n{}  }}",
        elements(&members("no-endpoint-services"))
    );
    let _ = writeln!(
        text,
        "  set no-endpoint-nodeports {{ type inet_proto . inet_service\n{}  }}",
        elements(&members("no-endpoint-nodeports"))
    );
    text.push_str(
        "  chain services {\n    ip daddr . meta l4proto . th dport vmap @service-ips\n    fib daddr type local meta l4proto . th dport vmap @service-nodeports\n  }\n",
    );
    text.push_str(
        "  chain nat-prerouting { type nat hook prerouting priority dstnat; jump services; }\n",
    );
    text.push_str("  chain nat-output { type nat hook output priority -100; jump services; }\n");
    let _ = writeln!(
        text,
        "  chain nat-postrouting {{ type nat hook postrouting priority srcnat; meta mark & {MASQ_MARK} == {MASQ_MARK} meta mark set meta mark ^ {MASQ_MARK} masquerade; }}"
    );
    text.push_str(
        "  chain reject-no-endpoints {\n    ip daddr . meta l4proto . th dport @no-endpoint-services reject\n    fib daddr type local meta l4proto . th dport @no-endpoint-nodeports reject\n  }\n",
    );
    for hook in ["input", "forward", "output"] {
        let _ = writeln!(text, "  chain filter-{hook} {{ type filter hook {hook} priority -110; jump reject-no-endpoints; }}");
    }
    for plan in &plans {
        for (name, body) in &plan.sets {
            let _ = writeln!(text, "  set {name} {{ {body} }}");
        }
        for (name, body) in &plan.chains {
            let _ = writeln!(text, "  chain {name} {{\n{body}  }}");
        }
    }
    text.push_str("}\n");
    let written = plans.iter().map(Plan::size).sum();
    (
        text,
        SyncStats {
            written,
            removed: 0,
        },
    )
}

/// Only what changed between `old` and `new`, in an order the kernel accepts within one
/// transaction: new sets and chains (changed ones flushed and refilled) before the elements
/// that point at them; elements removed before the chains and sets they pointed at.
fn diff(old: &ServiceTable, new: &ServiceTable) -> (String, SyncStats) {
    let mut creates = String::new();
    let mut elements = String::new();
    let mut deletes = String::new();
    let mut stats = SyncStats::default();
    let frontends: std::collections::BTreeSet<&Frontend> =
        old.services.keys().chain(new.services.keys()).collect();
    for frontend in frontends {
        let before = old.services.get(frontend).map(|e| Plan::new(frontend, e));
        let after = new.services.get(frontend).map(|e| Plan::new(frontend, e));
        if before == after {
            continue;
        }
        let empty = Plan {
            container: "",
            element: String::new(),
            key: String::new(),
            chains: Vec::new(),
            sets: Vec::new(),
        };
        let (before, after) = (before.unwrap_or(empty.clone()), after.unwrap_or(empty));
        for (name, body) in after.sets.iter().filter(|s| !before.sets.contains(s)) {
            let _ = writeln!(creates, "add set ip {TABLE} {name} {{ {body} }}");
        }
        // Endpoint chains before the service chain that jumps to them.
        for (name, body) in after.chains.iter().rev() {
            if before.chains.iter().any(|(n, b)| n == name && b == body) {
                continue;
            }
            let _ = writeln!(
                creates,
                "add chain ip {TABLE} {name}\nflush chain ip {TABLE} {name}"
            );
            for rule in body.lines() {
                let _ = writeln!(creates, "add rule ip {TABLE} {name} {}", rule.trim());
            }
            stats.written += 1 + body.lines().count();
        }
        if before.container != after.container || before.element != after.element {
            if !before.container.is_empty() {
                let _ = writeln!(
                    elements,
                    "delete element ip {TABLE} {} {{ {} }}",
                    before.container, before.key
                );
                stats.removed += 1;
            }
            if !after.container.is_empty() {
                let _ = writeln!(
                    elements,
                    "add element ip {TABLE} {} {{ {} }}",
                    after.container, after.element
                );
                stats.written += 1;
            }
        }
        for (name, _) in before
            .chains
            .iter()
            .filter(|(n, _)| !after.chains.iter().any(|(m, _)| m == n))
        {
            let _ = writeln!(deletes, "delete chain ip {TABLE} {name}");
            stats.removed += 1;
        }
        for (name, _) in before
            .sets
            .iter()
            .filter(|(n, _)| !after.sets.iter().any(|(m, _)| m == n))
        {
            let _ = writeln!(deletes, "delete set ip {TABLE} {name}");
            stats.removed += 1;
        }
    }
    (creates + &elements + &deletes, stats)
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("    elements = {{ {} }}\n", items.join(", "))
    }
}

fn protocol(protocol: L4Protocol) -> &'static str {
    match protocol {
        L4Protocol::Tcp => "tcp",
        L4Protocol::Udp => "udp",
    }
}

/// `nft -f -` with `text`: one transaction, all or nothing.
fn apply(text: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(NftError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(NftError::Spawn)?;
    if !output.status.success() {
        return Err(NftError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    #[test]
    fn one_vmap_element_per_service_and_a_chain_per_endpoint() {
        let mut table = ServiceTable::default();
        let backends = vec![
            SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 2), 8080),
            SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 3), 8080),
        ];
        let entry = ServicePortEntry {
            name: "default/web:http".into(),
            backends,
            affinity_timeout: Some(30),
        };
        table.services.insert(
            Frontend {
                vip: Ipv4Addr::new(10, 96, 0, 10),
                port: 80,
                protocol: L4Protocol::Tcp,
            },
            entry.clone(),
        );
        table.services.insert(
            Frontend {
                vip: Ipv4Addr::UNSPECIFIED,
                port: 30080,
                protocol: L4Protocol::Tcp,
            },
            entry,
        );
        table.services.insert(
            Frontend {
                vip: Ipv4Addr::new(10, 96, 0, 11),
                port: 53,
                protocol: L4Protocol::Udp,
            },
            ServicePortEntry {
                name: "default/dns:dns".into(),
                backends: vec![],
                affinity_timeout: None,
            },
        );
        let (text, _) = full(&table);
        assert!(text.contains("10.96.0.10 . tcp . 80 : goto svc-"), "{text}");
        assert!(text.contains("tcp . 30080 : goto ext-"), "{text}");
        // The NodePort's chain marks for masquerade, then goes to its service's chain.
        let ext = text
            .split("chain ext-")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap_or_default();
        assert!(ext.contains("meta mark set meta mark | 0x4000"), "{text}");
        assert!(ext.contains("goto svc-"), "{text}");
        assert!(
            text.contains("elements = { 10.96.0.11 . udp . 53 }"),
            "{text}"
        );
        assert!(text.contains("numgen random mod 2 vmap"), "{text}");
        assert!(text.contains("dnat to 10.244.0.3:8080"), "{text}");
        assert!(text.contains("timeout 30s"), "{text}");
        assert!(
            text.starts_with("table ip keel\ndelete table ip keel\n"),
            "atomic replace"
        );
    }
}

#[cfg(test)]
mod diff_tests {

    use super::*;

    fn table(backends: &[u8]) -> ServiceTable {
        crate::service_table::testing::web(backends, None)
    }

    #[test]
    fn an_endpoint_leaving_rewrites_one_chain_and_deletes_one() {
        let (text, stats) = diff(&table(&[2, 3]), &table(&[2]));
        assert_eq!(
            text.matches("flush chain").count(),
            1,
            "only the service chain: {text}"
        );
        assert_eq!(
            text.matches("delete chain").count(),
            1,
            "the endpoint's chain: {text}"
        );
        assert!(
            !text.contains("element"),
            "the service's element is unchanged: {text}"
        );
        assert!(text.find("flush chain").unwrap_or(0) < text.find("delete chain").unwrap_or(0));
        assert_eq!(stats.removed, 1);
    }

    #[test]
    fn losing_every_endpoint_moves_the_element_to_the_reject_set() {
        let (text, _) = diff(&table(&[2]), &table(&[]));
        let delete = text
            .find("delete element ip keel service-ips")
            .expect(&text);
        let add = text
            .find("add element ip keel no-endpoint-services")
            .expect(&text);
        let chain = text.find("delete chain").expect(&text);
        assert!(
            delete < chain && add < chain,
            "elements go before the chains they name: {text}"
        );
    }

    #[test]
    fn chains_exist_before_anything_jumps_to_them() {
        let (text, _) = diff(&table(&[]), &table(&[2, 3]));
        let svc = text.find("add chain ip keel svc-").expect(&text);
        let seps: Vec<usize> = text
            .match_indices("add chain ip keel sep-")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(seps.len(), 2, "{text}");
        assert!(
            seps.iter().all(|sep| *sep < svc),
            "endpoint chains first: {text}"
        );
        assert!(
            text.find("add element ip keel service-ips").expect(&text) > svc,
            "{text}"
        );
    }

    #[test]
    fn nothing_changed_nothing_written_and_removal_cleans_everything() {
        assert_eq!(diff(&table(&[2]), &table(&[2])).0, "");
        let (text, _) = diff(&table(&[2, 3]), &ServiceTable::default());
        assert_eq!(text.matches("delete chain").count(), 3, "{text}");
        assert_eq!(text.matches("delete element").count(), 1, "{text}");
    }
}
