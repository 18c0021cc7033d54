//! Phases two and three: kube's defaulting and validation of the whole configuration
//! (`SetDefaults_KubeSchedulerConfiguration`, `ValidateKubeSchedulerConfiguration`), then each
//! profile's plugin lists as kube's framework builds them (`mergePlugins`, `NewFramework`,
//! `expandMultiPointPlugins`, `getScoreWeights`), with keel's plugins.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::args::{resolve, ProfileArgs};
use super::decode::{PluginSet, RawConfig, RawPlugin, RawPlugins, RawProfile};
use super::error::{check, number, quote, ConfigError, FieldError};
use super::node::{child, index};
use super::registry::{disable_names, may_disable, PluginKind, Point, DEFAULT_MULTI_POINT};
use super::{PluginEnv, Profile, SchedulerConfig, WeightedScore};
use crate::framework::{FilterPlugin, ScorePlugin};
use crate::plugins::inter_pod_affinity::InterPodAffinity;
use crate::plugins::pod_topology_spread::PodTopologySpread;
use crate::plugins::{
    BalancedAllocation, ImageLocality, NodeAffinity, NodeName, NodePorts, NodeResourcesFit,
    NodeUnschedulable, TaintToleration, VolumeRestrictions,
};

/// kube's `v1.DefaultSchedulerName`, what the API server puts in a pod that names none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// kube's defaults (`defaults.go`).
const DEFAULT_PARALLELISM: i64 = 16;
/// 0: adaptive, kube's `DefaultPercentageOfNodesToScore` since 1.25.
const DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE: i64 = 0;
const DEFAULT_POD_INITIAL_BACKOFF_SECONDS: i64 = 1;
const DEFAULT_POD_MAX_BACKOFF_SECONDS: i64 = 10;
/// keel's bound on a plugin's score weight (see `validate_weight`).
const MAX_WEIGHT: i64 = 100;

/// The configuration defaulted and validated, plugins not yet built.
pub(crate) struct Valid {
    parallelism: usize,
    percentage_of_nodes_to_score: u32,
    pod_initial_backoff: Duration,
    pod_max_backoff: Duration,
    profiles: Vec<ValidProfile>,
}

struct ValidProfile {
    path: String,
    scheduler_name: String,
    percentage_of_nodes_to_score: Option<u32>,
    plugins: RawPlugins,
    args: ProfileArgs,
}

/// Phase two: kube's defaults, then kube's validation, every error reported.
pub(crate) fn validate(raw: RawConfig) -> Result<Valid, ConfigError> {
    let mut errors = Vec::new();

    let parallelism = raw.parallelism.unwrap_or(DEFAULT_PARALLELISM);
    if parallelism <= 0 {
        errors.push(FieldError::invalid(
            "parallelism",
            number(parallelism),
            "should be an integer value greater than zero",
        ));
    }

    let mut raw_profiles = raw.profiles;
    if raw_profiles.is_empty() {
        raw_profiles.push(RawProfile {
            path: index("profiles", 0),
            ..RawProfile::default()
        });
    }
    // Only a lone profile gets the default name; among several, each must be named.
    let single = raw_profiles.len() == 1;
    let mut profiles = Vec::with_capacity(raw_profiles.len());
    let mut names: Vec<String> = Vec::with_capacity(raw_profiles.len());
    for profile in raw_profiles {
        let name_path = child(&profile.path, "schedulerName");
        let scheduler_name = match profile.scheduler_name {
            Some(name) => name,
            None if single => DEFAULT_SCHEDULER_NAME.to_owned(),
            None => String::new(),
        };
        if scheduler_name.is_empty() {
            errors.push(FieldError::required(name_path.clone(), ""));
        }
        let percentage = profile.percentage_of_nodes_to_score.and_then(|percentage| {
            percentage_of_nodes_to_score(
                &child(&profile.path, "percentageOfNodesToScore"),
                percentage,
                &mut errors,
            )
        });

        let mut args = ProfileArgs::default();
        let mut configured: BTreeSet<&str> = BTreeSet::new();
        for config in &profile.plugin_config {
            if !configured.insert(config.name.as_str()) {
                errors.push(FieldError::duplicate(config.path.clone(), &config.name));
                continue;
            }
            if let Some(plugin_args) = &config.args {
                resolve(
                    plugin_args,
                    &child(&config.path, "args"),
                    &mut args,
                    &mut errors,
                );
            }
        }

        if names.contains(&scheduler_name) {
            errors.push(FieldError::duplicate(name_path, &scheduler_name));
        }
        names.push(scheduler_name.clone());
        profiles.push(ValidProfile {
            path: profile.path,
            scheduler_name,
            percentage_of_nodes_to_score: percentage,
            plugins: profile.plugins,
            args,
        });
    }

    let percentage = percentage_of_nodes_to_score(
        "percentageOfNodesToScore",
        raw.percentage_of_nodes_to_score
            .unwrap_or(DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE),
        &mut errors,
    );

    let initial = raw
        .pod_initial_backoff_seconds
        .unwrap_or(DEFAULT_POD_INITIAL_BACKOFF_SECONDS);
    let max = raw
        .pod_max_backoff_seconds
        .unwrap_or(DEFAULT_POD_MAX_BACKOFF_SECONDS);
    if initial <= 0 {
        errors.push(FieldError::invalid(
            "podInitialBackoffSeconds",
            number(initial),
            "must be greater than 0",
        ));
    }
    if max < initial {
        errors.push(FieldError::invalid(
            "podMaxBackoffSeconds",
            number(max),
            "must be greater than or equal to PodInitialBackoffSeconds",
        ));
    }

    check(errors)?;
    Ok(Valid {
        parallelism: usize::try_from(parallelism).unwrap_or(usize::MAX),
        percentage_of_nodes_to_score: percentage.unwrap_or(0),
        pod_initial_backoff: seconds(initial),
        pod_max_backoff: seconds(max),
        profiles,
    })
}

fn percentage_of_nodes_to_score(
    path: &str,
    percentage: i64,
    errors: &mut Vec<FieldError>,
) -> Option<u32> {
    match u32::try_from(percentage) {
        Ok(percentage) if percentage <= 100 => Some(percentage),
        _ => {
            errors.push(FieldError::invalid(
                path,
                number(percentage),
                "not in valid range [0-100]",
            ));
            None
        }
    }
}

/// Validated positive, so the conversion holds.
fn seconds(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// An enabled plugin after name resolution.
#[derive(Clone, Debug)]
struct Entry {
    kind: PluginKind,
    weight: Option<i64>,
}

/// Phase three: each profile's plugins, built.
pub(crate) fn build(valid: Valid, env: &PluginEnv) -> Result<SchedulerConfig, ConfigError> {
    let mut errors = Vec::new();
    let mut profiles = Vec::with_capacity(valid.profiles.len());
    for profile in valid.profiles {
        if let Some(built) = build_profile(profile, env, &mut errors) {
            profiles.push(built);
        }
    }
    check(errors)?;
    Ok(SchedulerConfig {
        parallelism: valid.parallelism,
        percentage_of_nodes_to_score: valid.percentage_of_nodes_to_score,
        pod_initial_backoff: valid.pod_initial_backoff,
        pod_max_backoff: valid.pod_max_backoff,
        profiles,
    })
}

fn build_profile(
    profile: ValidProfile,
    env: &PluginEnv,
    errors: &mut Vec<FieldError>,
) -> Option<Profile> {
    let plugins_path = child(&profile.path, "plugins");
    let plugins = &profile.plugins;

    // Every name checked, at every point, before anything is built.
    let multi_point = enabled(&plugins.multi_point, None, errors);
    let multi_point_disabled = disabled(&plugins.multi_point, errors);
    let mut points = Vec::with_capacity(Point::ALL.len());
    for point in Point::ALL {
        let set = match point {
            Point::PreFilter => &plugins.pre_filter,
            Point::Filter => &plugins.filter,
            Point::PreScore => &plugins.pre_score,
            Point::Score => &plugins.score,
        };
        points.push((
            point,
            enabled(set, Some(point), errors),
            disabled(set, errors),
        ));
    }

    let merged = merge_multi_point(&multi_point, &multi_point_disabled);
    let mut filters_order = Vec::new();
    let mut scores_order = Vec::new();
    let mut score_enabled: &[Entry] = &[];
    for (point, specific, specific_disabled) in &points {
        let expanded = expand(*point, specific, specific_disabled, &merged);
        match point {
            Point::Filter => filters_order = expanded,
            Point::Score => {
                scores_order = expanded;
                score_enabled = specific;
            }
            // keel's filters and scores run their own pre-phase (see the module docs): the
            // expansion of these points is computed for kube's checks only.
            Point::PreFilter | Point::PreScore => {}
        }
    }

    // getScoreWeights: the score point's own entries first, then multiPoint's; a weight of 0
    // (or none) is 1.
    let mut weights: Vec<(PluginKind, i64)> = Vec::new();
    for entry in score_enabled.iter().chain(&merged) {
        if entry.kind.is_score() && !weights.iter().any(|(kind, _)| *kind == entry.kind) {
            let weight = entry.weight.filter(|weight| *weight != 0).unwrap_or(1);
            weights.push((entry.kind, weight));
        }
    }

    if !errors.is_empty() {
        return None;
    }

    // One instance per plugin, shared by the filter and score lists.
    let mut instances: Vec<(PluginKind, Instance)> = Vec::new();
    for kind in filters_order.iter().chain(&scores_order) {
        if instances.iter().any(|(k, _)| k == kind) {
            continue;
        }
        match instantiate(*kind, &profile.args, env) {
            Ok(instance) => instances.push((*kind, instance)),
            Err(message) => {
                let field = profile
                    .args
                    .path(*kind)
                    .map_or_else(|| plugins_path.clone(), str::to_owned);
                errors.push(FieldError::plugin(
                    field,
                    format!("initializing plugin {}: {message}", quote(kind.name())),
                ));
            }
        }
    }
    let instance = |kind: PluginKind| {
        instances
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, instance)| instance)
    };
    let filters = filters_order
        .iter()
        .filter_map(|kind| instance(*kind)?.filter.clone())
        .collect();
    let scores = scores_order
        .iter()
        .filter_map(|kind| {
            let plugin = instance(*kind)?.score.clone()?;
            let weight = weights
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(1, |(_, weight)| *weight);
            Some(WeightedScore { plugin, weight })
        })
        .collect();
    Some(Profile {
        scheduler_name: profile.scheduler_name,
        percentage_of_nodes_to_score: profile.percentage_of_nodes_to_score,
        filters,
        scores,
    })
}

/// The enabled entries of a set, names resolved; refused names are reported and left out.
/// `point` is `None` for multiPoint, which takes any plugin.
fn enabled(set: &PluginSet, point: Option<Point>, errors: &mut Vec<FieldError>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::with_capacity(set.enabled.len());
    for plugin in &set.enabled {
        let name_path = child(&plugin.path, "name");
        if plugin.name.is_empty() {
            errors.push(FieldError::required(name_path, ""));
            continue;
        }
        let kind = PluginKind::from_name(&plugin.name)
            .filter(|kind| point.is_none_or(|point| kind.implements(point)));
        let Some(kind) = kind else {
            errors.push(FieldError::not_supported(
                name_path,
                &plugin.name,
                &PluginKind::names_at(point),
            ));
            continue;
        };
        // kube refuses a plugin registered twice at a point ("already registered"); within
        // multiPoint kube only notices at the points the plugin is expanded to, keel at once.
        if entries.iter().any(|entry| entry.kind == kind) {
            errors.push(FieldError::duplicate(name_path, &plugin.name));
            continue;
        }
        if kind.is_score() && matches!(point, None | Some(Point::Score)) {
            validate_weight(plugin, errors);
        }
        entries.push(Entry {
            kind,
            weight: plugin.weight,
        });
    }
    entries
}

/// Score weights in 1..=100. kube itself only refuses weights whose sum could overflow an
/// int64 score; keel bounds each (a weight above 100 drowns every other plugin anyway, and
/// the bound keeps the weighted sum far from overflow). 0 is kube's "unset", which is 1.
fn validate_weight(plugin: &RawPlugin, errors: &mut Vec<FieldError>) {
    if let Some(weight) = plugin.weight {
        if weight != 0 && !(1..=MAX_WEIGHT).contains(&weight) {
            errors.push(FieldError::invalid(
                child(&plugin.path, "weight"),
                number(weight),
                format!("not in valid range [1, {MAX_WEIGHT}]"),
            ));
        }
    }
}

/// The disabled names of a set: `*`, keel's plugins, or kube's plugins keel lacks.
fn disabled(set: &PluginSet, errors: &mut Vec<FieldError>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for plugin in &set.disabled {
        let name_path = child(&plugin.path, "name");
        if plugin.name.is_empty() {
            errors.push(FieldError::required(name_path, ""));
        } else if !may_disable(&plugin.name) {
            errors.push(FieldError::not_supported(
                name_path,
                &plugin.name,
                &disable_names(),
            ));
        } else {
            names.insert(plugin.name.clone());
        }
    }
    names
}

/// kube's `mergePluginSet` for multiPoint: the defaults in order, minus the disabled ones (all
/// with `*`), a default the profile enables again replaced in place by the profile's entry (its
/// weight included, even absent), then the profile's other entries.
fn merge_multi_point(custom: &[Entry], disabled: &BTreeSet<String>) -> Vec<Entry> {
    let mut merged = Vec::with_capacity(DEFAULT_MULTI_POINT.len() + custom.len());
    let mut replaced = BTreeSet::new();
    if !disabled.contains("*") {
        for (kind, weight) in DEFAULT_MULTI_POINT {
            if disabled.contains(kind.name()) {
                continue;
            }
            match custom.iter().position(|entry| entry.kind == kind) {
                Some(i) => {
                    replaced.insert(i);
                    merged.push(custom[i].clone());
                }
                None => merged.push(Entry { kind, weight }),
            }
        }
    }
    for (i, entry) in custom.iter().enumerate() {
        if !replaced.contains(&i) {
            merged.push(entry.clone());
        }
    }
    merged
}

/// kube's `expandMultiPointPlugins` for one point: the point's own entries that multiPoint
/// also names come first (in the point's order), then multiPoint's plugins of this point not
/// disabled at it, then the point's other entries. `*` disabled at the point skips multiPoint.
fn expand(
    point: Point,
    specific: &[Entry],
    disabled: &BTreeSet<String>,
    multi_point: &[Entry],
) -> Vec<PluginKind> {
    let own: Vec<PluginKind> = specific.iter().map(|entry| entry.kind).collect();
    if multi_point.is_empty() || disabled.contains("*") {
        return own;
    }
    let mut from_multi_point = Vec::new();
    let mut overridden = Vec::new();
    for entry in multi_point {
        let kind = entry.kind;
        if !kind.implements(point) || disabled.contains(kind.name()) {
            continue;
        }
        if own.contains(&kind) {
            overridden.push(kind);
        } else if !from_multi_point.contains(&kind) {
            from_multi_point.push(kind);
        }
    }
    let mut expanded: Vec<PluginKind> = own
        .iter()
        .copied()
        .filter(|kind| overridden.contains(kind))
        .collect();
    expanded.extend(from_multi_point);
    expanded.extend(
        own.iter()
            .copied()
            .filter(|kind| !overridden.contains(kind)),
    );
    expanded
}

/// A plugin as the profile's lists hold it: one allocation, seen through each trait it has.
struct Instance {
    filter: Option<Arc<dyn FilterPlugin>>,
    score: Option<Arc<dyn ScorePlugin>>,
}

fn filter_only<T: FilterPlugin + 'static>(plugin: T) -> Instance {
    let filter: Arc<dyn FilterPlugin> = Arc::new(plugin);
    Instance {
        filter: Some(filter),
        score: None,
    }
}

fn score_only<T: ScorePlugin + 'static>(plugin: T) -> Instance {
    let score: Arc<dyn ScorePlugin> = Arc::new(plugin);
    Instance {
        filter: None,
        score: Some(score),
    }
}

fn both<T: FilterPlugin + ScorePlugin + 'static>(plugin: T) -> Instance {
    let plugin = Arc::new(plugin);
    let filter: Arc<dyn FilterPlugin> = plugin.clone();
    let score: Arc<dyn ScorePlugin> = plugin;
    Instance {
        filter: Some(filter),
        score: Some(score),
    }
}

/// Builds one plugin with the profile's args; `Err` is the plugin's refusal.
fn instantiate(kind: PluginKind, args: &ProfileArgs, env: &PluginEnv) -> Result<Instance, String> {
    Ok(match kind {
        PluginKind::NodeUnschedulable => filter_only(NodeUnschedulable),
        PluginKind::NodeName => filter_only(NodeName),
        PluginKind::NodePorts => filter_only(NodePorts),
        PluginKind::VolumeRestrictions => filter_only(VolumeRestrictions),
        PluginKind::TaintToleration => both(TaintToleration),
        PluginKind::NodeAffinity => both(
            NodeAffinity::new(args.node_affinity.as_ref()).map_err(|error| error.to_string())?,
        ),
        PluginKind::NodeResourcesFit => {
            both(NodeResourcesFit::new(args.fit.clone()).map_err(|error| error.to_string())?)
        }
        PluginKind::PodTopologySpread => {
            let plugin =
                PodTopologySpread::new(args.spread.clone()).map_err(|error| error.to_string())?;
            match &env.default_selector {
                Some(source) => {
                    let source = Arc::clone(source);
                    both(
                        plugin.with_default_selector(move |pod: &Pod| source.default_selector(pod)),
                    )
                }
                None => both(plugin),
            }
        }
        PluginKind::InterPodAffinity => both(
            InterPodAffinity::new(args.inter_pod, Arc::clone(&env.namespace_labels))
                .map_err(|error| error.to_string())?,
        ),
        PluginKind::NodeResourcesBalancedAllocation => score_only(
            BalancedAllocation::new(args.balanced.clone()).map_err(|error| error.to_string())?,
        ),
        PluginKind::ImageLocality => score_only(ImageLocality::default()),
    })
}
