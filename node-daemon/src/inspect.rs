//! `node-daemon services`: what the kernel maps hold right now, read from the pins (no daemon
//! needed), as a table or as JSON.

use std::path::Path;

use anyhow::Context;

use keel_proxy::ebpf::{
    memory::{state_memory, StateMemory},
    read_services, ServiceDump,
};

use crate::OutputFormat;

pub fn print_services(bpf_dir: &Path, format: OutputFormat) -> anyhow::Result<()> {
    let services = read_services(bpf_dir).with_context(|| {
        format!(
            "reading keel's maps pinned in {} (is the daemon set up?)",
            bpf_dir.display()
        )
    })?;
    let memory = state_memory(bpf_dir)?;
    match format {
        OutputFormat::Json => {
            let dump = serde_json::json!({ "services": services, "memory": memory });
            println!("{}", serde_json::to_string_pretty(&dump)?);
        }
        OutputFormat::Table => print!("{}{}", table(&services), footer(&memory)),
    }
    Ok(())
}

/// The kernel memory of service state and of flow state, apart: the first grows with the
/// services, the second with the traffic.
fn footer(memory: &StateMemory) -> String {
    let kib = |bytes: u64| bytes.div_ceil(1024);
    format!(
        "\nservice state (services, backends, Maglev): {} KiB\nflow state (conntrack, SYN, affinity, reverse): {} KiB\n({})\n",
        kib(memory.service_state_bytes),
        kib(memory.flow_state_bytes),
        memory.source
    )
}

fn table(services: &[ServiceDump]) -> String {
    let mut out = format!(
        "{:<24} {:>4} {:>12} {:>10} {:>10}  {}\n",
        "FRONTEND", "ID", "CONNECTIONS", "REFUSED", "PACKETS", "BACKENDS"
    );
    for s in services {
        let frontend = format!("{}:{}/{}", s.vip, s.port, s.protocol);
        let backends = if s.backends.is_empty() {
            "(none: connects refused)".to_owned()
        } else {
            s.backends
                .iter()
                .map(|b| b.map_or("<missing>".to_owned(), |b| b.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        };
        out.push_str(&format!(
            "{frontend:<24} {:>4} {:>12} {:>10} {:>10}  {backends}\n",
            s.service_id, s.connections, s.refused, s.packets
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_empty_and_damaged_services() {
        let dump = |backends| ServiceDump {
            vip: "10.96.0.10".parse().unwrap(),
            port: 80,
            protocol: "TCP",
            service_id: 1,
            backends,
            connections: 5,
            refused: 2,
            packets: 0,
            bytes: 0,
        };
        let text = table(&[
            dump(vec![]),
            dump(vec![Some("10.244.0.2:8080".parse().unwrap()), None]),
        ]);
        assert!(text.contains("(none: connects refused)"), "{text}");
        assert!(text.contains("10.244.0.2:8080,<missing>"), "{text}");
    }

    #[test]
    fn footer_shows_both_kinds_of_state_in_kib() {
        let text = footer(&StateMemory {
            service_state_bytes: 2048,
            flow_state_bytes: 1025,
            source: "test",
        });
        assert!(
            text.contains("service state (services, backends, Maglev): 2 KiB"),
            "{text}"
        );
        assert!(
            text.contains("flow state (conntrack, SYN, affinity, reverse): 2 KiB"),
            "{text}"
        );
    }
}
