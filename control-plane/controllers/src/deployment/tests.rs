//! The cases of kube's `deployment_util_test.go`, `rolling_test.go`, `sync_test.go` and
//! `progress_test.go`, against the pure part; the fixtures are kube's
//! (`deployment_controller_test.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

mod conditions;
mod progress;
mod rolling;
mod scale;
mod template;
mod util;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn at(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

fn int(n: i32) -> IntOrString {
    IntOrString::Int(n)
}

fn percent(text: &str) -> IntOrString {
    IntOrString::String(text.to_string())
}

/// kube's `newDeployment`: RollingUpdate with maxSurge and maxUnavailable 0 unless given,
/// template labels the selector's, one `foo/bar` container.
fn new_deployment(
    name: &str,
    replicas: i32,
    revision_history_limit: Option<i32>,
    max_surge: Option<IntOrString>,
    max_unavailable: Option<IntOrString>,
    selector: &[(&str, &str)],
) -> Deployment {
    let selector = (!selector.is_empty()).then(|| labels(selector));
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("default".to_string()),
            uid: Some(format!("uid-{name}")),
            annotations: Some(BTreeMap::new()),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(max_surge.unwrap_or(int(0))),
                    max_unavailable: Some(max_unavailable.unwrap_or(int(0))),
                }),
            }),
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: selector.clone(),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: selector,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        image: Some("foo/bar".to_string()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            revision_history_limit,
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// kube's `rs`: a bare ReplicaSet with a size and a creation time.
fn rs(
    name: &str,
    replicas: i32,
    selector: &[(&str, &str)],
    created: Option<Timestamp>,
) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("default".to_string()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: created.map(Time),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: (!selector.is_empty()).then(|| labels(selector)),
                ..LabelSelector::default()
            },
            template: Some(PodTemplateSpec::default()),
            ..ReplicaSetSpec::default()
        },
        status: None,
    }
}

/// kube's `newReplicaSet`: `d`'s template and selector, `d` as controller.
fn new_replica_set(d: &Deployment, name: &str, replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("default".to_string()),
            uid: Some(format!("uid-{name}")),
            labels: d.spec.selector.match_labels.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".to_string(),
                kind: "Deployment".to_string(),
                name: d.metadata.name.clone().unwrap_or_default(),
                uid: d.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: d.spec.selector.clone(),
            template: Some(d.spec.template.clone()),
            ..ReplicaSetSpec::default()
        },
        status: None,
    }
}

/// kube's `newRSWithStatus`.
fn new_rs_with_status(
    name: &str,
    spec_replicas: i32,
    status_replicas: i32,
    selector: &[(&str, &str)],
) -> ReplicaSet {
    let d = new_deployment(name, spec_replicas, None, None, None, selector);
    let mut rs = new_replica_set(&d, name, spec_replicas);
    rs.status = Some(ReplicaSetStatus {
        replicas: status_replicas,
        ..ReplicaSetStatus::default()
    });
    rs
}

/// kube's `newRSWithAvailable`.
fn rs_with_available(name: &str, spec: i32, status: i32, available: i32) -> ReplicaSet {
    let mut rs = rs(name, spec, &[], None);
    rs.status = Some(ReplicaSetStatus {
        replicas: status,
        available_replicas: Some(available),
        ..ReplicaSetStatus::default()
    });
    rs
}

fn with_available(mut rs: ReplicaSet, available: i32) -> ReplicaSet {
    let status = rs.status.get_or_insert_with(ReplicaSetStatus::default);
    status.available_replicas = Some(available);
    rs
}

fn refs(rss: &[ReplicaSet]) -> Vec<&ReplicaSet> {
    rss.iter().collect()
}

/// The events of `sync.go` and `syncDeployment`.
mod recorded_events {
    use keel_events::EventType;

    use crate::api_errors::{refused, refused_terminating};
    use crate::deployment::events;

    #[test]
    fn scaling_says_which_way_from_and_to() {
        let up = events::scaled("web-5d9f", 0, 3).expect("scaled");
        assert_eq!(up.type_, EventType::Normal);
        assert_eq!(up.reason, "ScalingReplicaSet");
        assert_eq!(up.message, "Scaled up replica set web-5d9f from 0 to 3");
        let down = events::scaled("web-7c4b", 3, 1).expect("scaled");
        assert_eq!(down.message, "Scaled down replica set web-7c4b from 3 to 1");
        // Annotations refreshed at the same size: no event.
        assert_eq!(events::scaled("web-5d9f", 2, 2), None);
    }

    #[test]
    fn a_new_replica_set_is_a_scale_up_from_zero() {
        let created = events::created("web-5d9f", 5, false).expect("created");
        assert_eq!(
            created.message,
            "Scaled up replica set web-5d9f from 0 to 5"
        );
        // Found already there (a lost reply, a slow cache), or created empty: nothing.
        assert_eq!(events::created("web-5d9f", 5, true), None);
        assert_eq!(events::created("web-5d9f", 0, false), None);
    }

    #[test]
    fn a_refused_replica_set_is_a_warning_unless_retried_or_pointless() {
        let quota = refused(403, "Forbidden", "exceeded quota: rs");
        let failed = events::create_failed("web-5d9f", &quota).expect("a Warning");
        assert_eq!(failed.type_, EventType::Warning);
        assert_eq!(failed.reason, "ReplicaSetCreateError");
        assert_eq!(
            failed.message,
            "Failed to create new replica set \"web-5d9f\": exceeded quota: rs"
        );
        let taken = refused(
            409,
            "AlreadyExists",
            "replicasets \"web-5d9f\" already exists",
        );
        assert_eq!(events::create_failed("web-5d9f", &taken), None);
        assert_eq!(
            events::create_failed("web-5d9f", &refused_terminating()),
            None
        );
    }

    #[test]
    fn selecting_all_is_kubes_warning() {
        let note = events::selecting_all();
        assert_eq!(note.type_, EventType::Warning);
        assert_eq!(note.reason, "SelectingAll");
        assert_eq!(
            note.message,
            "This deployment is selecting all pods. A non-empty selector is required."
        );
    }
}
