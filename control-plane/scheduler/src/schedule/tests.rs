use std::sync::Arc;

use super::*;
use crate::config::{PluginEnv, SchedulerConfig};
use crate::testing::{node, node_info, pod, view};

/// kube-scheduler's `TestNumFeasibleNodesToFind`.
#[test]
fn num_feasible_nodes_to_find_matches_kube() {
    let cases = [
        (0, 10, 10),
        (40, 10, 10),
        (0, 1000, 420),
        (40, 1000, 400),
        (0, 6000, 300),
        (20, 6000, 1200),
        (100, 5000, 5000),
        (0, 5000, 500),
        (1, 5000, 100),
    ];
    for (percentage, nodes, want) in cases {
        assert_eq!(
            num_feasible_nodes_to_find(percentage, nodes),
            want,
            "{percentage}% of {nodes}"
        );
    }
}

fn profile() -> crate::config::Profile {
    let config = SchedulerConfig::default_config(&PluginEnv::default());
    config
        .profiles
        .into_iter()
        .next()
        .expect("the default profile")
}

fn nodes(count: usize, cpu: &str) -> Vec<NodeInfo> {
    (0..count)
        .map(|i| {
            node_info(
                node(&format!("n{i}"))
                    .capacity(&[("cpu", cpu), ("memory", "8Gi"), ("pods", "110")])
                    .obj(),
                Vec::new(),
            )
        })
        .collect()
}

fn pending(cpu: &str) -> Pod {
    let mut pod = pod().name("p").req(&[("cpu", cpu)]).obj();
    pod.metadata.namespace = Some("default".into());
    pod
}

#[test]
fn the_fitting_node_is_chosen() {
    let mut cluster = nodes(3, "1");
    cluster[1] = node_info(
        node("big")
            .capacity(&[("cpu", "8"), ("memory", "8Gi"), ("pods", "110")])
            .obj(),
        Vec::new(),
    );
    let mut cursor = Cursor::new(7);
    let result = schedule_pod(
        &profile(),
        0,
        &pending("2"),
        view(&cluster),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect("fits on big");
    assert_eq!(result.node, "big");
    assert_eq!(result.feasible_nodes, 1);
    assert_eq!(result.evaluated_nodes, 3);
}

/// ImageLocality skips the pod when the summary says no node reports images, and still
/// ranks the nodes when one does: among equal nodes, the one holding the pod's big image wins
/// every time.
#[test]
fn the_node_holding_the_image_wins_when_images_are_reported() {
    let capacity = [("cpu", "8"), ("memory", "8Gi"), ("pods", "110")];
    let mut cluster: Vec<NodeInfo> = (0..4)
        .map(|i| node_info(node(&format!("n{i}")).capacity(&capacity).obj(), Vec::new()))
        .collect();
    let mut with_image = pending("1");
    with_image.spec.get_or_insert_default().containers[0].image = Some("big/app:1".into());
    assert_eq!(view(&cluster).summary.map(|s| s.nodes_with_images), Some(0));
    cluster[2] = node_info(
        node("n2")
            .capacity(&capacity)
            .image(&["big/app:1"], 900 * 1024 * 1024)
            .obj(),
        Vec::new(),
    );
    assert_eq!(view(&cluster).summary.map(|s| s.nodes_with_images), Some(1));
    let mut cursor = Cursor::new(3);
    for _ in 0..20 {
        let result = schedule_pod(
            &profile(),
            0,
            &with_image,
            view(&cluster),
            &Nominator::new(),
            &mut cursor,
            None,
        )
        .expect("fits");
        assert_eq!(result.node, "n2");
    }
}

#[test]
fn when_nothing_fits_the_message_counts_each_reason() {
    let mut cluster = nodes(3, "1");
    cluster.push(node_info(
        node("gpu")
            .capacity(&[("cpu", "8"), ("memory", "8Gi"), ("pods", "110")])
            .taint("dedicated", "gpu", "NoSchedule")
            .obj(),
        Vec::new(),
    ));
    let mut cursor = Cursor::new(7);
    let error = schedule_pod(
        &profile(),
        0,
        &pending("2"),
        view(&cluster),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect_err("nothing fits");
    let ScheduleError::Unschedulable(fit) = &error else {
        panic!("not a fit error: {error}");
    };
    assert_eq!(
        fit.message(),
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
    );
    // A taint cannot be evicted away; too little CPU (with nothing running) neither.
    assert_eq!(fit.resolvable_nodes().count(), 0);
}

#[test]
fn no_nodes_is_its_own_error() {
    let mut cursor = Cursor::new(1);
    assert_eq!(
        schedule_pod(
            &profile(),
            0,
            &pending("1"),
            view(&[]),
            &Nominator::new(),
            &mut cursor,
            None
        ),
        Err(ScheduleError::NoNodes)
    );
    assert_eq!(
        ScheduleError::NoNodes.to_string(),
        "no nodes available to schedule pods"
    );
}

#[test]
fn big_clusters_are_searched_in_turns() {
    let cluster = nodes(200, "4");
    let mut cursor = Cursor::new(3);
    let result = schedule_pod(
        &profile(),
        0,
        &pending("1"),
        view(&cluster),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect("fits");
    // 50% - 200/125 = 49% of 200 is under the floor of 100 nodes.
    assert_eq!(result.evaluated_nodes, 100);
    assert_eq!(cursor.next_start, 100);
    let result = schedule_pod(
        &profile(),
        0,
        &pending("1"),
        view(&cluster),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect("fits");
    assert_eq!(result.evaluated_nodes, 100);
    assert_eq!(cursor.next_start, 0);
    let chosen: usize = result.node[1..].parse().expect("nN");
    assert!(
        (100..200).contains(&chosen),
        "{chosen} is in the second half"
    );
}

#[test]
fn equal_scores_are_broken_at_random() {
    let cluster = nodes(4, "4");
    let mut cursor = Cursor::new(11);
    let mut chosen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let result = schedule_pod(
            &profile(),
            0,
            &pending("1"),
            view(&cluster),
            &Nominator::new(),
            &mut cursor,
            None,
        )
        .expect("fits");
        chosen.insert(result.node);
    }
    assert_eq!(chosen.len(), 4, "every equal node gets picked: {chosen:?}");
}

#[test]
fn select_host_takes_the_highest() {
    let mut cursor = Cursor::new(5);
    assert_eq!(select_host(&[1, 9, 3], &mut cursor), 1);
    assert_eq!(select_host(&[5], &mut cursor), 0);
}

/// A plugin that cannot decide fails the cycle instead of refusing the node.
#[test]
fn a_plugin_error_fails_the_cycle() {
    struct Broken;
    impl crate::framework::FilterPlugin for Broken {
        fn name(&self) -> &'static str {
            "Broken"
        }
        fn filter(&self, _: &CycleState, _: &Pod, _: &NodeInfo) -> Status {
            Status::error("no idea")
        }
    }
    let mut profile = profile();
    profile.filters.push(Arc::new(Broken));
    let mut cursor = Cursor::new(5);
    let error = schedule_pod(
        &profile,
        0,
        &pending("1"),
        view(&nodes(2, "4")),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect_err("error");
    assert!(
        matches!(
            error,
            ScheduleError::Plugin {
                extension_point: "Filter",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn fit_error_message_with_prefilter_and_preemption() {
    let fit = FitError {
        num_all_nodes: 5,
        node_statuses: BTreeMap::new(),
        pre_filter_message: Some("pod has unresolvable quantities".into()),
        post_filter_message: Some(
            "preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
                .into(),
        ),
    };
    assert_eq!(
        fit.message(),
        "0/5 nodes are available: pod has unresolvable quantities. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
    );
}

/// kube's `evaluateNominatedNode`: a pod nominated to a node that still fits it goes there,
/// judged alone, though scoring would have preferred an emptier node.
#[test]
fn the_nominated_node_is_tried_first_and_taken_when_it_fits() {
    let mut cluster = nodes(3, "4");
    let mut busy = pending("3");
    busy.metadata.name = Some("busy".into());
    busy.spec.get_or_insert_default().node_name = Some("n1".into());
    cluster[1] = node_info(cluster[1].node().clone(), vec![busy]);
    let mut nominated = pending("1");
    nominated.status.get_or_insert_default().nominated_node_name = Some("n1".into());
    let mut cursor = Cursor::new(7);
    let result = schedule_pod(
        &profile(),
        0,
        &nominated,
        view(&cluster),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect("fits");
    assert_eq!(
        result,
        ScheduleResult {
            node: "n1".into(),
            evaluated_nodes: 1,
            feasible_nodes: 1
        }
    );
    // The same pod without the nomination goes to an empty node.
    let free = schedule_pod(
        &profile(),
        0,
        &pending("1"),
        view(&cluster),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect("fits");
    assert_ne!(free.node, "n1");
}

/// A nominated node that no longer fits is passed over: the full search follows.
#[test]
fn a_nominated_node_that_no_longer_fits_is_passed_over() {
    let mut cluster = nodes(3, "4");
    let mut busy = pending("4");
    busy.metadata.name = Some("busy".into());
    busy.spec.get_or_insert_default().node_name = Some("n1".into());
    cluster[1] = node_info(cluster[1].node().clone(), vec![busy]);
    let mut nominated = pending("1");
    nominated.status.get_or_insert_default().nominated_node_name = Some("n1".into());
    let mut cursor = Cursor::new(7);
    let result = schedule_pod(
        &profile(),
        0,
        &nominated,
        view(&cluster),
        &Nominator::new(),
        &mut cursor,
        None,
    )
    .expect("fits elsewhere");
    assert_ne!(result.node, "n1");
    assert_eq!(result.evaluated_nodes, 3);
    assert_eq!(result.feasible_nodes, 2);
}

/// Scores a node by the number in its name: different on every node, so a score that lands
/// on the wrong node shows.
struct ByName {
    factor: i64,
}

impl ScorePlugin for ByName {
    fn name(&self) -> &'static str {
        "ByName"
    }
    fn score(&self, _: &CycleState, _: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let number: i64 = node.name()[1..]
            .parse()
            .map_err(|_| Status::error("unnumbered"))?;
        Ok(number * self.factor % (MAX_NODE_SCORE + 1))
    }
}

/// The batched scores, in one run and in uneven parallel runs, equal every plugin's
/// node-by-node scores, normalized and weighted: the default profile's plugins (over nodes of
/// different sizes, so their scores differ) and two by-name plugins, one with the default
/// `score_nodes`.
#[test]
fn batched_scores_equal_node_by_node_scores_in_one_run_and_in_parallel_runs() {
    let mut profile = profile();
    for (factor, weight) in [(7, 2), (13, 1)] {
        profile.scores.push(crate::config::WeightedScore {
            plugin: Arc::new(ByName { factor }),
            weight,
        });
    }
    let pod = pending("500m");
    for count in [5, PARALLEL_MIN_NODES + 1001] {
        let cluster: Vec<NodeInfo> = (0..count)
            .map(|i| {
                let cpu = format!("{}", 1 + i % 7);
                let memory = format!("{}Gi", 1 + i % 5);
                node_info(
                    node(&format!("n{i}"))
                        .capacity(&[("cpu", &cpu), ("memory", &memory), ("pods", "110")])
                        .obj(),
                    Vec::new(),
                )
            })
            .collect();
        let feasible: Vec<&NodeInfo> = cluster.iter().collect();
        let mut state = CycleState::new();
        let scores =
            pre_score(&profile, &pod, &cluster, &feasible, &mut state, None).expect("pre-scores");
        assert!(scores.len() >= 4, "{} plugins score", scores.len());
        let mut want = vec![0i64; count];
        for weighted in &scores {
            let mut column: Vec<i64> = feasible
                .iter()
                .map(|node| weighted.plugin.score(&state, &pod, node).expect("scores"))
                .collect();
            weighted.plugin.normalize(&state, &pod, &mut column);
            for (total, score) in want.iter_mut().zip(column) {
                *total += score * weighted.weight;
            }
        }
        // Three threads: runs of 1,017, 1,017 and 1,015 nodes at the larger count.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("a pool");
        let got = pool
            .install(|| score(&scores, &pod, &feasible, &state, None))
            .expect("scores");
        assert_eq!(got, want, "{count} nodes");
        assert!(
            got.windows(2).any(|pair| pair[0] != pair[1]),
            "the totals differ from node to node"
        );
    }
}
