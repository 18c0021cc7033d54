use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::text::encode;

use super::*;
use crate::config::{PluginEnv, SchedulerConfig};
use crate::core::{Core, Outcome};
use crate::testing::{node, pod};

/// The registry's text, as /metrics serves it.
fn scrape(metrics: &Metrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).expect("encodes");
    text
}

/// The value of the sample line `name{labels}`.
fn sample<'t>(text: &'t str, series: &str) -> Option<&'t str> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
}

/// Ten pods on two nodes: every cycle reports its extension points; only the first of the
/// ten times each plugin call (kube's 10% sample), with kube's buckets.
#[test]
fn plugin_and_extension_point_durations_are_reported_as_kube_scheduler_does() {
    let metrics = Arc::new(Metrics::default());
    let config = SchedulerConfig::default_config(&PluginEnv::default());
    let mut core = Core::new(config, Some(metrics.clone()), 42);
    let now = Instant::now();
    for name in ["a", "b"] {
        core.upsert_node(
            node(name)
                .capacity(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")])
                .obj(),
            now,
        );
    }
    for i in 0..10 {
        let mut pod = pod().name(&format!("p{i}")).req(&[("cpu", "100m")]).obj();
        pod.metadata.namespace = Some("default".into());
        core.upsert_pod(pod, now);
    }
    for _ in 0..10 {
        assert!(matches!(
            core.schedule_next(now),
            Some(Outcome::Assumed { .. })
        ));
    }
    let text = scrape(&metrics);
    // A placed pod's attempt ends with its binding: the binder records it, not the cycle.
    assert_eq!(
        sample(
            &text,
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"}"
        ),
        None
    );
    let plugin = |name: &str, point: &str, status: &str| {
        sample(
            &text,
            &format!(
                "scheduler_plugin_execution_duration_seconds_count{{plugin=\"{name}\",extension_point=\"{point}\",status=\"{status}\"}}"
            ),
        )
    };
    // One sampled cycle: each filter ran on both nodes, each score on both feasible ones.
    assert_eq!(
        plugin("NodeResourcesFit", "PreFilter", "Success"),
        Some("1")
    );
    assert_eq!(plugin("NodeResourcesFit", "Filter", "Success"), Some("2"));
    assert_eq!(plugin("TaintToleration", "Filter", "Success"), Some("2"));
    assert_eq!(plugin("NodeResourcesFit", "Score", "Success"), Some("2"));
    assert_eq!(
        plugin("NodeResourcesFit", "ScoreExtensionNormalize", "Success"),
        Some("1")
    );
    // A pod without spread constraints: the plugin skips itself, and says so.
    assert_eq!(plugin("PodTopologySpread", "PreFilter", "Skip"), Some("1"));
    let point = |name: &str| {
        sample(
            &text,
            &format!(
                "scheduler_framework_extension_point_duration_seconds_count{{extension_point=\"{name}\",status=\"Success\",profile=\"default-scheduler\"}}"
            ),
        )
    };
    for name in ["PreFilter", "PreScore", "Score"] {
        assert_eq!(point(name), Some("10"), "{name}");
    }
    // kube's buckets: 20 from 10 µs by 1.5, 12 from 0.1 ms by 2 (and +Inf each).
    let bounds = |name: &str, labels: &str| -> Vec<&str> {
        text.lines()
            .filter(|line| {
                line.starts_with(&format!("{name}_bucket{{le=\"")) && line.contains(labels)
            })
            .filter_map(|line| line.split('"').nth(1))
            .collect()
    };
    let plugin_bounds = bounds(
        "scheduler_plugin_execution_duration_seconds",
        "plugin=\"NodeResourcesFit\",extension_point=\"PreFilter\",status=\"Success\"}",
    );
    assert_eq!(plugin_bounds.len(), 21, "{plugin_bounds:?}");
    assert_eq!(
        plugin_bounds.first().and_then(|b| b.parse::<f64>().ok()),
        Some(0.00001)
    );
    assert_eq!(plugin_bounds.last(), Some(&"+Inf"));
    let point_bounds = bounds(
        "scheduler_framework_extension_point_duration_seconds",
        "extension_point=\"PreFilter\",status=\"Success\",profile=\"default-scheduler\"}",
    );
    assert_eq!(point_bounds.len(), 13, "{point_bounds:?}");
    assert_eq!(
        point_bounds.first().and_then(|b| b.parse::<f64>().ok()),
        Some(0.0001)
    );
    assert_eq!(
        point_bounds.get(11).and_then(|b| b.parse::<f64>().ok()),
        Some(0.2048)
    );
    assert!(text.contains("# TYPE scheduler_plugin_execution_duration_seconds histogram"));
}
