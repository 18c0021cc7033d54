use super::*;
use crate::node_info::ClusterSummary;
use crate::testing::{node, pod, with_required_anti_affinity};

fn bound(name: &str, node_name: &str, cpu: &str) -> Pod {
    let mut pod = pod().name(name).req(&[("cpu", cpu)]).node(node_name).obj();
    pod.metadata.namespace = Some("default".into());
    pod
}

fn pending(name: &str, cpu: &str) -> Pod {
    let mut pod = pod().name(name).req(&[("cpu", cpu)]).obj();
    pod.metadata.namespace = Some("default".into());
    pod
}

fn cpu_node(name: &str) -> Node {
    node(name).capacity(&[("cpu", "4"), ("pods", "10")]).obj()
}

#[test]
fn assumed_pods_count_on_their_node_until_forgotten() {
    let mut cache = Cache::new();
    cache.upsert_node(cpu_node("a")).expect("node");
    cache.assume(pending("p", "1"), "a").expect("assume");
    assert!(cache.is_assumed("default/p"));
    assert_eq!(cache.node("a").expect("a").requested.milli_cpu, 1000);
    assert_eq!(
        cache.assume(pending("p", "1"), "a"),
        Err(CacheError::AlreadyCounted("default/p".into()))
    );
    cache.forget("default/p");
    assert_eq!(cache.node("a").expect("a").requested.milli_cpu, 0);
    assert_eq!(cache.pod_count(), 0);
}

#[test]
fn the_watch_confirms_an_assumption_and_forget_then_leaves_it() {
    let mut cache = Cache::new();
    cache.upsert_node(cpu_node("a")).expect("node");
    cache.assume(pending("p", "1"), "a").expect("assume");
    cache.upsert_bound_pod(bound("p", "a", "1")).expect("bound");
    assert!(!cache.is_assumed("default/p"));
    cache.forget("default/p");
    assert_eq!(cache.node("a").expect("a").requested.milli_cpu, 1000);
    assert_eq!(cache.node("a").expect("a").pods.len(), 1);
}

#[test]
fn a_confirmation_of_the_same_spec_replaces_the_object_and_keeps_the_counts() {
    let mut cache = Cache::new();
    cache.upsert_node(cpu_node("a")).expect("node");
    // As the scheduling loop assumes: the pod with `spec.nodeName` set to its node.
    cache.assume(bound("p", "a", "1"), "a").expect("assume");
    cache.assume(bound("q", "a", "1"), "a").expect("assume");
    let mut confirmed = bound("p", "a", "1");
    confirmed.metadata.resource_version = Some("7".into());
    cache.upsert_bound_pod(confirmed).expect("bound");
    assert!(!cache.is_assumed("default/p") && cache.is_assumed("default/q"));
    let node = cache.node("a").expect("a");
    assert_eq!((node.requested.milli_cpu, node.pods.len()), (2000, 2));
    let stored = node.pods.iter().find(|p| pod_key(p) == "default/p");
    assert_eq!(
        stored.and_then(|p| p.metadata.resource_version.as_deref()),
        Some("7"),
        "the API's object is the one kept"
    );
    // A confirmation with another spec is counted anew.
    cache.upsert_bound_pod(bound("q", "a", "2")).expect("bound");
    let node = cache.node("a").expect("a");
    assert_eq!((node.requested.milli_cpu, node.pods.len()), (3000, 2));
    assert_eq!(cache.summary(), ClusterSummary::of(cache.nodes()));
}

#[test]
fn assuming_on_an_unknown_node_is_refused() {
    let mut cache = Cache::new();
    assert_eq!(
        cache.assume(pending("p", "1"), "ghost"),
        Err(CacheError::UnknownNode("ghost".into()))
    );
}

#[test]
fn pods_seen_before_their_node_are_counted_when_it_arrives() {
    let mut cache = Cache::new();
    cache
        .upsert_bound_pod(bound("p", "late", "2"))
        .expect("bound");
    assert_eq!(cache.node_of("default/p"), Some("late"));
    cache.upsert_node(cpu_node("late")).expect("node");
    assert_eq!(cache.node("late").expect("late").requested.milli_cpu, 2000);
    // Removing the node keeps the pod counted, waiting for the node to return.
    cache.remove_node("late");
    assert_eq!(cache.node_count(), 0);
    cache.upsert_node(cpu_node("late")).expect("node");
    assert_eq!(cache.node("late").expect("late").requested.milli_cpu, 2000);
    assert!(cache.remove_pod("default/p").is_some());
    assert_eq!(cache.node("late").expect("late").requested.milli_cpu, 0);
}

#[test]
fn a_pod_moved_to_another_node_leaves_the_first() {
    let mut cache = Cache::new();
    cache.upsert_node(cpu_node("a")).expect("node");
    cache.upsert_node(cpu_node("b")).expect("node");
    cache.upsert_bound_pod(bound("p", "a", "1")).expect("bound");
    cache.upsert_bound_pod(bound("p", "b", "1")).expect("bound");
    assert_eq!(cache.node("a").expect("a").requested.milli_cpu, 0);
    assert_eq!(cache.node("b").expect("b").requested.milli_cpu, 1000);
}

#[test]
fn removing_a_node_keeps_the_index_of_the_others() {
    let mut cache = Cache::new();
    for name in ["a", "b", "c"] {
        cache.upsert_node(cpu_node(name)).expect("node");
    }
    cache.remove_node("a");
    assert_eq!(cache.node("c").expect("c").name(), "c");
    assert_eq!(cache.node("b").expect("b").name(), "b");
    assert!(cache.node("a").is_none());
}

#[test]
fn a_node_with_unreadable_allocatable_is_refused_and_the_old_kept() {
    let mut cache = Cache::new();
    cache.upsert_node(cpu_node("a")).expect("node");
    let bad = node("a").capacity(&[("cpu", "lots")]).obj();
    assert!(cache.upsert_node(bad).is_err());
    assert_eq!(cache.node("a").expect("a").allocatable.milli_cpu, 4000);
    let fresh_bad = node("b").capacity(&[("memory", "1Qi")]).obj();
    assert!(cache.upsert_node(fresh_bad).is_err());
    assert!(cache.node("b").is_none());
}

#[test]
fn a_pod_with_unreadable_requests_is_refused() {
    let mut cache = Cache::new();
    cache.upsert_node(cpu_node("a")).expect("node");
    assert!(cache.upsert_bound_pod(bound("p", "a", "-x")).is_err());
    assert!(cache.upsert_bound_pod(bound("q", "ghost", "-x")).is_err());
    assert_eq!(cache.pod_count(), 0);
}

/// The summary the cache keeps for the plugins that would walk every node is the one counted
/// from scratch, after every kind of change: nodes added, changed and removed, pods assumed,
/// confirmed elsewhere, left waiting for their node and deleted.
#[test]
fn the_cluster_summary_follows_every_change() {
    let mut cache = Cache::new();
    let expect = |cache: &Cache, affinity: usize, anti_affinity: usize, images: usize| {
        assert_eq!(cache.summary(), ClusterSummary::of(cache.nodes()));
        assert_eq!(
            cache.summary(),
            ClusterSummary {
                nodes_with_pod_affinity: affinity,
                nodes_with_required_anti_affinity: anti_affinity,
                nodes_with_images: images,
            }
        );
        assert_eq!(cache.view().summary, Some(cache.summary()));
    };
    cache.upsert_node(cpu_node("a")).expect("a");
    let with_image = node("b")
        .capacity(&[("cpu", "4"), ("pods", "10")])
        .image(&["registry.k8s.io/pause:3.10"], 300_000)
        .obj();
    cache.upsert_node(with_image).expect("b");
    expect(&cache, 0, 0, 1);

    cache
        .assume(with_required_anti_affinity(pending("x", "1"), "x"), "a")
        .expect("assume");
    cache.assume(pending("plain", "1"), "a").expect("assume");
    expect(&cache, 1, 1, 1);
    // The watch says it went to b: it moves, and a no longer counts.
    cache
        .upsert_bound_pod(with_required_anti_affinity(bound("x", "b", "1"), "x"))
        .expect("bound");
    expect(&cache, 1, 1, 1);
    assert_eq!(cache.node_of("default/x"), Some("b"));
    // b's images are gone in an update; its pod stays.
    cache.upsert_node(cpu_node("b")).expect("b changed");
    expect(&cache, 1, 1, 0);
    // b is deleted with its pod, which waits for it; b comes back and counts it again.
    cache.remove_node("b");
    expect(&cache, 0, 0, 0);
    cache.upsert_node(cpu_node("b")).expect("b again");
    expect(&cache, 1, 1, 0);
    cache.remove_pod("default/x").expect("x counted");
    cache.forget("default/plain");
    expect(&cache, 0, 0, 0);
}
