//! `node-daemon monitor`: a live stream of datapath events, as `cilium monitor` gives —
//! every translation, every drop with its reason, conntrack misses — from the ring buffer the
//! programs write only while someone listens.

use std::{
    collections::HashMap,
    io::Write,
    net::SocketAddrV4,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use keel_common::monitor::{reason_name, REASONS};
use keel_proxy::ebpf::{
    monitor::{DatapathEvent, Listener},
    read_services,
};

use crate::OutputFormat;

/// Which events to print; empty lists let everything through.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Frontends (`IP:PORT`, `IP:PORT/PROTO`) or service ids.
    pub services: Vec<ServiceMatch>,
    pub kinds: Vec<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceMatch {
    Id(u32),
    Frontend {
        address: SocketAddrV4,
        protocol: Option<String>,
    },
}

const KINDS: [&str; 3] = ["translate", "drop", "conntrack"];

impl Filter {
    /// Reads the command line's filters; a value that can never match is an error naming
    /// the flag, not a silent empty stream.
    pub fn parse(
        services: &[String],
        kinds: &[String],
        reasons: &[String],
    ) -> anyhow::Result<Self> {
        let services = services
            .iter()
            .map(|s| parse_service(s).with_context(|| format!("--service {s:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for kind in kinds {
            if !KINDS.contains(&kind.as_str()) {
                bail!("--type {kind:?}: not one of {}", KINDS.join(", "));
            }
        }
        let known: Vec<&str> = REASONS.iter().map(|r| reason_name(*r)).collect();
        for reason in reasons {
            if !known.contains(&reason.as_str()) {
                bail!("--reason {reason:?}: not one of {}", known.join(", "));
            }
        }
        Ok(Self {
            services,
            kinds: kinds.to_vec(),
            reasons: reasons.to_vec(),
        })
    }

    pub fn matches(&self, event: &DatapathEvent) -> bool {
        let service = self.services.is_empty()
            || self.services.iter().any(|s| match s {
                ServiceMatch::Id(id) => *id == event.service_id,
                ServiceMatch::Frontend { address, protocol } => {
                    *address == event.destination
                        && protocol.as_deref().is_none_or(|p| p == event.protocol)
                }
            });
        let kind = self.kinds.is_empty() || self.kinds.iter().any(|k| k == event.kind);
        let reason = self.reasons.is_empty()
            || event
                .reason
                .is_some_and(|r| self.reasons.iter().any(|want| want == r));
        service && kind && reason
    }
}

fn parse_service(text: &str) -> anyhow::Result<ServiceMatch> {
    if let Ok(id) = text.parse::<u32>() {
        return Ok(ServiceMatch::Id(id));
    }
    let (address, protocol) = match text.split_once('/') {
        Some((address, protocol)) => {
            let protocol = protocol.to_ascii_uppercase();
            if protocol != "TCP" && protocol != "UDP" {
                bail!("the protocol must be TCP or UDP");
            }
            (address, Some(protocol))
        }
        None => (text, None),
    };
    let address = address
        .parse::<SocketAddrV4>()
        .context("expected a service id, IP:PORT or IP:PORT/PROTO")?;
    Ok(ServiceMatch::Frontend { address, protocol })
}

/// Set by SIGINT and SIGTERM: the loop ends and the listener says goodbye.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Listens until interrupted (or stdout goes away), printing what passes `filter`.
pub fn run(bpf_dir: &Path, format: OutputFormat, filter: &Filter) -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.context("installing the signal handler")?;
    }
    let mut listener = Listener::open(bpf_dir).with_context(|| {
        format!(
            "opening the monitor maps pinned in {} (is the daemon running in ebpf mode?)",
            bpf_dir.display()
        )
    })?;
    let mut frontends = Frontends::new(bpf_dir);
    let mut lost = listener.lost();
    let mut beat = Instant::now();
    eprintln!(
        "listening for datapath events in {} (Ctrl-C to stop)",
        bpf_dir.display()
    );
    let stdout = std::io::stdout();
    while !STOP.load(Ordering::Relaxed) {
        if beat.elapsed() >= Duration::from_secs(1) {
            listener.heartbeat()?;
            beat = Instant::now();
            let now = listener.lost();
            if now > lost {
                eprintln!("lost {} events: the reader was too slow", now - lost);
                lost = now;
            }
        }
        let mut fds = [nix::poll::PollFd::new(
            listener.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(error) => return Err(error).context("waiting for events"),
        }
        let mut out = stdout.lock();
        while let Some(raw) = listener.next_event() {
            let event = DatapathEvent::from_raw(&raw);
            if !filter.matches(&event) {
                continue;
            }
            let line = match format {
                OutputFormat::Json => serde_json::to_string(&event)?,
                OutputFormat::Table => text(&event, frontends.of(event.service_id)),
            };
            if writeln!(out, "{line}").is_err() {
                // The reader went away (`| head`): stop listening.
                return Ok(());
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// One line per event, the way `cilium monitor` reads.
fn text(event: &DatapathEvent, frontend: Option<&str>) -> String {
    let service = match frontend {
        Some(frontend) => format!("service {} ({frontend})", event.service_id),
        None => format!("service {}", event.service_id),
    };
    let from = event.client.map(|c| format!("{c} -> ")).unwrap_or_default();
    let to = event
        .backend
        .map(|b| format!(" => {b}"))
        .unwrap_or_default();
    let reason = event.reason.map(|r| format!(": {r}")).unwrap_or_default();
    format!(
        "{:<9} {:<10} {} {from}{}{to} {service}{reason}",
        event.kind, event.path, event.protocol, event.destination
    )
}

/// Service ids → their frontends, read from the maps again when an id is new (at most once
/// a second).
struct Frontends<'a> {
    bpf_dir: &'a Path,
    known: HashMap<u32, String>,
    read_at: Option<Instant>,
}

impl<'a> Frontends<'a> {
    fn new(bpf_dir: &'a Path) -> Self {
        Self {
            bpf_dir,
            known: HashMap::new(),
            read_at: None,
        }
    }

    fn of(&mut self, id: u32) -> Option<&str> {
        if id != 0
            && !self.known.contains_key(&id)
            && self
                .read_at
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.read_at = Some(Instant::now());
            if let Ok(services) = read_services(self.bpf_dir) {
                self.known = services
                    .into_iter()
                    .map(|s| (s.service_id, format!("{}:{}/{}", s.vip, s.port, s.protocol)))
                    .collect();
            }
        }
        self.known.get(&id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &'static str, reason: Option<&'static str>) -> DatapathEvent {
        DatapathEvent {
            time_ns: 1,
            kind,
            reason,
            path: "tc-ingress",
            protocol: "UDP",
            service_id: 4,
            client: Some("192.168.1.2:5353".parse().expect("addr")),
            destination: "10.96.0.10:53".parse().expect("addr"),
            backend: None,
            netns_cookie: None,
        }
    }

    #[test]
    fn filters_match_by_service_kind_and_reason() {
        let drop = event("drop", Some("no-backend"));
        let all = Filter::default();
        assert!(all.matches(&drop));
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let by = |services: &[&str], kinds: &[&str], reasons: &[&str]| {
            Filter::parse(&strings(services), &strings(kinds), &strings(reasons)).expect("valid")
        };
        assert!(by(&["10.96.0.10:53"], &[], &[]).matches(&drop));
        assert!(by(&["10.96.0.10:53/udp"], &[], &[]).matches(&drop));
        assert!(!by(&["10.96.0.10:53/TCP"], &[], &[]).matches(&drop));
        assert!(by(&["4"], &["drop"], &["no-backend"]).matches(&drop));
        assert!(!by(&["5"], &[], &[]).matches(&drop));
        assert!(!by(&[], &["translate"], &[]).matches(&drop));
        // A reason filter passes only events that have that reason.
        assert!(!by(&[], &[], &["no-backend"]).matches(&event("translate", None)));
    }

    #[test]
    fn filters_that_can_never_match_are_refused_by_flag() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (services, kinds, reasons, flag) in [
            (&["10.96.0.10"][..], &[][..], &[][..], "--service"),
            (&["10.96.0.10:53/SCTP"], &[], &[], "--service"),
            (&["web\n-j ACCEPT"], &[], &[], "--service"),
            (&[], &["drops"], &[], "--type"),
            (&[], &[], &["out-of-memory"], "--reason"),
        ] {
            let error = Filter::parse(&strings(services), &strings(kinds), &strings(reasons))
                .expect_err("refused");
            assert!(format!("{error:#}").starts_with(flag), "{error:#}");
        }
    }

    #[test]
    fn text_lines_name_the_frontend_and_the_reason() {
        let mut translated = event("translate", None);
        translated.backend = Some("10.244.0.5:53".parse().expect("addr"));
        assert_eq!(
            text(&translated, Some("10.96.0.10:53/UDP")),
            "translate tc-ingress UDP 192.168.1.2:5353 -> 10.96.0.10:53 => 10.244.0.5:53 service 4 (10.96.0.10:53/UDP)"
        );
        assert_eq!(
            text(&event("drop", Some("no-backend")), None),
            "drop      tc-ingress UDP 192.168.1.2:5353 -> 10.96.0.10:53 service 4: no-backend"
        );
    }
}
