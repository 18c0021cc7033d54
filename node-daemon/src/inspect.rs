//! `node-daemon services`: what the kernel maps hold right now, read from the pins (no daemon
//! needed), as a table or as JSON.

use std::path::Path;

use anyhow::Context;

use keel_proxy::ebpf::{read_services, ServiceDump};

use crate::OutputFormat;

pub fn print_services(bpf_dir: &Path, format: OutputFormat) -> anyhow::Result<()> {
    let services = read_services(bpf_dir).with_context(|| {
        format!(
            "reading keel's maps pinned in {} (is the daemon set up?)",
            bpf_dir.display()
        )
    })?;
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&services)?),
        OutputFormat::Table => print!("{}", table(&services)),
    }
    Ok(())
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
}
