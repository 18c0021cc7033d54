//! The configuration against kube-scheduler's defaults, merge rules, validation texts and the
//! examples of the Kubernetes documentation (reference/scheduling/config).

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::framework::{Code, CycleState};
use crate::plugins::node_affinity::ERR_REASON_ENFORCED;
use crate::testing::{cluster, node, node_info, pod, score_all};

const HEADER: &str =
    "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

/// kube's default filters, in kube's order, restricted to keel's plugins.
const DEFAULT_FILTERS: [&str; 9] = [
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodePorts",
    "NodeResourcesFit",
    "VolumeRestrictions",
    "PodTopologySpread",
    "InterPodAffinity",
];

/// kube's default scores and weights, in kube's order.
const DEFAULT_SCORES: [(&str, i64); 7] = [
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodeResourcesFit", 1),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

const SCORE_PLUGINS: &str = "supported values: \"TaintToleration\", \"NodeAffinity\", \
     \"NodeResourcesFit\", \"PodTopologySpread\", \"InterPodAffinity\", \
     \"NodeResourcesBalancedAllocation\", \"ImageLocality\"";

fn parse(body: &str) -> Result<SchedulerConfig, ConfigError> {
    SchedulerConfig::from_yaml(&format!("{HEADER}{body}"), &PluginEnv::default())
}

fn accepted(body: &str) -> SchedulerConfig {
    parse(body).unwrap_or_else(|error| panic!("refused: {error}\n{body}"))
}

fn refused(body: &str) -> String {
    match parse(body) {
        Ok(config) => panic!("accepted: {config:?}\n{body}"),
        Err(error) => error.to_string(),
    }
}

fn only_profile(config: &SchedulerConfig) -> &Profile {
    assert_eq!(config.profiles.len(), 1, "{config:?}");
    &config.profiles[0]
}

/// Whether a filter and a score are the same plugin instance.
fn same_instance(filter: &Arc<dyn FilterPlugin>, score: &Arc<dyn ScorePlugin>) -> bool {
    Arc::as_ptr(filter).cast::<()>() == Arc::as_ptr(score).cast::<()>()
}

fn assert_default_profile(profile: &Profile) {
    assert_eq!(profile.scheduler_name, "default-scheduler");
    assert_eq!(profile.percentage_of_nodes_to_score, None);
    assert_eq!(profile.filter_names(), DEFAULT_FILTERS);
    assert_eq!(profile.score_weights(), DEFAULT_SCORES);
}

#[test]
fn default_config_is_kubes_default_profile() {
    let config = SchedulerConfig::default_config(&PluginEnv::default());
    assert_eq!(config.parallelism, 16);
    assert_eq!(config.percentage_of_nodes_to_score, 0);
    assert_eq!(config.pod_initial_backoff, Duration::from_secs(1));
    assert_eq!(config.pod_max_backoff, Duration::from_secs(10));
    assert_default_profile(only_profile(&config));
    assert!(config.profile("default-scheduler").is_some());
    assert!(config.profile("other").is_none());
}

#[test]
fn a_file_with_only_its_kind_is_the_default_config() {
    let config = accepted("");
    assert_eq!(config.parallelism, 16);
    assert_default_profile(only_profile(&config));
    // An empty profile list and a lone unnamed profile are defaulted alike.
    assert_default_profile(only_profile(&accepted("profiles: []\n")));
    assert_default_profile(only_profile(&accepted("profiles: [{}]\n")));
}

#[test]
fn a_plugin_that_filters_and_scores_is_one_instance() {
    let config = SchedulerConfig::default_config(&PluginEnv::default());
    let profile = only_profile(&config);
    let mut shared = 0;
    for filter in &profile.filters {
        for score in &profile.scores {
            if filter.name() == score.plugin.name() {
                assert!(same_instance(filter, &score.plugin), "{}", filter.name());
                shared += 1;
            }
        }
    }
    // TaintToleration, NodeAffinity, NodeResourcesFit, PodTopologySpread, InterPodAffinity.
    assert_eq!(shared, 5);
}

#[test]
fn top_level_settings() {
    let config = accepted(
        "parallelism: 4\npercentageOfNodesToScore: 30\npodInitialBackoffSeconds: 2\n\
         podMaxBackoffSeconds: 60\n",
    );
    assert_eq!(config.parallelism, 4);
    assert_eq!(config.percentage_of_nodes_to_score, 30);
    assert_eq!(config.pod_initial_backoff, Duration::from_secs(2));
    assert_eq!(config.pod_max_backoff, Duration::from_secs(60));
}

#[test]
fn json_is_read_too() {
    let config = SchedulerConfig::from_yaml(
        "{\n\t\"apiVersion\": \"kubescheduler.config.k8s.io/v1\",\n\t\"kind\": \
         \"KubeSchedulerConfiguration\",\n\t\"parallelism\": 8,\n\t\"profiles\": \
         [{\"schedulerName\": \"json\", \"percentageOfNodesToScore\": 50}]\n}",
        &PluginEnv::default(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.parallelism, 8);
    let profile = only_profile(&config);
    assert_eq!(profile.scheduler_name, "json");
    assert_eq!(profile.percentage_of_nodes_to_score, Some(50));
}

#[test]
fn bytes_must_be_utf8() {
    let error = SchedulerConfig::from_bytes(b"apiVersion: \xff\xfe\n", &PluginEnv::default())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(error, ConfigError::NotUtf8 { valid_up_to: 12 });
    let config = SchedulerConfig::from_bytes(HEADER.as_bytes(), &PluginEnv::default());
    assert!(config.is_ok());
}

/// The "no-scoring" bin-packing profile of the brief: every default score disabled and
/// NodeResourcesFit scoring with MostAllocated.
#[test]
fn most_allocated_profile_with_every_default_score_disabled() {
    let config = accepted(
        r#"profiles:
- schedulerName: bin-packing
  plugins:
    score:
      disabled:
      - name: '*'
      enabled:
      - name: NodeResourcesFit
        weight: 1
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 1
        - name: memory
          weight: 1
"#,
    );
    let profile = only_profile(&config);
    assert_eq!(profile.scheduler_name, "bin-packing");
    assert_eq!(profile.filter_names(), DEFAULT_FILTERS);
    assert_eq!(profile.score_weights(), [("NodeResourcesFit", 1)]);
    let fit_filter = profile
        .filters
        .iter()
        .find(|filter| filter.name() == "NodeResourcesFit")
        .expect("NodeResourcesFit filters");
    assert!(same_instance(fit_filter, &profile.scores[0].plugin));

    // MostAllocated prefers the node already busy; the default (LeastAllocated) the idle one.
    let capacity = [("cpu", "4"), ("memory", "8Gi")];
    let nodes = cluster(
        vec![
            node("busy").capacity(&capacity).obj(),
            node("idle").capacity(&capacity).obj(),
        ],
        vec![pod()
            .name("running")
            .node("busy")
            .req(&[("cpu", "2"), ("memory", "4Gi")])
            .obj()],
    );
    let incoming = pod().req(&[("cpu", "1"), ("memory", "1Gi")]).obj();
    let packed = score_all(&*profile.scores[0].plugin, &incoming, &nodes);
    assert!(packed[0] > packed[1], "{packed:?}");

    let default = SchedulerConfig::default_config(&PluginEnv::default());
    let default_fit = default.profiles[0]
        .scores
        .iter()
        .find(|score| score.plugin.name() == "NodeResourcesFit")
        .expect("NodeResourcesFit scores");
    let spread = score_all(&*default_fit.plugin, &incoming, &nodes);
    assert!(spread[0] < spread[1], "{spread:?}");
}

/// The two-profile example of the Kubernetes documentation.
#[test]
fn docs_example_two_profiles() {
    let config = SchedulerConfig::from_yaml(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
  - schedulerName: no-scoring-scheduler
    plugins:
      preScore:
        disabled:
        - name: '*'
      score:
        disabled:
        - name: '*'
"#,
        &PluginEnv::default(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.profiles.len(), 2);
    assert_default_profile(&config.profiles[0]);
    let no_scoring = config
        .profile("no-scoring-scheduler")
        .expect("the second profile");
    assert_eq!(no_scoring.filter_names(), DEFAULT_FILTERS);
    assert!(no_scoring.scores.is_empty());
}

/// The minimal configuration of the Kubernetes documentation: clientConnection is accepted.
#[test]
fn docs_example_minimal() {
    let config = SchedulerConfig::from_yaml(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: /etc/srv/kubernetes/kube-scheduler/kubeconfig
"#,
        &PluginEnv::default(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert_default_profile(only_profile(&config));
}

/// The documentation's score example names out-of-tree plugins, which keel refuses, each.
#[test]
fn docs_example_custom_score_plugins_are_refused() {
    let error = parse(
        r#"profiles:
  - plugins:
      score:
        disabled:
        - name: PodTopologySpread
        enabled:
        - name: MyCustomPluginA
          weight: 2
        - name: MyCustomPluginB
          weight: 1
"#,
    )
    .map(|_| ())
    .unwrap_err();
    let fields: Vec<&str> = error
        .field_errors()
        .iter()
        .map(|error| error.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "profiles[0].plugins.score.enabled[0].name",
            "profiles[0].plugins.score.enabled[1].name"
        ]
    );
    assert_eq!(
        error.field_errors()[0].to_string(),
        format!(
            "profiles[0].plugins.score.enabled[0].name: Unsupported value: \"MyCustomPluginA\": \
             {SCORE_PLUGINS}"
        )
    );
    assert!(error.to_string().starts_with('['), "{error}");
}

/// Re-enabling a default plugin at `score` moves it first with the new weight (the
/// documentation's "DefaultScore2" example).
#[test]
fn a_default_score_enabled_again_runs_first_with_its_weight() {
    let config =
        accepted("profiles: [{plugins: {score: {enabled: [{name: ImageLocality, weight: 5}]}}}]\n");
    assert_eq!(
        only_profile(&config).score_weights(),
        [
            ("ImageLocality", 5),
            ("TaintToleration", 3),
            ("NodeAffinity", 2),
            ("NodeResourcesFit", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
        ]
    );
}

/// A default re-enabled in multiPoint replaces the default entry, weight included: no weight
/// is weight 1 (kube's mergePluginSet).
#[test]
fn a_default_enabled_again_in_multi_point_keeps_its_place_and_takes_its_weight() {
    let profile = accepted("profiles: [{plugins: {multiPoint: {enabled: [{name: TaintToleration}, {name: NodeAffinity, weight: 7}]}}}]\n");
    let profile = only_profile(&profile);
    assert_eq!(profile.filter_names(), DEFAULT_FILTERS);
    let mut want = DEFAULT_SCORES;
    want[0].1 = 1;
    want[1].1 = 7;
    assert_eq!(profile.score_weights(), want);
}

#[test]
fn disabled_in_multi_point_leaves_every_point() {
    let config = accepted("profiles: [{plugins: {multiPoint: {disabled: [{name: NodeResourcesFit}, {name: VolumeBinding}]}}}]\n");
    let profile = only_profile(&config);
    assert!(!profile.filter_names().contains(&"NodeResourcesFit"));
    assert!(!profile
        .score_weights()
        .iter()
        .any(|(name, _)| *name == "NodeResourcesFit"));
    assert_eq!(profile.filters.len(), 8);
    assert_eq!(profile.scores.len(), 6);
}

#[test]
fn disabled_at_one_point_leaves_the_others() {
    let config =
        accepted("profiles: [{plugins: {filter: {disabled: [{name: TaintToleration}]}}}]\n");
    let profile = only_profile(&config);
    assert!(!profile.filter_names().contains(&"TaintToleration"));
    assert_eq!(profile.score_weights(), DEFAULT_SCORES);
}

#[test]
fn multi_point_from_scratch() {
    let config = accepted(
        "profiles: [{plugins: {multiPoint: {disabled: [{name: '*'}], enabled: [{name: NodeName}, \
         {name: ImageLocality, weight: 4}, {name: TaintToleration}]}}}]\n",
    );
    let profile = only_profile(&config);
    assert_eq!(profile.filter_names(), ["NodeName", "TaintToleration"]);
    assert_eq!(
        profile.score_weights(),
        [("ImageLocality", 4), ("TaintToleration", 1)]
    );
}

#[test]
fn enabled_at_a_point_without_multi_point_defaults() {
    // `*` at filter skips multiPoint's filters: only the point's own remain.
    let config = accepted(
        "profiles: [{plugins: {filter: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit}, {name: NodeName}]}}}]\n",
    );
    assert_eq!(
        only_profile(&config).filter_names(),
        ["NodeResourcesFit", "NodeName"]
    );
}

#[test]
fn profile_percentage_overrides() {
    let config = accepted(
        "percentageOfNodesToScore: 20\nprofiles: [{schedulerName: a, percentageOfNodesToScore: 70}, {schedulerName: b}]\n",
    );
    assert_eq!(config.percentage_of_nodes_to_score, 20);
    assert_eq!(config.profiles[0].percentage_of_nodes_to_score, Some(70));
    assert_eq!(config.profiles[1].percentage_of_nodes_to_score, None);
}

#[test]
fn plugin_args_of_every_plugin() {
    let config = accepted(
        r#"profiles:
- pluginConfig:
  - name: NodeResourcesFit
    args:
      apiVersion: kubescheduler.config.k8s.io/v1
      kind: NodeResourcesFitArgs
      ignoredResources: [example.com/gpu]
      ignoredResourceGroups: [example.org]
      scoringStrategy:
        type: RequestedToCapacityRatio
        resources: [{name: cpu, weight: 3}, {name: memory}]
        requestedToCapacityRatio:
          shape: [{utilization: 0, score: 0}, {utilization: 100, score: 10}]
  - name: NodeResourcesBalancedAllocation
    args: {resources: [{name: cpu}, {name: memory, weight: 1}, {name: example.com/gpu}]}
  - name: PodTopologySpread
    args:
      defaultingType: List
      defaultConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
  - name: InterPodAffinity
    args: {hardPodAffinityWeight: 0, ignorePreferredTermsOfExistingPods: true}
  - name: NodeAffinity
    args: {addedAffinity: null}
"#,
    );
    assert_default_profile(only_profile(&config));
}

#[test]
fn added_node_affinity_filters_every_pod() {
    let config = accepted(
        r#"profiles:
- pluginConfig:
  - name: NodeAffinity
    args:
      addedAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms:
          - matchExpressions:
            - {key: zone, operator: In, values: [a]}
"#,
    );
    let profile = only_profile(&config);
    let filter = profile
        .filters
        .iter()
        .find(|filter| filter.name() == "NodeAffinity")
        .expect("NodeAffinity filters");
    let state = CycleState::new();
    let incoming = pod().obj();
    let in_a = node_info(node("a").labels(&[("zone", "a")]).obj(), vec![]);
    let in_b = node_info(node("b").labels(&[("zone", "b")]).obj(), vec![]);
    assert!(filter.filter(&state, &incoming, &in_a).is_success());
    let status = filter.filter(&state, &incoming, &in_b);
    assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(status.reasons, [ERR_REASON_ENFORCED]);
}

/// Each refused file and kube's words for it, field path first.
#[test]
fn malformed_configs_name_the_field() {
    let unsupported_foo = format!(
        "profiles[0].plugins.score.enabled[2].name: Unsupported value: \"Foo\": {SCORE_PLUGINS}"
    );
    let unsupported_node_name = format!(
        "profiles[0].plugins.score.enabled[0].name: Unsupported value: \"NodeName\": {SCORE_PLUGINS}"
    );
    let cases: &[(&str, &str)] = &[
        // Types and unknown fields.
        ("foo: 1\n", r#"unknown field "foo""#),
        (
            "profiles: [{plugins: {score: {enabled: [{name: ImageLocality, wieght: 2}]}}}]\n",
            r#"unknown field "profiles[0].plugins.score.enabled[0].wieght""#,
        ),
        (
            "clientConnection: {kubeconfig: /x, proxy: y}\n",
            r#"unknown field "clientConnection.proxy""#,
        ),
        (
            "parallelism: \"16\"\n",
            r#"parallelism: Invalid value: "16": cannot unmarshal string into int32"#,
        ),
        (
            "parallelism: 99999999999999999999999\n",
            "parallelism: Invalid value: 99999999999999999999999: cannot unmarshal number into int32",
        ),
        (
            "parallelism: 2147483648\n",
            "parallelism: Invalid value: 2147483648: cannot unmarshal number into int32",
        ),
        (
            "parallelism: 1.5\n",
            "parallelism: Invalid value: 1.5: cannot unmarshal number into int32",
        ),
        (
            "profiles: {schedulerName: a}\n",
            "profiles: Invalid value: {...}: cannot unmarshal object into []KubeSchedulerProfile",
        ),
        (
            "profiles: [{plugins: {score: {enabled: [{name: 5}]}}}]\n",
            "profiles[0].plugins.score.enabled[0].name: Invalid value: 5: cannot unmarshal number into string",
        ),
        // Top-level validation.
        (
            "parallelism: 0\n",
            "parallelism: Invalid value: 0: should be an integer value greater than zero",
        ),
        (
            "percentageOfNodesToScore: 101\n",
            "percentageOfNodesToScore: Invalid value: 101: not in valid range [0-100]",
        ),
        (
            "profiles: [{percentageOfNodesToScore: -1}]\n",
            "profiles[0].percentageOfNodesToScore: Invalid value: -1: not in valid range [0-100]",
        ),
        (
            "podInitialBackoffSeconds: 0\n",
            "podInitialBackoffSeconds: Invalid value: 0: must be greater than 0",
        ),
        (
            "podInitialBackoffSeconds: 20\n",
            "podMaxBackoffSeconds: Invalid value: 10: must be greater than or equal to PodInitialBackoffSeconds",
        ),
        (
            "parallelism: -1\npercentageOfNodesToScore: 200\n",
            "[parallelism: Invalid value: -1: should be an integer value greater than zero, \
             percentageOfNodesToScore: Invalid value: 200: not in valid range [0-100]]",
        ),
        // Profiles.
        (
            "profiles: [{schedulerName: default-scheduler}, {schedulerName: default-scheduler}]\n",
            r#"profiles[1].schedulerName: Duplicate value: "default-scheduler""#,
        ),
        (
            "profiles: [{schedulerName: a}, {}]\n",
            "profiles[1].schedulerName: Required value",
        ),
        (
            "profiles: [{schedulerName: ''}]\n",
            "profiles[0].schedulerName: Required value",
        ),
        // Plugin names and weights.
        (
            "profiles: [{plugins: {score: {enabled: [{name: ImageLocality}, {name: TaintToleration}, {name: Foo}]}}}]\n",
            unsupported_foo.as_str(),
        ),
        (
            "profiles: [{plugins: {score: {enabled: [{name: NodeName}]}}}]\n",
            unsupported_node_name.as_str(),
        ),
        (
            "profiles: [{plugins: {preFilter: {enabled: [{name: TaintToleration}]}}}]\n",
            "profiles[0].plugins.preFilter.enabled[0].name: Unsupported value: \"TaintToleration\": \
             supported values: \"NodeAffinity\", \"NodePorts\", \"NodeResourcesFit\", \
             \"VolumeRestrictions\", \"PodTopologySpread\", \"InterPodAffinity\"",
        ),
        (
            "profiles: [{plugins: {multiPoint: {enabled: [{name: VolumeBinding}]}}}]\n",
            "profiles[0].plugins.multiPoint.enabled[0].name: Unsupported value: \"VolumeBinding\": \
             supported values: \"NodeUnschedulable\", \"NodeName\", \"TaintToleration\", \
             \"NodeAffinity\", \"NodePorts\", \"NodeResourcesFit\", \"VolumeRestrictions\", \
             \"PodTopologySpread\", \"InterPodAffinity\", \"NodeResourcesBalancedAllocation\", \
             \"ImageLocality\"",
        ),
        (
            "profiles: [{plugins: {filter: {enabled: [{}]}}}]\n",
            "profiles[0].plugins.filter.enabled[0].name: Required value",
        ),
        (
            "profiles: [{plugins: {filter: {enabled: [{name: NodeName}, {name: NodeName}]}}}]\n",
            r#"profiles[0].plugins.filter.enabled[1].name: Duplicate value: "NodeName""#,
        ),
        (
            "profiles: [{plugins: {score: {enabled: [{name: ImageLocality, weight: 101}]}}}]\n",
            "profiles[0].plugins.score.enabled[0].weight: Invalid value: 101: not in valid range [1, 100]",
        ),
        (
            "profiles: [{plugins: {multiPoint: {enabled: [{name: ImageLocality, weight: -3}]}}}]\n",
            "profiles[0].plugins.multiPoint.enabled[0].weight: Invalid value: -3: not in valid range [1, 100]",
        ),
        (
            "profiles: [{plugins: {queueSort: {enabled: [{name: PrioritySort}]}}}]\n",
            "profiles[0].plugins.queueSort: Forbidden: keel's scheduler has no queueSort extension point",
        ),
        (
            "leaderElection: {leaderElect: true}\n",
            "leaderElection: Forbidden: keel's scheduler does not implement leader election settings",
        ),
        (
            "extenders: [{urlPrefix: 'http://x'}]\n",
            "extenders: Forbidden: keel's scheduler does not call scheduler extenders",
        ),
        // pluginConfig.
        (
            "profiles: [{pluginConfig: [{name: DefaultPreemption, args: {}}]}]\n",
            "profiles[0].pluginConfig[0].name: Unsupported value: \"DefaultPreemption\": \
             supported values: \"InterPodAffinity\", \"NodeAffinity\", \
             \"NodeResourcesBalancedAllocation\", \"NodeResourcesFit\", \"PodTopologySpread\"",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit}, {name: NodeResourcesFit}]}]\n",
            r#"profiles[0].pluginConfig[1]: Duplicate value: "NodeResourcesFit""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: MostAllocated, typo: 1}}}]}]\n",
            r#"unknown field "profiles[0].pluginConfig[0].args.scoringStrategy.typo""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeAffinity, args: {kind: NodeResourcesFitArgs}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.kind: Unsupported value: "NodeResourcesFitArgs": supported values: "NodeAffinityArgs""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: Foo}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: \"Foo\": \
             supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\"",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {resources: [{name: cpu}]}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: \"\": \
             supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\"",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: LeastAllocated, resources: [{name: cpu, weight: 101}]}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].weight: Invalid value: 101: \
             resource weight of cpu not in valid range (0, 100]",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: RequestedToCapacityRatio}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio: Required value: \
             must be specified when type is RequestedToCapacityRatio",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: RequestedToCapacityRatio, requestedToCapacityRatio: {shape: []}}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio.shape: Required value: \
             at least one point must be specified",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: RequestedToCapacityRatio, requestedToCapacityRatio: {shape: [{utilization: 50, score: 1}, {utilization: 10, score: 2}]}}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio.shape[1].utilization: \
             Invalid value: 10: values must be sorted in increasing order",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: RequestedToCapacityRatio, requestedToCapacityRatio: {shape: [{utilization: 0, score: 11}]}}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio.shape[0].score: \
             Invalid value: 11: not in valid range [0, 10]",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: MostAllocated, requestedToCapacityRatio: {shape: []}}}}]}]\n",
            "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio: Forbidden: \
             must be nil when type is not RequestedToCapacityRatio",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {ignoredResourceGroups: [example.com/x]}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.ignoredResourceGroups[0]: Invalid value: "example.com/x": resource group name can't contain '/'"#,
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesBalancedAllocation, args: {resources: [{name: cpu, weight: 2}]}}]}]\n",
            "profiles[0].pluginConfig[0].args.resources[0].weight: Invalid value: 2: must be 1",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeResourcesBalancedAllocation, args: {resources: [{name: cpu}, {name: cpu}]}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.resources[1].name: Duplicate value: "cpu""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: InterPodAffinity, args: {hardPodAffinityWeight: 101}}]}]\n",
            "profiles[0].pluginConfig[0].args.hardPodAffinityWeight: Invalid value: 101: not in valid range [0, 100]",
        ),
        (
            "profiles: [{pluginConfig: [{name: InterPodAffinity, args: {ignorePreferredTermsOfExistingPods: yes}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.ignorePreferredTermsOfExistingPods: Invalid value: "yes": cannot unmarshal string into bool"#,
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.defaultingType: Invalid value: "System": when .defaultConstraints are not empty"#,
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: Sometimes}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.defaultingType: Unsupported value: "Sometimes": supported values: "System", "List""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]}}]}]\n",
            "profiles[0].pluginConfig[0].args.defaultConstraints[0].maxSkew: Invalid value: 0: not in valid range (0, inf)",
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: Never}]}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.defaultConstraints[0].whenUnsatisfiable: Unsupported value: "Never": supported values: "DoNotSchedule", "ScheduleAnyway""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 1, whenUnsatisfiable: DoNotSchedule}]}}]}]\n",
            "profiles[0].pluginConfig[0].args.defaultConstraints[0].topologyKey: Required value: can not be empty",
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {}}]}}]}]\n",
            "profiles[0].pluginConfig[0].args.defaultConstraints[0].labelSelector: Forbidden: \
             constraint must not define a selector, as they deduced for each pod",
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}, {maxSkew: 2, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.defaultConstraints[1]: Duplicate value: "{zone, DoNotSchedule}""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, skew: 3}]}}]}]\n",
            r#"unknown field "profiles[0].pluginConfig[0].args.defaultConstraints[0].skew""#,
        ),
        (
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: one, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.defaultConstraints[0]: Invalid value: {...}: invalid type: string "one", expected i32"#,
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeAffinity, args: {addedAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, valuez: [a]}]}]}}}}]}]\n",
            "unknown field \"profiles[0].pluginConfig[0].args.addedAffinity.\
             requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].valuez\"",
        ),
        (
            "profiles: [{pluginConfig: [{name: NodeAffinity, args: {addedAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: Near, values: [a]}]}]}}}}]}]\n",
            r#"profiles[0].pluginConfig[0].args.addedAffinity: zone: operator "Near" is not supported"#,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(refused(body), *want, "{body}");
    }
}

#[test]
fn inert_values_of_unsupported_fields_are_accepted() {
    let config = accepted(
        "leaderElection: {}\nextenders: []\nenableProfiling: false\nenableContentionProfiling: false\n\
         delayCacheUntilActive: false\nprofiles: [{plugins: {queueSort: {}, bind: {enabled: [], disabled: []}}}]\n",
    );
    assert_default_profile(only_profile(&config));
}

#[test]
fn disabling_a_kube_plugin_keel_lacks_is_a_no_op_but_a_typo_is_refused() {
    let config = accepted("profiles: [{plugins: {filter: {disabled: [{name: VolumeZone}]}}}]\n");
    assert_default_profile(only_profile(&config));
    let error = refused("profiles: [{plugins: {filter: {disabled: [{name: NodeAfinity}]}}}]\n");
    assert!(
        error.starts_with(
            "profiles[0].plugins.filter.disabled[0].name: Unsupported value: \"NodeAfinity\": \
             supported values: \"*\", \"NodeUnschedulable\""
        ),
        "{error}"
    );
}

#[test]
fn kind_and_api_version_are_required_and_exact() {
    let env = PluginEnv::default();
    let error = |text: &str| match SchedulerConfig::from_yaml(text, &env) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(error) => error.to_string(),
    };
    assert_eq!(
        error("parallelism: 1\n"),
        "[apiVersion: Required value, kind: Required value]"
    );
    assert_eq!(
        error(
            "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n"
        ),
        "apiVersion: Unsupported value: \"kubescheduler.config.k8s.io/v1beta3\": \
         supported values: \"kubescheduler.config.k8s.io/v1\""
    );
    assert_eq!(
        error("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeletConfiguration\nfoo: 1\n"),
        "kind: Unsupported value: \"KubeletConfiguration\": supported values: \"KubeSchedulerConfiguration\""
    );
    assert_eq!(
        SchedulerConfig::from_yaml("", &env).map(|_| ()),
        Err(ConfigError::NotAnObject {
            found: "an empty document"
        })
    );
    assert_eq!(
        SchedulerConfig::from_yaml("- a\n- b\n", &env).map(|_| ()),
        Err(ConfigError::NotAnObject { found: "a list" })
    );
}

#[test]
fn malformed_yaml_names_the_line() {
    let error = parse("parallelism: 16\nprofiles:\n  - schedulerName: a: b\n")
        .map(|_| ())
        .unwrap_err();
    let ConfigError::Syntax { line, message, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*line, Some(5), "{message}");
    assert!(message.contains("line 5"), "{message}");
    assert!(error
        .to_string()
        .starts_with("malformed scheduler configuration: "));
}

#[test]
fn malformed_json_names_the_line() {
    let error = SchedulerConfig::from_yaml(
        "{\n  \"apiVersion\": \"kubescheduler.config.k8s.io/v1\",\n  \"kind\": \"KubeSchedulerConfiguration\",\n  \"parallelism\": 16,,\n}",
        &PluginEnv::default(),
    )
    .map(|_| ())
    .unwrap_err();
    let ConfigError::Syntax { line, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*line, Some(4), "{error}");
}

#[test]
fn duplicate_keys_are_refused() {
    let error = parse("parallelism: 1\nparallelism: 2\n")
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&error, ConfigError::Syntax { line: Some(_), message, .. }
            if message.contains("key \"parallelism\" already set in map")),
        "{error:?}"
    );
    let error = SchedulerConfig::from_yaml(
        "{\"apiVersion\": \"kubescheduler.config.k8s.io/v1\", \"kind\": \"KubeSchedulerConfiguration\",\n\"kind\": \"x\"}",
        &PluginEnv::default(),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(&error, ConfigError::Syntax { line: Some(2), message, .. }
            if message.contains("key \"kind\" already set in map")),
        "{error:?}"
    );
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let env = PluginEnv::default();
    let deep_yaml = format!(
        "{HEADER}profiles: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(matches!(
        SchedulerConfig::from_yaml(&deep_yaml, &env),
        Err(ConfigError::Syntax { .. })
    ));
    let deep_json = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    assert!(matches!(
        SchedulerConfig::from_yaml(&deep_json, &env),
        Err(ConfigError::Syntax { .. })
    ));
    let deep_args = format!(
        "{HEADER}profiles: [{{pluginConfig: [{{name: NodeAffinity, args: {{addedAffinity: {}1{}}}}}]}}]\n",
        "{a: ".repeat(200),
        "}".repeat(200)
    );
    assert!(SchedulerConfig::from_yaml(&deep_args, &env).is_err());

    // Exponential aliases ("billion laughs") stop at serde_yaml_ng's repetition limit.
    let mut laughs = String::from(HEADER);
    laughs.push_str("a: &a [x, x, x, x, x, x, x, x, x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let (previous, name) = (pair[0], pair[1]);
        let refs = vec![format!("*{previous}"); 9].join(", ");
        laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    assert!(SchedulerConfig::from_yaml(&laughs, &env).is_err());

    // Numbers beyond every integer type, and not finite.
    for number in [
        "1e400",
        "-99999999999999999999999999999999999999999",
        ".inf",
        ".nan",
    ] {
        let error = refused(&format!("parallelism: {number}\n"));
        assert!(error.starts_with("parallelism: Invalid value: "), "{error}");
    }
    let big = "9".repeat(5_000);
    assert!(refused(&format!("podMaxBackoffSeconds: {big}\n"))
        .starts_with("podMaxBackoffSeconds: Invalid value: "));

    // Control characters in a name are quoted, never written raw into the message.
    let error = refused("profiles: [{plugins: {score: {enabled: [{name: \"a\\nb\\u001b\"}]}}}]\n");
    assert!(
        error.contains(r#"Unsupported value: "a\nb\x1b""#),
        "{error}"
    );
}

#[test]
fn field_errors_are_structured() {
    let error = parse("parallelism: 0\n").map(|_| ()).unwrap_err();
    assert_eq!(
        error.field_errors(),
        [FieldError {
            field: "parallelism".to_string(),
            kind: ErrorKind::Invalid,
            value: "0".to_string(),
            detail: "should be an integer value greater than zero".to_string(),
        }]
    );
}
