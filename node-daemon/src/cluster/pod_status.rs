//! Pod status back to the API server, as the kubelet's status manager sends it: each pod's
//! phase, conditions, container states, addresses and restart counts, patched into
//! `pods/status` when they change; pods keel refuses reported Failed; and the last step of
//! graceful deletion — once a pod with a `deletionTimestamp` has stopped on this node, its
//! object is deleted for good (grace period 0, uid precondition, so a new pod of the same
//! name is never the one deleted). A mirror pod carries its static pod's status.
//!
//! Patches carry the resourceVersion they were computed against (compare-and-swap): a
//! conflict means the pod changed meanwhile, and the next round, woken by the watch that
//! brings the change, computes again. Failures back off per pod.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::reflector::Store,
    Api, Client, ResourceExt,
};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use keel_host::backoff::Backoff;
use keel_runtime::RuntimeConfig;

use super::sources::RefusedPod;

/// Why a pod was refused (the kubelet's admission failures have reasons of their own; this
/// one names keel's).
pub const REFUSED_REASON: &str = "UnsupportedPodSpec";

/// Reports until `stop`. `wake` is notified by the pods' watch and by the runtime.
pub async fn run(
    client: Client,
    pods: Store<Pod>,
    runtime: Arc<RuntimeConfig>,
    refused: watch::Receiver<Vec<RefusedPod>>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut reporter = Reporter {
        client,
        runtime,
        sent: HashMap::new(),
        retry: HashMap::new(),
    };
    loop {
        let next_retry = reporter.retry.values().map(|(at, _)| *at).min();
        let timer = async {
            match next_retry {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => tokio::time::sleep(Duration::from_secs(60)).await,
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            () = reporter.runtime.status_changed.notified() => {}
            () = timer => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let refused = refused.borrow().clone();
        reporter.round(&pods.state(), &refused).await;
    }
}

struct Reporter {
    client: Client,
    runtime: Arc<RuntimeConfig>,
    /// The status last accepted by the API server, by pod uid: only changes are sent.
    sent: HashMap<String, Value>,
    /// Pods whose last call failed: when to try again, and the backoff.
    retry: HashMap<String, (Instant, Backoff)>,
}

impl Reporter {
    async fn round(&mut self, pods: &[Arc<Pod>], refused: &[RefusedPod]) {
        let now = Instant::now();
        let mut present = HashSet::new();
        for pod in pods {
            let Some(uid) = pod.uid() else { continue };
            present.insert(uid.clone());
            if self.retry.get(&uid).is_some_and(|(at, _)| *at > now) {
                continue;
            }
            // A mirror pod reports its static pod's status; deleted, it goes at once (the
            // static pod runs on, and a new mirror follows).
            let mirrored = super::mirror::mirrored_uid(pod);
            let result = if mirrored.is_some() && pod.metadata.deletion_timestamp.is_some() {
                self.finish_deletion(pod, &uid).await
            } else if let Some(status) = self.status_of(mirrored.unwrap_or(&uid)) {
                self.send_status(pod, &uid, status).await
            } else if let Some(refusal) = refused.iter().find(|r| r.uid == uid) {
                let status = json!({
                    "phase": "Failed",
                    "reason": REFUSED_REASON,
                    "message": refusal.message,
                });
                self.send_status(pod, &uid, status).await
            } else if pod.metadata.deletion_timestamp.is_some() && self.stopped_here(&uid) {
                self.finish_deletion(pod, &uid).await
            } else {
                Ok(())
            };
            match result {
                Ok(()) => {
                    self.retry.remove(&uid);
                }
                Err(error) => {
                    let (at, backoff) = self.retry.entry(uid.clone()).or_insert_with(|| {
                        (
                            now,
                            Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
                        )
                    });
                    let delay = backoff.next_delay();
                    *at = now + delay;
                    tracing::warn!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), ?delay, "{error}");
                }
            }
        }
        self.sent.retain(|uid, _| present.contains(uid));
        self.retry.retain(|uid, _| present.contains(uid));
    }

    /// The status patch of the pod the runtime runs under `uid`, if it runs it. Looked up
    /// one pod at a time under the lock, rather than a copy of every pod's view per round:
    /// in a burst of pod starts, rounds follow each other, and each copy was 100 statuses.
    fn status_of(&self, uid: &str) -> Option<Value> {
        self.runtime
            .views
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .map(|view| status_patch(&view.status))
    }

    /// No worker and no state left for the pod on this node.
    fn stopped_here(&self, uid: &str) -> bool {
        !self.runtime.state.pod(uid).dir.exists()
    }

    async fn send_status(&mut self, pod: &Pod, uid: &str, status: Value) -> Result<(), String> {
        if self.sent.get(uid) == Some(&status) || already_reported(pod, &status) {
            self.sent.insert(uid.to_owned(), status);
            return Ok(());
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": status,
        });
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => {
                self.sent.insert(uid.to_owned(), status);
                Ok(())
            }
            // The pod changed since the watch showed it: the watch brings the new version and
            // wakes the next round.
            Err(error) if is_status(&error, 409) => Ok(()),
            Err(error) if is_status(&error, 404) => Ok(()),
            Err(error) => Err(format!("reporting the pod's status: {error}")),
        }
    }

    async fn finish_deletion(&mut self, pod: &Pod, uid: &str) -> Result<(), String> {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), "pod stopped; deleted from the API");
                Ok(())
            }
            // Gone already, or a new pod of the same name (the uid precondition held).
            Err(error) if is_status(&error, 404) || is_status(&error, 409) => Ok(()),
            Err(error) => Err(format!("deleting the stopped pod: {error}")),
        }
    }
}

/// The runtime's status as a patch: fields it leaves out that the node owns (a sandbox
/// error's `reason` and `message`, once the error is gone) are cleared with `null`, which a
/// merge patch reads as "remove".
fn status_patch(status: &keel_api::PodStatus) -> Value {
    let mut patch = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Some(fields) = patch.as_object_mut() {
        for owned in ["reason", "message"] {
            fields.entry(owned).or_insert(Value::Null);
        }
    }
    patch
}

/// Whether the API object already carries every field of `status` (conditions compared by
/// type, as the strategic merge would apply them): a restarted daemon does not rewrite the
/// status of every pod it adopts.
fn already_reported(pod: &Pod, status: &Value) -> bool {
    let Some(current) = pod
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
    else {
        return false;
    };
    let Some(fields) = status.as_object() else {
        return false;
    };
    fields.iter().all(|(field, value)| match field.as_str() {
        "conditions" => value.as_array().is_some_and(|ours| {
            ours.iter().all(|condition| {
                current["conditions"]
                    .as_array()
                    .is_some_and(|theirs| theirs.contains(condition))
            })
        }),
        // `null` (clear the field) is reported when the field is absent.
        _ => current.get(field).unwrap_or(&Value::Null) == value,
    })
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "5"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": status,
        }))
        .unwrap_or_default()
    }

    #[test]
    fn a_status_already_in_the_object_is_not_sent_again() {
        let ours = json!({"phase": "Running", "podIP": "10.244.0.5",
            "conditions": [{"type": "Ready", "status": "True"}]});
        let stored = pod(json!({"phase": "Running", "podIP": "10.244.0.5",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}));
        assert!(already_reported(&stored, &ours));
    }

    #[test]
    fn a_changed_field_or_condition_is_sent() {
        let stored = pod(json!({"phase": "Running", "podIP": "10.244.0.5",
            "conditions": [{"type": "Ready", "status": "True"}]}));
        let not_ready =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
        assert!(!already_reported(&stored, &not_ready));
        let failed = json!({"phase": "Failed"});
        assert!(!already_reported(&stored, &failed));
        assert!(
            !already_reported(&pod(Value::Null), &failed),
            "no status yet"
        );
    }
}
