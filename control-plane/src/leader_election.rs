//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! package does it for kube-scheduler and kube-controller-manager (`--leader-elect`): of the
//! control-plane members that run a component, only the holder of its Lease runs it.
//!
//! - A candidate takes the Lease when it is absent, or when its record has not changed for
//!   `lease_duration` *as this candidate observed it* (client-go compares against its own
//!   clock, never the holder's timestamps, so clock skew between members does not matter).
//! - The holder renews every `retry_period`; if it cannot renew for `renew_deadline`, it
//!   stops the component before anyone else may take the Lease (`renew_deadline <
//!   lease_duration`), so two members never run it at once.
//! - Every write is a compare-and-swap on the Lease's resourceVersion.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;

/// client-go's defaults for kube-scheduler and kube-controller-manager.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Config {
    /// The Lease's namespace and name (`kube-system/kube-scheduler`).
    pub namespace: String,
    pub name: String,
    /// This candidate's identity, unique among candidates (`<member>_<random>`).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Config {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Config {
        Config {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: LEASE_DURATION,
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
        }
    }
}

/// A component that runs while this candidate leads: started on acquiring, dropped on losing.
pub trait Component: Send {
    type Running: Send;
    fn start(&mut self) -> anyhow::Result<Self::Running>;
}

/// What the candidate last saw of the Lease, and when it saw it change.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Instant,
}

/// Runs for ever: waits to lead, runs `component` while leading, and stops it on losing the
/// Lease, then tries again. Returns only when the task is dropped.
pub async fn run<C: Component>(client: Client, config: Config, mut component: C) {
    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed: Option<Observed> = None;
    loop {
        // Candidate: try every retry period until the Lease is ours.
        match try_acquire_or_renew(&leases, &config, &mut observed).await {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep(config.retry_period).await;
                continue;
            }
            Err(error) => {
                tracing::debug!(lease = %config.name, %error, "leader election");
                tokio::time::sleep(config.retry_period).await;
                continue;
            }
        }
        tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
        let running = match component.start() {
            Ok(running) => running,
            Err(error) => {
                tracing::error!(lease = %config.name, %error, "starting the component as leader");
                tokio::time::sleep(config.retry_period).await;
                continue;
            }
        };
        // Leader: renew until a renewal has failed for the whole renew deadline.
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(config.retry_period).await;
            match try_acquire_or_renew(&leases, &config, &mut observed).await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(lease = %config.name, %error, "renewing the lease");
                    if last_renewal.elapsed() >= config.renew_deadline {
                        break;
                    }
                }
            }
        }
        drop(running);
        tracing::warn!(lease = %config.name, identity = %config.identity, "lost the lease; the component stopped");
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt: `Ok(true)` when this candidate holds the Lease afterwards.
async fn try_acquire_or_renew(
    leases: &Api<Lease>,
    config: &Config,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let current = leases.get_opt(&config.name).await?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Another candidate created it first.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let changed = observed
        .as_ref()
        .is_none_or(|seen| seen.holder != holder || seen.renew_time != spec.renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew_time: spec.renew_time.clone(),
            since: Instant::now(),
        });
    }
    let ours = holder.as_deref() == Some(config.identity.as_str());
    let duration = spec
        .lease_duration_seconds
        .map_or(config.lease_duration, |s| {
            Duration::from_secs(s.max(1) as u64)
        });
    let expired = observed
        .as_ref()
        .is_some_and(|seen| seen.since.elapsed() >= duration);
    if !ours && holder.is_some() && !expired {
        return Ok(false);
    }
    let mut next = spec;
    if !ours {
        next.acquire_time = Some(now());
        next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
        next.holder_identity = Some(config.identity.clone());
    }
    next.renew_time = Some(now());
    next.lease_duration_seconds = Some(config.lease_duration.as_secs() as i32);
    lease.spec = Some(next);
    // The replace carries the resourceVersion read above: a concurrent writer makes it fail.
    match leases
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(written) => {
            let spec = written.spec.unwrap_or_default();
            *observed = Some(Observed {
                holder: spec.holder_identity,
                renew_time: spec.renew_time,
                since: Instant::now(),
            });
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}
