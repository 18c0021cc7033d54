//! The proxy bench's report: the tables (markdown, printed and written), the raw results and
//! the plots.

use std::fs;

use super::super::{plot, results_dir, Latency};
use super::{median, Cell, ENDPOINTS, NONE, RESULTS_BEGIN, RESULTS_END};

pub(super) fn report(cells: &[Cell], emulated: bool) -> anyhow::Result<()> {
    let markdown = markdown(cells, emulated);
    println!("\n{markdown}");
    if emulated {
        // The host reads the results off the serial console and writes the report itself.
        println!("{}", RESULTS_BEGIN);
        println!("{}", serde_json::to_string(cells)?);
        println!("{}", RESULTS_END);
        return Ok(());
    }
    let dir = results_dir()?;
    let stem = "proxy";
    let file = dir.join("results.json");
    fs::write(&file, serde_json::to_string_pretty(cells)?)?;
    println!("raw results: {}", file.display());
    let table = dir.join("results.md");
    fs::write(&table, &markdown)?;
    println!("report: {}", table.display());
    let plots = [
        (
            "program",
            "time to program N services (ms)",
            plot_values(cells, |c| median(&c.program_ms)),
        ),
        (
            "change",
            "one endpoint change, sync time p50 (ms)",
            plot_values(cells, |c| median(&c.change_p50_ms)),
        ),
        (
            "latency",
            "ClusterIP connect latency p50 (µs)",
            plot_values(cells, |c| {
                median(
                    &c.cluster_ip
                        .iter()
                        .map(|l| l.p50 as f64)
                        .collect::<Vec<_>>(),
                )
            }),
        ),
    ];
    for (name, title, series) in plots {
        let path = dir.join(format!("{stem}-{name}.svg"));
        plot::lines(&path, title, &series)?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

/// The report: how each mode programs the kernel, then what traffic pays through it, every
/// traffic figure beside the direct pod-IP baseline of the same run.
pub(crate) fn markdown(cells: &[Cell], emulated: bool) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let runs = cells.iter().map(|c| c.program_ms.len()).max().unwrap_or(0);
    line("# keel proxy bench".into());
    line(String::new());
    if emulated {
        line("EMULATED (qemu TCG, Debian kernel): absolute numbers mean nothing; compare how each mode scales with N.".into());
        let errors: u64 = cells
            .iter()
            .flat_map(|c| c.direct.iter().chain(&c.cluster_ip))
            .map(|l| l.errors)
            .sum();
        line(format!(
            "Connections lost under emulation (tolerated up to 2% per measurement): {errors}."
        ));
        line(String::new());
    }
    line(format!("Medians of {runs} runs, the minimum in brackets. {ENDPOINTS} endpoints per service; iptables is `iptables-legacy`."));
    line(String::new());
    line("## Programming the kernel".into());
    line(String::new());
    line("| mode | services | program all (ms) | one endpoint change: sync p50 / p99 (ms) | one change: table step p50 / p99 (ms) | one change: file written → synced p50 / p99 (ms) | state (KiB) |".into());
    line("|---|---|---|---|---|---|---|".into());
    for cell in cells.iter().filter(|c| c.mode != NONE) {
        if let Some(reason) = &cell.not_finished {
            line(format!(
                "| {} | {} | {reason} | — | — | — | — |",
                cell.mode, cell.services
            ));
            continue;
        }
        let kib =
            |bytes: &[u64]| median(&bytes.iter().map(|b| *b as f64).collect::<Vec<_>>()) / 1024.0;
        let state = if cell.service_state_bytes.is_empty() {
            format!("{:.0}", kib(&cell.state_bytes))
        } else {
            format!(
                "{:.0} (service {:.0} / flow {:.0})",
                kib(&cell.state_bytes),
                kib(&cell.service_state_bytes),
                kib(&cell.flow_state_bytes)
            )
        };
        let built = if cell.change_build_p50_ms.is_empty() {
            "—".to_string()
        } else {
            format!(
                "{:.2} / {:.2}",
                median(&cell.change_build_p50_ms),
                median(&cell.change_build_p99_ms)
            )
        };
        line(format!(
            "| {} | {} | {} | {} / {:.2} | {built} | {:.0} / {:.0} | {state} |",
            cell.mode,
            cell.services,
            median_min(&cell.program_ms, 2),
            median_min(&cell.change_p50_ms, 2),
            median(&cell.change_p99_ms),
            median(&cell.change_wall_p50_ms),
            median(&cell.change_wall_p99_ms),
        ));
    }
    line(String::new());
    line("Sync: the mode's own work for one change (the kernel writes; the eBPF mode is told which service ports changed and visits only those). Table step: the daemon handing its change tracker the objects that changed (here the rewritten manifest file of 1,000 services, compared object by object) and resolving the services whose objects differ, before the sync; nothing in it walks all N. File written → synced: the whole path, including re-reading every manifest file and parsing the rewritten one.".into());
    line(String::new());
    line("State: BPF map memory for ebpf (preallocated: the same at every N; the kernel's `bytes_memlock`), split into service state (service, backend, Maglev maps) and flow state (conntrack, SYN, affinity, reverse maps); the size of the printed ruleset for iptables, nftables and ipvs (`ipvsadm -Ln`): not comparable across modes.".into());
    line(String::new());
    line("## Traffic, beside the direct pod-IP baseline (direct / ClusterIP (ratio))".into());
    line(String::new());
    line("| mode | services | new connection + request p50 (µs) | ClusterIP p50, min of runs (µs) | p99 (µs) | keep-alive req/s | CPU ms per 10k connections, whole machine | CPU ms per 10k connections, lab cgroups |".into());
    line("|---|---|---|---|---|---|---|---|".into());
    for cell in cells.iter().filter(|c| c.not_finished.is_none()) {
        let latency =
            |runs: &[Latency], pick: fn(&Latency) -> f64| runs.iter().map(pick).collect::<Vec<_>>();
        let pair = |direct: Vec<f64>, vip: Vec<f64>| {
            let (d, v) = (median(&direct), median(&vip));
            format!("{d:.0} / {v:.0} ({:.2}×)", v / d)
        };
        let lab_cpu = |l: &Latency| l.lab_cpu_ms_per_10k.unwrap_or(f64::NAN);
        if cell.mode == NONE {
            // No ClusterIP to reach: the direct figures alone, the baseline of the table below.
            line(format!(
                "| {} | {} | {:.0} / — | — | {:.0} / — | {:.0} / — | {:.0} / — | {:.0} / — |",
                cell.mode,
                cell.services,
                median(&latency(&cell.direct, |l| l.p50 as f64)),
                median(&latency(&cell.direct, |l| l.p99 as f64)),
                median(&cell.keepalive_direct_rps),
                median(&latency(&cell.direct, |l| l.cpu_ms_per_10k)),
                median(&latency(&cell.direct, lab_cpu)),
            ));
            continue;
        }
        let vip_p50 = latency(&cell.cluster_ip, |l| l.p50 as f64);
        line(format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            cell.mode,
            cell.services,
            pair(latency(&cell.direct, |l| l.p50 as f64), vip_p50.clone()),
            vip_p50.iter().copied().fold(f64::INFINITY, f64::min),
            pair(
                latency(&cell.direct, |l| l.p99 as f64),
                latency(&cell.cluster_ip, |l| l.p99 as f64),
            ),
            pair(
                cell.keepalive_direct_rps.clone(),
                cell.keepalive_vip_rps.clone(),
            ),
            pair(
                latency(&cell.direct, |l| l.cpu_ms_per_10k),
                latency(&cell.cluster_ip, |l| l.cpu_ms_per_10k),
            ),
            pair(
                latency(&cell.direct, lab_cpu),
                latency(&cell.cluster_ip, lab_cpu),
            ),
        ));
    }
    line(String::new());
    line("Latency: a new TCP connection and a small request per sample, from a client pod to a random one of the N ClusterIPs (direct: to a random one of the pods behind them). Keep-alive: wrk, 8 connections, 3 s. CPU: busy time of the whole machine from /proc/stat (softirq included), and `cpu.stat` of the client's and the servers' cgroups (time the kernel charges to those tasks).".into());
    against_none(cells, &mut line);
    out
}

/// Every mode's direct and ClusterIP figures as ratios to the same lab with no proxy at all,
/// at the same N: what a mode costs traffic, including traffic that never uses a service.
fn against_none(cells: &[Cell], line: &mut impl FnMut(String)) {
    let baselines: Vec<&Cell> = cells.iter().filter(|c| c.mode == NONE).collect();
    if baselines.is_empty() {
        return;
    }
    line(String::new());
    line("## Against no proxy at all (`none`: the same lab, no daemon), at the same N".into());
    line(String::new());
    line("| mode | services | direct p50 / p99 | ClusterIP p50 / p99 | keep-alive req/s direct / ClusterIP |".into());
    line("|---|---|---|---|---|".into());
    let p = |runs: &[Latency], pick: fn(&Latency) -> u64| {
        median(&runs.iter().map(|l| pick(l) as f64).collect::<Vec<_>>())
    };
    for cell in cells
        .iter()
        .filter(|c| c.mode != NONE && c.not_finished.is_none())
    {
        let Some(none) = baselines.iter().find(|b| b.services == cell.services) else {
            continue;
        };
        let ratio = |value: f64, base: f64| format!("{:.2}×", value / base);
        let (none_p50, none_p99) = (p(&none.direct, |l| l.p50), p(&none.direct, |l| l.p99));
        let none_rps = median(&none.keepalive_direct_rps);
        line(format!(
            "| {} | {} | {} / {} | {} / {} | {} / {} |",
            cell.mode,
            cell.services,
            ratio(p(&cell.direct, |l| l.p50), none_p50),
            ratio(p(&cell.direct, |l| l.p99), none_p99),
            ratio(p(&cell.cluster_ip, |l| l.p50), none_p50),
            ratio(p(&cell.cluster_ip, |l| l.p99), none_p99),
            ratio(median(&cell.keepalive_direct_rps), none_rps),
            ratio(median(&cell.keepalive_vip_rps), none_rps),
        ));
    }
    line(String::new());
    line("A ratio of 1.00× is free. The direct column is what a mode costs connections that use no service at all (pod to pod), the ClusterIP column what a service connection costs against the same connection with no proxy on the node.".into());
}

/// "median (min)" with `digits` decimals.
fn median_min(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    format!("{:.digits$} ({min:.digits$})", median(values))
}

/// One series per mode: (services, value) points.
fn plot_values(cells: &[Cell], value: impl Fn(&Cell) -> f64) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for cell in cells.iter().filter(|c| c.not_finished.is_none()) {
        let point = (f64::from(cell.services), value(cell));
        match series.iter_mut().find(|(mode, _)| *mode == cell.mode) {
            Some((_, points)) => points.push(point),
            None => series.push((cell.mode.clone(), vec![point])),
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_puts_every_traffic_figure_beside_the_direct_baseline() {
        let latency = |p50, cpu| Latency {
            p50,
            p90: p50,
            p99: 2 * p50,
            cpu_ms_per_10k: cpu,
            lab_cpu_ms_per_10k: Some(cpu / 2.0),
            errors: 0,
        };
        let cell = Cell {
            mode: "ebpf".into(),
            services: 1000,
            program_ms: vec![16.0, 15.0, 17.0],
            change_p50_ms: vec![0.3, 0.2, 0.4],
            change_p99_ms: vec![0.5; 3],
            change_wall_p50_ms: vec![100.0; 3],
            change_wall_p99_ms: vec![110.0; 3],
            change_build_p50_ms: vec![2.0; 3],
            change_build_p99_ms: vec![3.0; 3],
            direct: vec![latency(100, 1000.0); 3],
            cluster_ip: vec![
                latency(110, 1200.0),
                latency(120, 1200.0),
                latency(130, 1200.0),
            ],
            state_bytes: vec![2048; 3],
            service_state_bytes: vec![1024; 3],
            flow_state_bytes: vec![512; 3],
            keepalive_direct_rps: vec![1000.0; 3],
            keepalive_vip_rps: vec![900.0; 3],
            not_finished: None,
        };
        let slow = Cell {
            mode: "iptables".into(),
            services: 1000,
            not_finished: Some("not finished within 150 s: programming 1000 services".into()),
            ..Cell::default()
        };
        let none = Cell {
            mode: NONE.into(),
            services: 1000,
            direct: vec![latency(80, 900.0); 3],
            state_bytes: vec![0; 3],
            keepalive_direct_rps: vec![1200.0; 3],
            ..Cell::default()
        };
        // What the VM hands back to the host is read back whole.
        let json = serde_json::to_string(&[&none, &cell, &slow]).expect("serialises");
        let cells: Vec<Cell> = serde_json::from_str(&json).expect("reads back");
        let report = markdown(&cells, false);
        let row = report
            .lines()
            .find(|l| l.starts_with("| ebpf | 1000 | 100 /"))
            .unwrap_or_else(|| panic!("no traffic row:\n{report}"));
        assert_eq!(
            row,
            "| ebpf | 1000 | 100 / 120 (1.20×) | 110 | 200 / 240 (1.20×) | 1000 / 900 (0.90×) | 1000 / 1200 (1.20×) | 500 / 600 (1.20×) |"
        );
        assert!(
            report.contains("| ebpf | 1000 | 16.00 (15.00) | 0.30 (0.20) / 0.50 | 2.00 / 3.00 | 100 / 110 | 2 (service 1 / flow 0) |"),
            "{report}"
        );
        // The baseline: direct figures only, in the traffic table and nowhere in programming.
        assert!(
            report.contains("| none | 1000 | 80 / — | — | 160 / — | 1200 / — |"),
            "{report}"
        );
        assert!(!report.contains("| none | 1000 | 0"), "{report}");
        // Every mode against it at the same N.
        assert!(
            report.contains("| ebpf | 1000 | 1.25× / 1.25× | 1.50× / 1.50× | 0.83× / 0.75× |"),
            "{report}"
        );
        // A mode that did not finish says so, and shows no figures anywhere.
        assert!(
            report.contains(
                "| iptables | 1000 | not finished within 150 s: programming 1000 services | — | — | — | — |"
            ),
            "{report}"
        );
        assert_eq!(report.matches("| iptables |").count(), 1, "{report}");
        assert!(!report.contains("EMULATED"));
        assert!(markdown(&cells, true).contains("EMULATED"));
        // A truncated result from the VM is an error, not a report of nothing.
        assert!(serde_json::from_str::<Vec<Cell>>(&json[..json.len() / 2]).is_err());
    }
}
