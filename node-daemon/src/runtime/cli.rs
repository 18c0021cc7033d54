//! `node-daemon pods`, `node-daemon logs` and `node-daemon image`: reading the node's state
//! directory, so they work whether or not the daemon runs.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context};
use keel_api::PodStatus;
use serde_json::json;

use super::{image::ImageStore, state, worker, PodRecord};
use crate::OutputFormat;

/// A pod as the state directory has it.
pub struct PodEntry {
    pub record: PodRecord,
    pub status: Option<PodStatus>,
    pub dir: state::PodDir,
}

pub fn read_pods(state_dir: &Path) -> anyhow::Result<Vec<PodEntry>> {
    let state = state::StateDir::new(state_dir);
    let mut pods = Vec::new();
    for uid in state.pod_uids()? {
        let dir = state.pod(&uid);
        let Some(record) = state::read_json::<PodRecord>(&dir.pod_json())? else {
            continue; // being created or removed
        };
        let status = state::read_json::<PodStatus>(&dir.status_json())?;
        pods.push(PodEntry {
            record,
            status,
            dir,
        });
    }
    pods.sort_by(|a, b| {
        (
            a.record.pod.metadata.namespace(),
            &a.record.pod.metadata.name,
        )
            .cmp(&(
                b.record.pod.metadata.namespace(),
                &b.record.pod.metadata.name,
            ))
    });
    Ok(pods)
}

/// `node-daemon pods`.
pub fn print_pods(state_dir: &Path, output: OutputFormat) -> anyhow::Result<()> {
    let pods = read_pods(state_dir)?;
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = pods.iter().map(pod_json).collect();
            let list = json!({"apiVersion": "v1", "kind": "PodList", "items": items});
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "{:<12} {:<24} {:<6} {:<18} {:<9} {:<6} {:<15} CONTAINERS",
                "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"
            )?;
            for pod in &pods {
                writeln!(out, "{}", table_row(pod))?;
            }
        }
    }
    Ok(())
}

fn pod_json(pod: &PodEntry) -> serde_json::Value {
    let meta = &pod.record.pod.metadata;
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace(),
            "uid": pod.record.uid,
            "labels": meta.labels,
            "creationTimestamp": pod.record.creation_timestamp,
            "annotations": {"kubernetes.io/config.source": "file", "kubernetes.io/config.path": pod.record.source},
        },
        "spec": pod.record.pod.spec,
        "status": pod.status,
    })
}

fn table_row(pod: &PodEntry) -> String {
    let meta = &pod.record.pod.metadata;
    let total = pod.record.pod.spec.containers.len();
    let status = pod.status.clone().unwrap_or_default();
    let ready = status.container_statuses.iter().filter(|c| c.ready).count();
    let restarts: u32 = status
        .container_statuses
        .iter()
        .map(|c| c.restart_count)
        .sum();
    // Like kubectl: a waiting or terminated reason tells more than the phase.
    let shown = status
        .container_statuses
        .iter()
        .find_map(|c| c.state.waiting.as_ref().map(|w| w.reason.clone()))
        .or(status.reason.clone())
        .unwrap_or_else(|| status.phase.to_string());
    let containers: Vec<String> = status
        .container_statuses
        .iter()
        .map(|c| format!("{}={}", c.name, c.state.summary()))
        .collect();
    format!(
        "{:<12} {:<24} {:<6} {:<18} {:<9} {:<6} {:<15} {}",
        meta.namespace(),
        meta.name,
        format!("{ready}/{total}"),
        shown,
        restarts,
        age(&pod.record.creation_timestamp),
        status.pod_ip.unwrap_or_else(|| "<none>".into()),
        containers.join(" ")
    )
}

fn age(timestamp: &str) -> String {
    let Ok(created) = humantime::parse_rfc3339(timestamp) else {
        return "?".into();
    };
    let seconds = SystemTime::now()
        .duration_since(created)
        .unwrap_or_default()
        .as_secs();
    match seconds {
        0..=119 => format!("{seconds}s"),
        120..=7199 => format!("{}m", seconds / 60),
        _ => format!("{}h", seconds / 3600),
    }
}

/// `node-daemon logs POD [-c CONTAINER] [-f] [--previous] [--timestamps]`.
pub fn print_logs(
    state_dir: &Path,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
    follow: bool,
    previous: bool,
    timestamps: bool,
) -> anyhow::Result<()> {
    let pods = read_pods(state_dir)?;
    let Some(pod) = pods.iter().find(|p| {
        p.record.pod.metadata.name == pod_name && p.record.pod.metadata.namespace() == namespace
    }) else {
        bail!(
            "pod {namespace}/{pod_name} not found in {}",
            state_dir.display()
        );
    };
    let names: Vec<&str> = pod
        .record
        .pod
        .spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let container = match container {
        Some(name) if names.contains(&name) => name,
        Some(name) => bail!("container {name:?} is not in pod {pod_name} (it has {names:?})"),
        None if names.len() == 1 => names[0],
        None => bail!("pod {pod_name} has several containers {names:?}: choose one with -c"),
    };
    let files = worker::log_files(&pod.dir, container);
    let file = if previous {
        files.get(1)
    } else {
        files.first()
    };
    let Some(file) = file else {
        if previous {
            bail!("container {container} has no previous run");
        }
        bail!("container {container} has not started yet");
    };
    let mut reader =
        BufReader::new(std::fs::File::open(file).with_context(|| file.display().to_string())?);
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 || !line.ends_with('\n') {
            if !follow {
                return Ok(());
            }
            // A partial line is re-read once complete.
            let back = read as i64;
            reader.seek_relative(-back)?;
            out.flush()?;
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        out.write_all(render_log_line(&line, timestamps).as_bytes())?;
    }
}

/// `<time> <stream> F <text>` → `<text>` (or `<time> <text>` with timestamps).
pub fn render_log_line(line: &str, timestamps: bool) -> String {
    let mut parts = line.splitn(4, ' ');
    let (Some(time), Some(_stream), Some(_tag), Some(text)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return line.to_owned();
    };
    if timestamps {
        format!("{time} {text}")
    } else {
        text.to_owned()
    }
}

/// `node-daemon image import FILE [--name NAME]`.
pub fn import_image(state_dir: &Path, file: &Path, name: Option<&str>) -> anyhow::Result<()> {
    let store = ImageStore::new(state::StateDir::new(state_dir).images());
    let names = store.import(file, name)?;
    for name in names {
        let image = store.get(&name)?;
        println!("imported {name} ({})", &image.id[..12]);
    }
    Ok(())
}

/// `node-daemon image list`.
pub fn list_images(state_dir: &Path) -> anyhow::Result<()> {
    let store = ImageStore::new(state::StateDir::new(state_dir).images());
    println!("{:<40} ID", "NAME");
    for (name, id) in store.refs()? {
        println!("{name:<40} {}", &id[..id.len().min(12)]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_render_like_kubectl() {
        let line = "2026-11-28T05:00:00.123456789Z stdout F hello world\n";
        assert_eq!(render_log_line(line, false), "hello world\n");
        assert_eq!(
            render_log_line(line, true),
            "2026-11-28T05:00:00.123456789Z hello world\n"
        );
        // Not in the format: shown as it is rather than lost.
        assert_eq!(render_log_line("garbage\n", false), "garbage\n");
    }

    #[test]
    fn missing_pods_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = print_logs(dir.path(), "default", "web", None, false, false, false)
            .expect_err("no pod");
        assert!(err.to_string().contains("default/web"), "{err}");
    }
}
