//! What the reconciler leaves out and leaves alone: pods and slices that do not count,
//! services it does not manage, and the minimal-churn property (one pod changes, one slice is
//! rewritten, at that endpoint only).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::test_support::{
    apply, counts, labels, len, new_empty_slice, new_pod, new_service, pods, ready_condition, run,
    service_ports, spec_mut, with_endpoints,
};

#[test]
fn pods_that_do_not_count_are_left_out() {
    let svc = new_service("foo");
    let mut succeeded = new_pod(1, true, false);
    let mut failed = new_pod(2, true, false);
    let mut no_ip = new_pod(3, true, false);
    let mut elsewhere = new_pod(4, true, false);
    let mut unselected = new_pod(5, true, false);
    for (pod, phase) in [(&mut succeeded, "Succeeded"), (&mut failed, "Failed")] {
        if let Some(status) = pod.status.as_mut() {
            status.phase = Some(phase.into());
        }
    }
    if let Some(status) = no_ip.status.as_mut() {
        status.pod_ip = None;
        status.pod_ips = None;
    }
    elsewhere.metadata.namespace = Some("other".into());
    unselected.metadata.labels = Some(labels(&[("foo", "baz")]));
    let plan = run(
        &svc,
        &[succeeded, failed, no_ip, elsewhere, unselected],
        &[],
    );
    assert_eq!(counts(&plan), (1, 0, 0));
    assert_eq!(len(&plan.create[0]), 0);
}

#[test]
fn services_without_selector_or_external_name_are_left_alone() {
    let pods = pods(3);
    let mut no_selector = new_service("foo");
    spec_mut(&mut no_selector).selector = None;
    let stray = new_empty_slice(1, service_ports("foo"), &no_selector);
    assert!(run(&no_selector, &pods, std::slice::from_ref(&stray)).is_empty());
    let mut empty_selector = new_service("foo");
    spec_mut(&mut empty_selector).selector = Some(BTreeMap::new());
    assert!(run(&empty_selector, &pods, &[]).is_empty());
    let mut external = new_service("foo");
    spec_mut(&mut external).type_ = Some("ExternalName".into());
    assert!(run(&external, &pods, &[]).is_empty());
}

#[test]
fn slices_pending_deletion_are_ignored() {
    let svc = new_service("foo");
    let pods = pods(3);
    let mut going = with_endpoints(new_empty_slice(1, service_ports("foo"), &svc), &pods, &svc);
    going.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let plan = run(&svc, &pods, &[going]);
    assert_eq!(counts(&plan), (1, 0, 0));
}

#[test]
fn terminating_pods_stay_as_not_ready() {
    let svc = new_service("foo");
    let plan = run(&svc, &[new_pod(1, true, true)], &[]);
    let endpoint = plan.create[0]
        .endpoints
        .clone()
        .unwrap_or_default()
        .remove(0);
    let conditions = endpoint.conditions.unwrap_or_default();
    assert_eq!(
        (conditions.ready, conditions.serving, conditions.terminating),
        (Some(false), Some(true), Some(true))
    );
}

/// One pod changes: only the slice holding it is rewritten, only at that endpoint.
#[test]
fn minimal_churn() {
    let svc = new_service("foo");
    let mut pods = pods(250);
    let slices = apply(&[], &run(&svc, &pods, &[]));
    assert!(run(&svc, &pods, &slices).is_empty());

    let holder = |slices: &[EndpointSlice], pod: &str| -> Option<String> {
        slices
            .iter()
            .find(|s| {
                s.endpoints
                    .iter()
                    .flatten()
                    .any(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some(pod))
            })
            .and_then(|s| s.metadata.name.clone())
    };

    // Readiness of pod7 flips.
    let mut flipped = pods.clone();
    if let Some(status) = flipped[7].status.as_mut() {
        status.conditions = Some(vec![ready_condition(false)]);
    }
    let plan = run(&svc, &flipped, &slices);
    assert_eq!(counts(&plan), (0, 1, 0));
    let updated = &plan.update[0];
    assert_eq!(updated.metadata.name, holder(&slices, "pod7"));
    let before = slices
        .iter()
        .find(|s| s.metadata.name == updated.metadata.name);
    let before = before.and_then(|s| s.endpoints.clone()).unwrap_or_default();
    let after = updated.endpoints.clone().unwrap_or_default();
    assert_eq!(before.len(), after.len());
    let differing: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert_eq!(differing.len(), 1);

    // pod42 goes.
    let without: Vec<Pod> = pods
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some("pod42"))
        .cloned()
        .collect();
    let plan = run(&svc, &without, &slices);
    assert_eq!(counts(&plan), (0, 1, 0));
    assert_eq!(plan.update[0].metadata.name, holder(&slices, "pod42"));

    // A new pod joins the slice with room, no new slice.
    pods.push(new_pod(250, true, false));
    let plan = run(&svc, &pods, &slices);
    assert_eq!(counts(&plan), (0, 1, 0));
    assert_eq!(len(&plan.update[0]), 51);
}

/// A slice whose pods all left is deleted; when none are left the last becomes the placeholder.
#[test]
fn emptied_slices_are_deleted() {
    let svc = new_service("foo");
    let pods = pods(250);
    let slices = apply(&[], &run(&svc, &pods, &[]));
    let small = slices.iter().find(|s| len(s) == 50).cloned();
    let small_pods: Vec<String> = small
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone()))
        .collect();
    let rest: Vec<Pod> = pods
        .iter()
        .filter(|p| !small_pods.contains(&p.metadata.name.clone().unwrap_or_default()))
        .cloned()
        .collect();
    let plan = run(&svc, &rest, &slices);
    assert_eq!(counts(&plan), (0, 0, 1));
    assert_eq!(
        plan.delete[0].metadata.name,
        small.and_then(|s| s.metadata.name)
    );

    let plan = run(&svc, &[], &slices);
    assert_eq!(counts(&plan), (0, 1, 2));
    assert_eq!(plan.update[0].endpoints, Some(Vec::new()));
    assert_eq!(plan.update[0].ports, Some(Vec::new()));
}

/// The same inputs in another order give the same plan.
#[test]
fn plans_are_deterministic() {
    let svc = new_service("foo");
    let pods = pods(250);
    let mut reversed = pods.clone();
    reversed.reverse();
    assert_eq!(run(&svc, &pods, &[]), run(&svc, &reversed, &[]));
}
