//! `service-propagation`: from a Service's create call until every node's datapath has it,
//! read from the nodes' `/metrics` (this client cannot see the daemons' logs).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Service;
use keel_control_plane::scrape::{self, Target};
use kube::{
    api::{Api, DeleteParams, ListParams, PostParams},
    Client,
};
use serde_json::{json, Value};

use super::{ensure_namespace, merge, millis, summary, LABEL_KEY, LABEL_VALUE, SELECTOR};

/// The node daemon's gauge of service ports written into the kernel (node-daemon/src/metrics.rs:
/// `service_ports` under the registry prefix `keel`).
const SERVICE_PORTS_METRIC: &str = "keel_service_ports";
const PROPAGATION_LIMIT: Duration = Duration::from_secs(30);
const METRICS_POLL: Duration = Duration::from_millis(5);

async fn service_ports(target: &Target) -> anyhow::Result<i64> {
    let text = target.fetch().await?;
    scrape::sum(&text, SERVICE_PORTS_METRIC)
        .map(|ports| ports as i64)
        .with_context(|| format!("{}: no {SERVICE_PORTS_METRIC} sample", target.url))
}

fn service(name: &str) -> anyhow::Result<Service> {
    // No pod matches the selector: the node programs a service port with no backend, which
    // is the whole change under measurement (the API's write reaching every kernel).
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {LABEL_KEY: LABEL_VALUE}},
        "spec": {
            "selector": {"app": "nothing"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    });
    serde_json::from_value(value).context("the bench's service")
}

pub(super) async fn service_propagation(
    client: Client,
    count: usize,
    namespace: &str,
    urls: &[String],
    spacing: std::time::Duration,
) -> anyhow::Result<Value> {
    ensure_namespace(&client, namespace).await?;
    let services: Api<Service> = Api::namespaced(client, namespace);
    let targets = urls
        .iter()
        .map(|u| Target::parse(u).with_context(|| format!("--node-metrics {u}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut baseline = Vec::with_capacity(targets.len());
    for target in &targets {
        baseline.push(service_ports(target).await?);
    }
    let prefix = format!("prop-{}", std::process::id());
    let mut latencies = Vec::with_capacity(count);
    let mut outcome: anyhow::Result<()> = Ok(());
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let svc = service(&name)?;
        let at = Instant::now();
        if let Err(error) = services.create(&PostParams::default(), &svc).await {
            outcome = Err(anyhow::Error::new(error).context(format!("creating service {name}")));
            break;
        }
        match propagated(&targets, &baseline, i as i64 + 1, at, &name).await {
            Ok(took) => latencies.push(millis(took)),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
        tokio::time::sleep(spacing).await;
    }
    // Deleted whatever happened, so a failed run leaves the cluster as it found it.
    let deleted = services
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(SELECTOR),
        )
        .await
        .context("deleting the bench's services");
    outcome?;
    deleted?;
    // The next measurement counts from a baseline: wait until every node has dropped them.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    for (target, base) in targets.iter().zip(&baseline) {
        while service_ports(target).await? != *base {
            if Instant::now() > deadline {
                anyhow::bail!("the nodes kept the bench's services 30 s after their deletion");
            }
            tokio::time::sleep(METRICS_POLL).await;
        }
    }
    Ok(merge(
        json!({ "services": count, "nodes": targets.len(), "spacing_ms": spacing.as_millis() as u64, "latencies_ms": latencies }),
        summary(&latencies),
    ))
}

/// Polls every node until each shows `baseline + added` service ports; returns the time from
/// `since` to the last node's confirmation.
async fn propagated(
    targets: &[Target],
    baseline: &[i64],
    added: i64,
    since: Instant,
    name: &str,
) -> anyhow::Result<Duration> {
    let mut done: Vec<Option<Duration>> = vec![None; targets.len()];
    let mut last_seen: Vec<String> = vec!["nothing yet".into(); targets.len()];
    loop {
        // The pending nodes at once: one slow answer must not delay another node's reading.
        let pending: Vec<usize> = (0..targets.len()).filter(|i| done[*i].is_none()).collect();
        let readings =
            futures::future::join_all(pending.iter().map(|i| service_ports(&targets[*i]))).await;
        let now = Instant::now();
        for (i, reading) in pending.into_iter().zip(readings) {
            // A failed scrape is retried until the limit; its error shows in the message then.
            match reading {
                Ok(ports) => {
                    last_seen[i] = format!("{ports} service ports");
                    if ports >= baseline[i] + added {
                        done[i] = Some(now - since);
                    }
                }
                Err(error) => last_seen[i] = format!("{error:#}"),
            }
        }
        if done.iter().all(Option::is_some) {
            return Ok(done.into_iter().flatten().max().unwrap_or_default());
        }
        if since.elapsed() > PROPAGATION_LIMIT {
            let late: Vec<String> = (0..targets.len())
                .filter(|i| done[*i].is_none())
                .map(|i| {
                    format!(
                        "{} last showed {}, wanted {} service ports",
                        targets[i].url,
                        last_seen[i],
                        baseline[i] + added
                    )
                })
                .collect();
            bail!(
                "service {name} was not programmed on every node within {PROPAGATION_LIMIT:?}: {}",
                late.join("; ")
            );
        }
        tokio::time::sleep(METRICS_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_gauge_and_not_its_neighbours() {
        let text = "# HELP keel_service_ports Service ports programmed in the kernel.\n\
                    # TYPE keel_service_ports gauge\n\
                    keel_service_ports{mode=\"ebpf\"} 3\n\
                    keel_service_ports_extra{mode=\"ebpf\"} 9\n\
                    # EOF\n";
        assert_eq!(scrape::sum(text, SERVICE_PORTS_METRIC), Some(3.0));
        assert_eq!(scrape::sum("# EOF\n", SERVICE_PORTS_METRIC), None);
    }
}
