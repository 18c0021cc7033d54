//! The namespace controller's pure part against kube's `namespaced_resources_deleter_test.go`
//! and `status_condition_utils_test.go`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Namespace, NamespaceSpec, NamespaceStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::decide::{self, Leftovers, Pass};
use super::FINALIZER_KUBERNETES;

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("a timestamp")
}

fn ago(seconds: i64) -> Timestamp {
    now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .expect("in range")
}

fn object(finalizers: &[&str]) -> ObjectMeta {
    ObjectMeta {
        name: Some("x".into()),
        finalizers: (!finalizers.is_empty())
            .then(|| finalizers.iter().map(|f| f.to_string()).collect()),
        ..ObjectMeta::default()
    }
}

fn pod(grace: Option<i64>, phase: &str) -> Pod {
    Pod {
        spec: Some(PodSpec {
            termination_grace_period_seconds: grace,
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

fn condition<'a>(
    status: &'a NamespaceStatus,
    type_: &str,
) -> &'a k8s_openapi::api::core::v1::NamespaceCondition {
    status
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == type_)
        .expect("the condition")
}

#[test]
fn nothing_left_is_no_wait() {
    assert_eq!(decide::leftovers(30, &[]), (Leftovers::default(), false));
}

#[test]
fn leftovers_wait_for_the_estimate_or_their_finalizers() {
    let left = [
        object(&["example.com/a"]),
        object(&["example.com/a", "example.com/b"]),
    ];
    let finalizers = BTreeMap::from([
        ("example.com/a".to_string(), 2),
        ("example.com/b".to_string(), 1),
    ]);
    // A grace period still running wins.
    assert_eq!(
        decide::leftovers(30, &left),
        (
            Leftovers {
                estimate: 30,
                remaining: 2,
                finalizers: finalizers.clone()
            },
            false
        )
    );
    // Finalizers get kube's default wait.
    assert_eq!(
        decide::leftovers(0, &left),
        (
            Leftovers {
                estimate: decide::FINALIZER_ESTIMATE_SECONDS,
                remaining: 2,
                finalizers
            },
            false
        )
    );
    // Neither: something unexpected keeps them.
    let (leftovers, unexpected) = decide::leftovers(0, &[object(&[])]);
    assert!(unexpected);
    assert_eq!((leftovers.estimate, leftovers.remaining), (0, 1));
}

#[test]
fn running_pods_estimate_their_longest_grace_period() {
    let pods = [
        pod(Some(30), "Running"),
        pod(Some(120), "Succeeded"),
        pod(Some(45), "Pending"),
        pod(None, "Running"),
        pod(Some(600), "Failed"),
    ];
    assert_eq!(decide::pod_grace_estimate(&pods), 45);
    assert_eq!(decide::pod_grace_estimate(&[]), 0);
    // Counted from the namespace's deletion.
    assert_eq!(decide::estimate_left(45, ago(10), now()), 45);
    assert_eq!(decide::estimate_left(45, ago(45), now()), 0);
    assert_eq!(decide::estimate_left(0, now(), now()), 0);
    assert_eq!(decide::requeue_after(45), Duration::from_secs(23));
    assert_eq!(decide::requeue_after(0), Duration::from_secs(1));
}

#[test]
fn the_kubernetes_finalizer_alone_goes() {
    let finalizers = [
        "kubernetes".to_string(),
        "z.example.com".into(),
        "a.example.com".into(),
    ];
    assert_eq!(
        decide::finalizers_without(&finalizers, FINALIZER_KUBERNETES),
        ["a.example.com", "z.example.com"]
    );
    let namespace = Namespace {
        spec: Some(NamespaceSpec {
            finalizers: Some(vec![FINALIZER_KUBERNETES.into()]),
        }),
        ..Namespace::default()
    };
    assert!(decide::has_finalizer(&namespace, FINALIZER_KUBERNETES));
    assert!(!decide::has_finalizer(
        &Namespace::default(),
        FINALIZER_KUBERNETES
    ));
}

#[test]
fn a_pass_adds_up_its_kinds() {
    let mut pass = Pass::default();
    pass.add("configmaps.", Leftovers::default(), None);
    pass.add(
        "pods.",
        Leftovers {
            estimate: 30,
            remaining: 2,
            finalizers: BTreeMap::from([("example.com/a".to_string(), 1)]),
        },
        None,
    );
    pass.add(
        "deployments.apps",
        Leftovers {
            estimate: 15,
            remaining: 1,
            finalizers: BTreeMap::from([("example.com/a".to_string(), 1)]),
        },
        Some("boom".into()),
    );
    assert_eq!(pass.estimate, 30);
    assert_eq!(
        pass.remaining,
        BTreeMap::from([
            ("deployments.apps".to_string(), 1),
            ("pods.".to_string(), 2)
        ])
    );
    assert_eq!(
        pass.finalizers,
        BTreeMap::from([("example.com/a".to_string(), 2)])
    );
    assert_eq!(
        pass.error_message().as_deref(),
        Some("Failed to delete all resource types, 1 remaining: boom")
    );
    assert_eq!(Pass::default().error_message(), None);
}

#[test]
fn conditions_are_set_as_kube_sets_them() {
    let mut status = NamespaceStatus::default();
    let mut pass = Pass::default();
    pass.add(
        "pods.",
        Leftovers {
            estimate: 30,
            remaining: 2,
            finalizers: BTreeMap::new(),
        },
        None,
    );
    assert!(decide::update_conditions(&mut status, &pass, ago(60)));
    assert_eq!(status.conditions.as_ref().map(Vec::len), Some(5));
    let remaining = condition(&status, decide::CONTENT_REMAINING);
    assert_eq!(remaining.status, "True");
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: pods. has 2 resource instances")
    );
    let content = condition(&status, decide::DELETION_CONTENT_FAILURE);
    assert_eq!(content.status, "False");
    assert_eq!(content.reason.as_deref(), Some("ContentDeleted"));

    // The same again changes nothing.
    assert!(!decide::update_conditions(&mut status, &pass, ago(30)));

    // All gone: the condition flips, with a new transition time.
    assert!(decide::update_conditions(
        &mut status,
        &Pass::default(),
        now()
    ));
    let remaining = condition(&status, decide::CONTENT_REMAINING);
    assert_eq!(remaining.status, "False");
    assert_eq!(remaining.reason.as_deref(), Some("ContentRemoved"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("All content successfully removed")
    );
    assert_eq!(
        remaining.last_transition_time.as_ref().map(|t| t.0),
        Some(now())
    );
    // One that did not flip keeps its time.
    let content = condition(&status, decide::DELETION_CONTENT_FAILURE);
    assert_eq!(
        content.last_transition_time.as_ref().map(|t| t.0),
        Some(ago(60))
    );
}

#[test]
fn failures_show_in_their_conditions() {
    let pass = Pass {
        discovery_error: Some("no discovery".into()),
        content_errors: vec!["z failed".into(), "a failed".into()],
        finalizers: BTreeMap::from([("example.com/b".to_string(), 3)]),
        ..Pass::default()
    };
    let mut status = NamespaceStatus::default();
    decide::update_conditions(&mut status, &pass, now());
    let discovery = condition(&status, decide::DELETION_DISCOVERY_FAILURE);
    assert_eq!(
        (discovery.status.as_str(), discovery.reason.as_deref()),
        ("True", Some("DiscoveryFailed"))
    );
    assert_eq!(
        condition(&status, decide::DELETION_CONTENT_FAILURE)
            .message
            .as_deref(),
        Some("Failed to delete all resource types, 2 remaining: a failed, z failed")
    );
    assert_eq!(
        condition(&status, decide::FINALIZERS_REMAINING).message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: example.com/b in 3 resource instances")
    );
    assert_eq!(
        condition(&status, decide::DELETION_GV_PARSING_FAILURE).status,
        "False"
    );
    assert_eq!(
        pass.error_message().as_deref(),
        Some("no discovery; Failed to delete all resource types, 2 remaining: a failed, z failed")
    );
}
