use super::*;
use crate::testing::pod;

fn named(name: &str, priority: i32) -> Pod {
    let mut pod = pod().name(name).obj();
    pod.metadata.namespace = Some("ns".into());
    pod.spec.get_or_insert_default().priority = Some(priority);
    pod
}

fn queue() -> SchedulingQueue {
    SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10))
}

#[test]
fn higher_priority_first_then_arrival_order() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("low-1", 0), now);
    q.add_or_update(named("high", 100), now);
    q.add_or_update(named("low-2", 0), now);
    let order: Vec<String> = std::iter::from_fn(|| q.pop(now).map(|p| p.key)).collect();
    assert_eq!(order, ["ns/high", "ns/low-1", "ns/low-2"]);
}

#[test]
fn backoff_doubles_from_one_second_to_ten() {
    let q = queue();
    let secs: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    assert_eq!(q.backoff_duration(u32::MAX), Duration::from_secs(10));
}

#[test]
fn an_unschedulable_pod_waits_for_a_cluster_event() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("p", 0), now);
    let popped = q.pop(now).expect("active");
    assert_eq!(popped.attempts, 1);
    q.unschedulable("ns/p", now);
    assert_eq!(q.counts().unschedulable, 1);
    // Time alone does not bring it back (until the five-minute flush).
    assert!(q.pop(now + Duration::from_secs(30)).is_none());
    // An event moves it back; its one-second backoff has passed by then.
    q.move_all_to_active_or_backoff(now + Duration::from_secs(30));
    let again = q.pop(now + Duration::from_secs(30)).expect("moved back");
    assert_eq!(again.attempts, 2);
}

#[test]
fn an_event_during_the_cycle_sends_the_pod_to_backoff() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("p", 0), now);
    q.pop(now).expect("active");
    q.move_all_to_active_or_backoff(now);
    q.unschedulable("ns/p", now);
    assert_eq!(q.counts().backoff, 1);
    assert_eq!(q.next_backoff_expiry(), Some(now + Duration::from_secs(1)));
    assert!(q.pop(now + Duration::from_millis(500)).is_none());
    assert!(q.pop(now + Duration::from_secs(1)).is_some());
}

#[test]
fn a_moved_pod_still_serves_its_backoff() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("p", 0), now);
    q.pop(now).expect("active");
    q.unschedulable("ns/p", now);
    q.move_all_to_active_or_backoff(now + Duration::from_millis(100));
    assert_eq!(q.counts().backoff, 1);
    assert!(q.pop(now + Duration::from_millis(200)).is_none());
    assert!(q.pop(now + Duration::from_secs(1)).is_some());
}

#[test]
fn unschedulable_pods_are_retried_after_five_minutes() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("p", 0), now);
    q.pop(now).expect("active");
    q.unschedulable("ns/p", now);
    q.flush_unschedulable_leftover(now + Duration::from_secs(299));
    assert!(q.pop(now + Duration::from_secs(299)).is_none());
    q.flush_unschedulable_leftover(now + MAX_IN_UNSCHEDULABLE);
    assert!(q.pop(now + MAX_IN_UNSCHEDULABLE).is_some());
}

#[test]
fn an_update_moves_an_unschedulable_pod_back_and_removal_forgets() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("p", 0), now);
    q.pop(now).expect("active");
    q.unschedulable("ns/p", now);
    let mut changed = named("p", 0);
    changed.metadata.labels = Some([("tier".to_string(), "x".to_string())].into());
    q.add_or_update(changed, now + Duration::from_secs(2));
    assert!(q.pop(now + Duration::from_secs(2)).is_some());
    q.remove("ns/p");
    assert!(q.is_empty());
    assert!(q.pop(now + Duration::from_secs(60)).is_none());
}

#[test]
fn a_priority_change_reorders_the_active_queue() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("a", 0), now);
    q.add_or_update(named("b", 0), now);
    q.add_or_update(named("b", 10), now);
    assert_eq!(q.pop(now).expect("b").key, "ns/b");
    assert_eq!(q.pop(now).expect("a").key, "ns/a");
    assert!(q.pop(now).is_none());
}

#[test]
fn a_refused_binding_comes_back_after_its_backoff() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(named("p", 0), now);
    let popped = q.pop(now).expect("active");
    q.scheduled("ns/p");
    assert!(q.is_empty());
    q.requeue_failed(popped, now);
    assert!(q.pop(now).is_none());
    assert_eq!(
        q.pop(now + Duration::from_secs(1))
            .expect("retried")
            .attempts,
        2
    );
}

fn gated(name: &str, gates: &[&str]) -> Pod {
    let mut pod = named(name, 0);
    pod.spec.get_or_insert_default().scheduling_gates = Some(
        gates
            .iter()
            .map(|g| k8s_openapi::api::core::v1::PodSchedulingGate {
                name: g.to_string(),
            })
            .collect(),
    );
    pod
}

/// kube's SchedulingGates PreEnqueue: a gated pod is never popped, counts as `gated`, stays
/// gated while one gate remains, is not moved by cluster events, and goes to active (ahead of
/// nothing it did not earn: by priority and arrival) once the last gate is removed.
#[test]
fn a_gated_pod_waits_until_its_last_gate_is_removed() {
    let now = Instant::now();
    let mut q = queue();
    q.add_or_update(gated("g", &["example.com/a", "example.com/b"]), now);
    assert!(q.contains("ns/g"));
    assert!(q.pop(now).is_none());
    assert_eq!(
        q.counts(),
        QueueCounts {
            gated: 1,
            ..QueueCounts::default()
        }
    );
    q.move_all_to_active_or_backoff(now);
    q.flush_unschedulable_leftover(now + MAX_IN_UNSCHEDULABLE);
    q.add_or_update(gated("g", &["example.com/b"]), now);
    assert!(q.pop(now + MAX_IN_UNSCHEDULABLE).is_none());
    let later = now + Duration::from_secs(60);
    q.add_or_update(gated("g", &[]), later);
    assert_eq!(q.counts().gated, 0);
    assert_eq!(q.counts().active, 1);
    let popped = q.pop(later).expect("released");
    assert_eq!(popped.key, "ns/g");
    assert_eq!(popped.attempts, 1);
    // The SLI counts from the release, not from the pod's creation.
    assert_eq!(popped.initial, later);
}
