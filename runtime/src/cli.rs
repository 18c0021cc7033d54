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

use super::{image::ImageStore, state, PodRecord};

/// How `pods` and `services` print: a table for people, JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

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

/// Prints a container's log (`node-daemon logs`).
pub fn print_logs(
    state_dir: &Path,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
    follow: bool,
    previous: bool,
    timestamps: bool,
) -> anyhow::Result<()> {
    let file = log_file(state_dir, namespace, pod_name, container, previous)?;
    copy_logs(&file, &mut std::io::stdout().lock(), follow, timestamps)
}

/// The log file of a container of a pod on this node: its current run's, or with
/// `previous` the run before. Errors name what is missing (the pod, the container, a run).
pub fn log_file(
    state_dir: &Path,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
    previous: bool,
) -> anyhow::Result<std::path::PathBuf> {
    let pod = find_pod(state_dir, namespace, pod_name)?;
    let container = &choose_container(&pod, container)?;
    let files = pod.dir.log_files(container);
    let file = if previous {
        files.get(1)
    } else {
        files.first()
    };
    match file {
        Some(file) => Ok(file.clone()),
        None if previous => bail!("container {container} has no previous run"),
        None => bail!("container {container} has not started yet"),
    }
}

/// Copies a container's log (CRI entries) to `out` as the container wrote it; with `follow`,
/// keeps going as it grows (across rotations) until writing to `out` fails — a reader that
/// went away. `out.flush()` is called while waiting, so a writer can report a closed reader
/// there.
pub fn copy_logs(
    file: &Path,
    out: &mut impl Write,
    follow: bool,
    timestamps: bool,
) -> anyhow::Result<()> {
    let open = |file: &Path| -> anyhow::Result<(BufReader<std::fs::File>, u64)> {
        let opened = std::fs::File::open(file).with_context(|| file.display().to_string())?;
        let inode = std::os::unix::fs::MetadataExt::ino(&opened.metadata()?);
        Ok((BufReader::new(opened), inode))
    };
    let (mut reader, mut inode) = open(file)?;
    let mut entry = Vec::new();
    let mut at_line_start = true;
    loop {
        entry.clear();
        // Bytes, not a String: a container's output need not be UTF-8, and a 16 KiB part
        // may end inside a character.
        let read = reader.read_until(b'\n', &mut entry)?;
        if read == 0 || entry.last() != Some(&b'\n') {
            if !follow {
                out.flush()?;
                return Ok(());
            }
            // A partial entry is re-read once complete.
            reader.seek_relative(-(read as i64))?;
            out.flush()?;
            // Rotated: the shim writes to a new file of the same name; go on there.
            let now = std::fs::metadata(file).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if read == 0 && now.is_ok_and(|now| now != inode) {
                (reader, inode) = open(file)?;
                continue;
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        at_line_start = write_log_entry(out, &entry, timestamps, at_line_start)?;
    }
}

/// Writes one CRI log entry (`<time> <stream> <P|F> <text>\n`) as the container wrote it:
/// a partial (`P`) entry continues on the same line. Returns whether the next entry starts
/// a new line.
pub fn write_log_entry(
    out: &mut impl Write,
    entry: &[u8],
    timestamps: bool,
    at_line_start: bool,
) -> std::io::Result<bool> {
    let mut fields = entry.splitn(4, |b| *b == b' ');
    let (Some(time), Some(_stream), Some(tag), Some(text)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        out.write_all(entry)?;
        return Ok(true);
    };
    if timestamps && at_line_start {
        out.write_all(time)?;
        out.write_all(b" ")?;
    }
    if tag == b"P" {
        out.write_all(text.strip_suffix(b"\n").unwrap_or(text))?;
        Ok(false)
    } else {
        out.write_all(text)?;
        Ok(true)
    }
}

fn find_pod(state_dir: &Path, namespace: &str, name: &str) -> anyhow::Result<PodEntry> {
    read_pods(state_dir)?
        .into_iter()
        .find(|p| {
            p.record.pod.metadata.name == name && p.record.pod.metadata.namespace() == namespace
        })
        .with_context(|| {
            format!(
                "pod {namespace}/{name} not found in {}",
                state_dir.display()
            )
        })
}

/// The container asked for, or the pod's only one.
fn choose_container(pod: &PodEntry, container: Option<&str>) -> anyhow::Result<String> {
    let name = &pod.record.pod.metadata.name;
    let names: Vec<&str> = pod
        .record
        .pod
        .spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    Ok(match container {
        Some(wanted) if names.contains(&wanted) => wanted.to_owned(),
        Some(wanted) => bail!("container {wanted:?} is not in pod {name} (it has {names:?})"),
        None if names.len() == 1 => names[0].to_owned(),
        None => bail!("pod {name} has several containers {names:?}: choose one with -c"),
    })
}

/// `node-daemon exec POD [-c C] -- CMD…`: runs CMD in the running container, with its
/// stdio; returns its exit code.
pub fn exec(
    state_dir: &Path,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
    command: &[String],
) -> anyhow::Result<i32> {
    let pod = find_pod(state_dir, namespace, pod_name)?;
    let container = choose_container(&pod, container)?;
    let dir = pod.dir.container(&container);
    let running: Option<super::spec::Running> = state::read_json(&dir.running_json())?;
    let exited = dir.exit_json().exists();
    let Some(running) = running.filter(|_| !exited) else {
        bail!("container {container} of pod {pod_name} is not running");
    };
    super::nsexec::run(&dir.spec_json(), running.pid, command)
}

/// `node-daemon describe POD`: what `kubectl describe pod` shows, from the state directory.
pub fn describe(state_dir: &Path, namespace: &str, pod_name: &str) -> anyhow::Result<()> {
    let pod = find_pod(state_dir, namespace, pod_name)?;
    let events = super::events::EventLog::open(pod.dir.dir.join("events.json"));
    print!("{}", describe_text(&pod, events.events()));
    Ok(())
}

fn describe_text(pod: &PodEntry, events: &[super::events::Event]) -> String {
    use std::fmt::Write as _;
    let meta = &pod.record.pod.metadata;
    let status = pod.status.clone().unwrap_or_default();
    let mut out = String::new();
    let labels: Vec<String> = meta
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(out, "Name:         {}", meta.name);
    let _ = writeln!(out, "Namespace:    {}", meta.namespace());
    let _ = writeln!(out, "UID:          {}", pod.record.uid);
    let _ = writeln!(out, "Source:       {}", pod.record.source.display());
    let _ = writeln!(
        out,
        "Start Time:   {}",
        status.start_time.clone().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Labels:       {}",
        if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join(",")
        }
    );
    let _ = writeln!(out, "Status:       {}", status.phase);
    let _ = writeln!(
        out,
        "IP:           {}",
        status.pod_ip.clone().unwrap_or_else(|| "<none>".into())
    );
    let _ = writeln!(out, "Containers:");
    for container in &pod.record.pod.spec.containers {
        let Some(cs) = status
            .container_statuses
            .iter()
            .find(|c| c.name == container.name)
        else {
            continue;
        };
        let _ = writeln!(out, "  {}:", container.name);
        let _ = writeln!(out, "    Image:          {}", container.image);
        let _ = writeln!(out, "    State:          {}", cs.state.summary());
        if let Some(waiting) = &cs.state.waiting {
            if let Some(message) = &waiting.message {
                let _ = writeln!(out, "      Message:      {message}");
            }
        }
        if cs.last_state.terminated.is_some() {
            let _ = writeln!(out, "    Last State:     {}", cs.last_state.summary());
        }
        let _ = writeln!(out, "    Ready:          {}", cs.ready);
        let _ = writeln!(out, "    Restart Count:  {}", cs.restart_count);
        if !container.volume_mounts.is_empty() {
            let _ = writeln!(out, "    Mounts:");
        }
        for mount in &container.volume_mounts {
            let sub_path = mount
                .sub_path
                .as_ref()
                .map(|p| format!(",path={p:?}"))
                .unwrap_or_default();
            let mode = if mount.read_only { "ro" } else { "rw" };
            let _ = writeln!(
                out,
                "      {} from {} ({mode}{sub_path})",
                mount.mount_path, mount.name
            );
        }
        for (name, probe) in [
            ("Liveness", &container.liveness_probe),
            ("Readiness", &container.readiness_probe),
            ("Startup", &container.startup_probe),
        ] {
            if let Some(probe) = probe {
                let _ = writeln!(
                    out,
                    "    {name}:{:width$}{} delay={}s timeout={}s period={}s #success={} #failure={}",
                    "",
                    probe_action(probe),
                    probe.initial_delay(),
                    probe.timeout(),
                    probe.period(),
                    probe.success_threshold(),
                    probe.failure_threshold(),
                    width = 15 - name.len()
                );
            }
        }
    }
    let _ = writeln!(out, "Conditions:");
    for condition in &status.conditions {
        let _ = writeln!(
            out,
            "  {:<16} {}",
            condition.condition_type, condition.status
        );
    }
    describe_volumes(&mut out, &pod.record.pod.spec.volumes);
    let _ = writeln!(out, "Events:");
    if events.is_empty() {
        let _ = writeln!(out, "  <none>");
    }
    for event in events {
        let seen = if event.count > 1 {
            format!(
                "{} (x{} since {})",
                age(&event.last_timestamp),
                event.count,
                age(&event.first_timestamp)
            )
        } else {
            age(&event.last_timestamp)
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<12} {:<18} {}",
            event.event_type, event.reason, seen, event.message
        );
    }
    out
}

/// The pod's volumes, as `kubectl describe` lists them.
fn describe_volumes(out: &mut String, volumes: &[keel_api::volume::Volume]) {
    use keel_api::volume::{HostPathType, StorageMedium, VolumeSource};
    use std::fmt::Write as _;
    let _ = writeln!(out, "Volumes:");
    if volumes.is_empty() {
        let _ = writeln!(out, "  <none>");
    }
    for volume in volumes {
        let _ = writeln!(out, "  {}:", volume.name);
        match volume.source() {
            Some(VolumeSource::EmptyDir(empty_dir)) => {
                let medium = match empty_dir.medium {
                    StorageMedium::Disk => "",
                    StorageMedium::Memory => "Memory",
                };
                let limit = empty_dir
                    .size_limit
                    .as_ref()
                    .map_or("<unset>".to_owned(), ToString::to_string);
                let _ = writeln!(
                    out,
                    "    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)"
                );
                let _ = writeln!(out, "    Medium:     {medium}");
                let _ = writeln!(out, "    SizeLimit:  {limit}");
            }
            Some(VolumeSource::HostPath(host_path)) => {
                let kind = match host_path.kind {
                    HostPathType::Unset => String::new(),
                    other => format!("{other:?}"),
                };
                let _ = writeln!(
                    out,
                    "    Type:          HostPath (bare host directory volume)"
                );
                let _ = writeln!(out, "    Path:          {}", host_path.path);
                let _ = writeln!(out, "    HostPathType:  {kind}");
            }
            Some(VolumeSource::Api(api)) => describe_api_volume(out, volume.type_name(), &api),
            None => {}
        }
    }
}

/// A secret, configMap, downwardAPI or projected volume, in kubectl's words.
fn describe_api_volume(out: &mut String, type_name: &str, api: &keel_api::volume::ApiVolume<'_>) {
    use keel_api::volume::Projection;
    use std::fmt::Write as _;
    let kind = match type_name {
        "secret" => "Secret (a volume populated by a Secret)",
        "configMap" => "ConfigMap (a volume populated by a ConfigMap)",
        "downwardAPI" => "DownwardAPI (a volume populated by information about the pod)",
        _ => "Projected (a volume that contains injected data from multiple sources)",
    };
    let _ = writeln!(out, "    Type:                    {kind}");
    for projection in &api.projections {
        match projection {
            Projection::Secret { name, optional, .. } => {
                let _ = writeln!(out, "    SecretName:              {name}");
                let _ = writeln!(out, "    Optional:                {optional}");
            }
            Projection::ConfigMap { name, optional, .. } => {
                let _ = writeln!(out, "    ConfigMapName:           {name}");
                let _ = writeln!(out, "    Optional:                {optional}");
            }
            Projection::DownwardApi(_) => {
                let _ = writeln!(out, "    DownwardAPI:             true");
            }
            Projection::ServiceAccountToken(token) => {
                let seconds = token
                    .expiration_seconds
                    .unwrap_or(keel_api::volume::projected::DEFAULT_TOKEN_SECONDS);
                let _ = writeln!(out, "    TokenExpirationSeconds:  {seconds}");
            }
        }
    }
}

fn probe_action(probe: &keel_api::pod::Probe) -> String {
    if let Some(http) = &probe.http_get {
        format!(
            "http-get http://:{}{}",
            http.port,
            http.path.as_deref().unwrap_or("/")
        )
    } else if let Some(tcp) = &probe.tcp_socket {
        format!("tcp-socket :{}", tcp.port)
    } else if let Some(exec) = &probe.exec {
        format!("exec {:?}", exec.command)
    } else if let Some(grpc) = &probe.grpc {
        format!(
            "grpc :{} {}",
            grpc.port,
            grpc.service.as_deref().unwrap_or("")
        )
    } else {
        "<none>".into()
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
    fn log_entries_render_like_kubectl() -> std::io::Result<()> {
        let render = |entries: &[&[u8]], timestamps: bool| -> std::io::Result<Vec<u8>> {
            let mut out = Vec::new();
            let mut at_line_start = true;
            for entry in entries {
                at_line_start = write_log_entry(&mut out, entry, timestamps, at_line_start)?;
            }
            Ok(out)
        };
        let full: &[u8] = b"2026-11-28T05:00:00.123456789Z stdout F hello world\n";
        assert_eq!(render(&[full], false)?, b"hello world\n");
        assert_eq!(
            render(&[full], true)?,
            b"2026-11-28T05:00:00.123456789Z hello world\n"
        );
        // Parts of one long line are one line again, even split inside a character.
        let parts: [&[u8]; 3] = [
            b"2026-11-28T05:00:00Z stdout P caf\xc3\n",
            b"2026-11-28T05:00:01Z stdout P \xa9 au \n",
            b"2026-11-28T05:00:02Z stdout F lait\n",
        ];
        assert_eq!(render(&parts, false)?, "café au lait\n".as_bytes());
        assert_eq!(
            render(&parts, true)?,
            "2026-11-28T05:00:00Z café au lait\n".as_bytes()
        );
        // Not in the format: shown as it is rather than lost.
        assert_eq!(render(&[b"garbage\n"], false)?, b"garbage\n");
        Ok(())
    }

    #[test]
    fn missing_pods_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = print_logs(dir.path(), "default", "web", None, false, false, false)
            .expect_err("no pod");
        assert!(err.to_string().contains("default/web"), "{err}");
    }
}
