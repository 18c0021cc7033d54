//! The nftables proxy mode, shaped like kube-proxy's nftables mode: one table of keel's own
//! (`ip keel`), a verdict map keyed by `daddr . protocol . port` so that finding a service is
//! one lookup whatever their number, one chain per service port and per endpoint.
//!
//! ```text
//! nat-prerouting / nat-output ─► services: ip daddr . l4proto . th dport vmap @service-ips
//!                                          fib daddr type local → l4proto . th dport vmap @service-nodeports
//! svc-<hash>: (affinity: ip saddr @sep-<hash>-affinity → goto sep-<hash>) numgen random mod n vmap {…}
//! sep-<hash>: ip saddr EP → mark for masquerade; (affinity: update @…); dnat to EP:PORT
//! nat-postrouting: marked → masquerade        filter-*: @no-endpoints → reject
//! ```
//!
//! Each sync replaces the table in one `nft -f` transaction (atomic), and is skipped when
//! nothing changed. Writing only the difference, as kube-proxy does, is the next step for
//! tables of thousands of services.

use std::{
    fmt::Write as _,
    io::Write as _,
    net::SocketAddrV4,
    process::{Command, Stdio},
};

use thiserror::Error;

use crate::{
    proxy::{hash::suffix, ProxyError, ServiceProxy, SyncStats},
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable},
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
    last: Option<String>,
}

impl ServiceProxy for NftablesProxy {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        let (text, rules) = ruleset(table);
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(SyncStats::default());
        }
        apply(&text).map_err(ProxyError::Nft)?;
        self.last = Some(text);
        Ok(SyncStats {
            written: rules,
            removed: 0,
        })
    }
}

/// Deletes keel's table, if any.
pub fn cleanup() -> Result<(), NftError> {
    // Creating it first makes the delete succeed whether or not it existed.
    apply(&format!("table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

/// The whole transaction: (re)create the table with its content. Returns it and the number
/// of rules and map elements it holds.
fn ruleset(table: &ServiceTable) -> (String, usize) {
    let mut body = Body::default();
    for (frontend, entry) in &table.services {
        body.service(frontend, entry);
    }
    let mut text = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    let _ = writeln!(
        text,
        "  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict\n{}  }}",
        elements(&body.service_ips)
    );
    let _ = writeln!(
        text,
        "  map service-nodeports {{ type inet_proto . inet_service : verdict\n{}  }}",
        elements(&body.node_ports)
    );
    let _ = writeln!(
        text,
        "  set no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service\n{}  }}",
        elements(&body.no_endpoints)
    );
    let _ = writeln!(
        text,
        "  set no-endpoint-nodeports {{ type inet_proto . inet_service\n{}  }}",
        elements(&body.no_endpoint_node_ports)
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
    text.push_str(&body.chains);
    text.push_str("}\n");
    (text, body.rules)
}

#[derive(Default)]
struct Body {
    service_ips: Vec<String>,
    node_ports: Vec<String>,
    no_endpoints: Vec<String>,
    no_endpoint_node_ports: Vec<String>,
    chains: String,
    rules: usize,
}

impl Body {
    fn service(&mut self, frontend: &Frontend, entry: &ServicePortEntry) {
        let proto = protocol(frontend.protocol);
        let key = if frontend.vip.is_unspecified() {
            format!("{proto} . {}", frontend.port)
        } else {
            format!("{} . {proto} . {}", frontend.vip, frontend.port)
        };
        let node_port = frontend.vip.is_unspecified();
        self.rules += 1;
        if entry.backends.is_empty() {
            if node_port {
                &mut self.no_endpoint_node_ports
            } else {
                &mut self.no_endpoints
            }
            .push(key);
            return;
        }
        let svc = format!("svc-{}", suffix(&format!("{}/{frontend}", entry.name)));
        if node_port {
            &mut self.node_ports
        } else {
            &mut self.service_ips
        }
        .push(format!("{key} : goto {svc}"));
        let seps: Vec<(String, &SocketAddrV4)> = entry
            .backends
            .iter()
            .map(|b| (format!("sep-{}", suffix(&format!("{svc}/{b}"))), b))
            .collect();
        let mut chain = format!("  chain {svc} {{\n");
        if let Some(timeout) = entry.affinity_timeout {
            for (sep, _) in &seps {
                let _ = writeln!(self.chains, "  set {sep}-affinity {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}");
                let _ = writeln!(chain, "    ip saddr @{sep}-affinity goto {sep}");
                self.rules += 1;
            }
        }
        let targets: Vec<String> = seps
            .iter()
            .enumerate()
            .map(|(i, (sep, _))| format!("{i} : goto {sep}"))
            .collect();
        let _ = writeln!(
            chain,
            "    numgen random mod {} vmap {{ {} }}\n  }}",
            seps.len(),
            targets.join(", ")
        );
        self.chains.push_str(&chain);
        for (sep, backend) in &seps {
            let mut chain = format!(
                "  chain {sep} {{\n    ip saddr {} meta mark set meta mark | {MASQ_MARK}\n",
                backend.ip()
            );
            if entry.affinity_timeout.is_some() {
                let _ = writeln!(chain, "    update @{sep}-affinity {{ ip saddr }}");
            }
            let _ = writeln!(chain, "    meta l4proto {proto} dnat to {backend}\n  }}");
            self.chains.push_str(&chain);
            self.rules += 3;
        }
    }
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
        let (text, _) = ruleset(&table);
        assert!(text.contains("10.96.0.10 . tcp . 80 : goto svc-"), "{text}");
        assert!(text.contains("tcp . 30080 : goto svc-"), "{text}");
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
