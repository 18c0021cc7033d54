//! keel's scheduler configuration: kube-scheduler's `KubeSchedulerConfiguration`
//! (`apiVersion: kubescheduler.config.k8s.io/v1`), YAML or JSON, with kube's defaults, kube's
//! validation and kube's error texts, turned into the plugin lists the scheduling loop runs.
//!
//! A configuration written for kube-scheduler means the same here: the default profile has
//! kube's default plugins in kube's order with kube's weights (those keel has; the comment on
//! the defaults in `config/registry.rs` lists those it lacks), and `multiPoint`,
//! `disabled: [{name: "*"}]`, re-enabling a default to change its weight or order, and
//! `pluginConfig` args all follow kube's merge rules (`mergePlugins`, then the framework's
//! multiPoint expansion).
//!
//! The file is read in three phases, each reporting every error it finds (as kube's aggregate
//! does) and refusing the file if any: decoding (unknown fields, wrong types, each at its field
//! path), kube's defaulting and validation, then building each profile's plugins.
//!
//! Where keel differs, and why:
//! - Extension points. A [`Profile`] holds filters and scores; a keel plugin's pre-filter and
//!   pre-score are methods of its filter and score, and only cache what those would compute.
//!   `preFilter` and `preScore` are therefore checked as kube checks them (names, points,
//!   duplicates) but decide nothing: a plugin's pre-phase runs whenever its filter or score
//!   does. kube's other points (queueSort, bind, …) must be empty: keel has no equivalent.
//! - Unsupported kube fields are refused unless their value asks for nothing (null, false, 0,
//!   empty): `leaderElection`, `extenders`, `enableProfiling`, `enableContentionProfiling`,
//!   `delayCacheUntilActive`, `percentageOfPlacementsToScore`. `clientConnection` is checked
//!   for its shape and otherwise ignored: keel's scheduler is handed its API client by the
//!   process that runs it (`run::start` takes a built client), so a
//!   kubeconfig, QPS or content type in this file would have nothing to configure; accepting
//!   it keeps kube's documented minimal configuration (which names a kubeconfig) valid.
//! - Plugin names: enabling one keel lacks is refused (`Unsupported value`, with the supported
//!   ones listed); disabling one of kube's that keel lacks is accepted, as it never runs; a
//!   `pluginConfig` for any plugin but the five with args is refused.
//! - Score weights must be in 1..=100 (0 is kube's "unset", i.e. 1); kube only refuses weights
//!   that could overflow the total score.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::framework::{FilterPlugin, ScorePlugin};
use crate::plugins::pod_topology_spread::DefaultSelectorSource;

mod args;
mod build;
mod decode;
mod error;
mod node;
mod registry;

pub use build::DEFAULT_SCHEDULER_NAME;
pub use error::{ConfigError, ErrorKind, FieldError, FieldErrors};

/// The scheduler's configuration: kube's top-level settings and one [`Profile`] per scheduler
/// name.
#[derive(Clone)]
pub struct SchedulerConfig {
    /// How many nodes are filtered and scored at once (kube's default 16).
    pub parallelism: usize,
    /// The share of nodes, in percent, after whose feasible ones the search stops; 0 is kube's
    /// adaptive share (50% of a small cluster down to 5% of a large one).
    pub percentage_of_nodes_to_score: u32,
    /// The first retry delay of a pod that could not be placed (kube's default 1s).
    pub pod_initial_backoff: Duration,
    /// The cap of that delay as it doubles (kube's default 10s).
    pub pod_max_backoff: Duration,
    /// In the file's order; scheduler names are unique.
    pub profiles: Vec<Profile>,
}

/// The plugins of one scheduler name, in the order they run.
#[derive(Clone)]
pub struct Profile {
    /// The `spec.schedulerName` of the pods this profile schedules.
    pub scheduler_name: String,
    /// Overrides [`SchedulerConfig::percentage_of_nodes_to_score`] when set.
    pub percentage_of_nodes_to_score: Option<u32>,
    pub filters: Vec<Arc<dyn FilterPlugin>>,
    /// A plugin that filters and scores is one instance, in both lists.
    pub scores: Vec<WeightedScore>,
}

/// A score plugin and what its normalized score is multiplied by.
#[derive(Clone)]
pub struct WeightedScore {
    pub plugin: Arc<dyn ScorePlugin>,
    pub weight: i64,
}

/// What plugins learn from the cluster beyond pods and nodes, which kube's plugins read from
/// informers. [`Default`] knows nothing: no namespace has labels, no pod has a default
/// spreading selector.
#[derive(Clone)]
pub struct PluginEnv {
    /// A namespace's labels by name (InterPodAffinity's `namespaceSelector`).
    pub namespace_labels: crate::plugins::inter_pod_affinity::NamespaceLabels,
    /// The selector of the Services and controllers selecting a pod, for PodTopologySpread's
    /// default constraints; without it the default constraints apply to no pod.
    pub default_selector: Option<Arc<dyn DefaultSelectorSource>>,
}

impl Default for PluginEnv {
    fn default() -> PluginEnv {
        PluginEnv {
            namespace_labels: Arc::new(|_: &str| -> Option<BTreeMap<String, String>> { None }),
            default_selector: None,
        }
    }
}

impl fmt::Debug for PluginEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEnv")
            .field("default_selector", &self.default_selector.is_some())
            .finish_non_exhaustive()
    }
}

impl SchedulerConfig {
    /// kube-scheduler's configuration when given no file: one `default-scheduler` profile with
    /// the default plugins.
    pub fn default_config(env: &PluginEnv) -> SchedulerConfig {
        // The same path as a file with no field set, so that the two cannot drift apart. Every
        // input is kube's own default, which kube's validation accepts; only a plugin refusing
        // its kube-default args could fail here, a bug the default-config test catches.
        build::validate(decode::RawConfig::default())
            .and_then(|valid| build::build(valid, env))
            .expect("kube's default scheduler configuration builds")
    }

    /// Reads a configuration file's text, YAML or JSON.
    pub fn from_yaml(text: &str, env: &PluginEnv) -> Result<SchedulerConfig, ConfigError> {
        let root = node::parse(text)?;
        let raw = decode::decode(&root)?;
        let valid = build::validate(raw)?;
        build::build(valid, env)
    }

    /// Reads a configuration file's bytes, refusing non-UTF-8.
    pub fn from_bytes(bytes: &[u8], env: &PluginEnv) -> Result<SchedulerConfig, ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|error| ConfigError::NotUtf8 {
            valid_up_to: error.valid_up_to(),
        })?;
        SchedulerConfig::from_yaml(text, env)
    }

    /// The profile of `scheduler_name`, if any.
    pub fn profile(&self, scheduler_name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|profile| profile.scheduler_name == scheduler_name)
    }
}

impl Profile {
    /// The filters' names, in order.
    pub fn filter_names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|plugin| plugin.name()).collect()
    }

    /// The scores' names and weights, in order.
    pub fn score_weights(&self) -> Vec<(&'static str, i64)> {
        self.scores
            .iter()
            .map(|score| (score.plugin.name(), score.weight))
            .collect()
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("scheduler_name", &self.scheduler_name)
            .field(
                "percentage_of_nodes_to_score",
                &self.percentage_of_nodes_to_score,
            )
            .field("filters", &self.filter_names())
            .field("scores", &self.score_weights())
            .finish()
    }
}

impl fmt::Debug for WeightedScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedScore")
            .field("plugin", &self.plugin.name())
            .field("weight", &self.weight)
            .finish()
    }
}

impl fmt::Debug for SchedulerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerConfig")
            .field("parallelism", &self.parallelism)
            .field(
                "percentage_of_nodes_to_score",
                &self.percentage_of_nodes_to_score,
            )
            .field("pod_initial_backoff", &self.pod_initial_backoff)
            .field("pod_max_backoff", &self.pod_max_backoff)
            .field("profiles", &self.profiles)
            .finish()
    }
}

#[cfg(test)]
mod tests;
