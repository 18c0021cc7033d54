//! `pluginConfig[].args`: the five argument types of keel's plugins, decoded strictly (phase
//! one), then defaulted and validated as kube-scheduler does (`SetDefaults_*Args`,
//! `Validate*Args`), into the plugins' own argument types (phase two).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{NodeAffinity as NodeAffinitySpec, TopologySpreadConstraint};
use keel_api::validation::is_qualified_name;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{number, quote, FieldError};
use super::node::{child, index, object, optional_type_meta, Fields, IntType, Node, API_VERSION};
use super::registry::PluginKind;
use crate::plugins::inter_pod_affinity::InterPodAffinityArgs;
use crate::plugins::node_affinity::NodeAffinity;
use crate::plugins::pod_topology_spread::{DefaultingType, TopologySpreadArgs};
use crate::plugins::resource_allocation::{default_resources, ResourceSpec};
use crate::plugins::{FitArgs, ScoringStrategy, UtilizationShapePoint};

/// The plugins that take args, as "supported values" lists them (sorted, as kube's sets).
const WITH_ARGS: [PluginKind; 5] = [
    PluginKind::InterPodAffinity,
    PluginKind::NodeAffinity,
    PluginKind::NodeResourcesBalancedAllocation,
    PluginKind::NodeResourcesFit,
    PluginKind::PodTopologySpread,
];

const LEAST_ALLOCATED: &str = "LeastAllocated";
const MOST_ALLOCATED: &str = "MostAllocated";
const REQUESTED_TO_CAPACITY_RATIO: &str = "RequestedToCapacityRatio";
const SYSTEM: &str = "System";
const LIST: &str = "List";
const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

/// Args as written, before kube's defaults.
#[derive(Debug)]
pub(crate) enum PluginArgs {
    Fit(FitRaw),
    Balanced(Vec<RawResource>),
    NodeAffinity(Option<NodeAffinitySpec>),
    Spread(SpreadRaw),
    InterPod(InterPodRaw),
}

#[derive(Debug)]
pub(crate) struct RawResource {
    name: String,
    weight: i64,
}

#[derive(Debug)]
pub(crate) struct FitRaw {
    ignored_resources: Vec<String>,
    ignored_resource_groups: Vec<String>,
    scoring_strategy: Option<StrategyRaw>,
}

#[derive(Debug)]
pub(crate) struct StrategyRaw {
    kind: String,
    resources: Vec<RawResource>,
    /// `requestedToCapacityRatio.shape`, `(utilization, score)`; `None` when the param is unset.
    shape: Option<Vec<(i64, i64)>>,
}

#[derive(Debug)]
pub(crate) struct SpreadRaw {
    default_constraints: Vec<TopologySpreadConstraint>,
    defaulting_type: Option<String>,
}

#[derive(Debug)]
pub(crate) struct InterPodRaw {
    hard_pod_affinity_weight: Option<i64>,
    ignore_preferred_terms_of_existing_pods: bool,
}

/// The arguments of one profile's plugins, defaulted and validated.
pub(crate) struct ProfileArgs {
    pub(crate) fit: FitArgs,
    pub(crate) balanced: Vec<ResourceSpec>,
    pub(crate) node_affinity: Option<NodeAffinitySpec>,
    pub(crate) spread: TopologySpreadArgs,
    pub(crate) inter_pod: InterPodAffinityArgs,
    /// Where each plugin's args were written, for the plugin's own refusal.
    pub(crate) paths: Vec<(PluginKind, String)>,
}

impl Default for ProfileArgs {
    /// kube's defaults for every plugin, as when `pluginConfig` is empty.
    fn default() -> ProfileArgs {
        ProfileArgs {
            fit: FitArgs::default(),
            balanced: default_resources(),
            node_affinity: None,
            spread: TopologySpreadArgs {
                default_constraints: Vec::new(),
                defaulting_type: DefaultingType::System,
            },
            inter_pod: InterPodAffinityArgs::default(),
            paths: Vec::new(),
        }
    }
}

impl ProfileArgs {
    /// The path of the plugin's args, if the profile set them.
    pub(crate) fn path(&self, kind: PluginKind) -> Option<&str> {
        self.paths
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, path)| path.as_str())
    }
}

/// Decodes the args of plugin `name` (`None`: no args given). `Err` holds the names that take
/// args, when `name` is not one of them.
pub(crate) fn decode_args(
    name: &str,
    node: Option<&Node>,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Result<Option<PluginArgs>, Vec<&'static str>> {
    let Some(kind) = PluginKind::from_name(name).filter(|kind| WITH_ARGS.contains(kind)) else {
        return Err(WITH_ARGS.into_iter().map(PluginKind::name).collect());
    };
    let Some(node) = node else {
        return Ok(None);
    };
    let go_type = format!("{name}Args");
    let known: &[&str] = match kind {
        PluginKind::NodeResourcesFit => &[
            "apiVersion",
            "kind",
            "ignoredResources",
            "ignoredResourceGroups",
            "scoringStrategy",
        ],
        PluginKind::NodeResourcesBalancedAllocation => &["apiVersion", "kind", "resources"],
        PluginKind::NodeAffinity => &["apiVersion", "kind", "addedAffinity"],
        PluginKind::PodTopologySpread => {
            &["apiVersion", "kind", "defaultConstraints", "defaultingType"]
        }
        _ => &[
            "apiVersion",
            "kind",
            "hardPodAffinityWeight",
            "ignorePreferredTermsOfExistingPods",
        ],
    };
    let Some(fields) = object(node, path, &go_type, known, errors) else {
        return Ok(None);
    };
    // Args may name their type, as kube's nested decoding allows; it must be this plugin's.
    optional_type_meta(&fields, API_VERSION, &go_type, errors);
    let args = match kind {
        PluginKind::NodeResourcesFit => PluginArgs::Fit(FitRaw {
            ignored_resources: fields.strings("ignoredResources", errors),
            ignored_resource_groups: fields.strings("ignoredResourceGroups", errors),
            scoring_strategy: fields
                .get("scoringStrategy")
                .and_then(|node| strategy(node, &fields.at("scoringStrategy"), errors)),
        }),
        PluginKind::NodeResourcesBalancedAllocation => {
            PluginArgs::Balanced(resources(&fields, errors))
        }
        PluginKind::NodeAffinity => PluginArgs::NodeAffinity(
            fields
                .get("addedAffinity")
                .and_then(|node| typed(node, &fields.at("addedAffinity"), errors)),
        ),
        PluginKind::PodTopologySpread => {
            let mut default_constraints: Vec<TopologySpreadConstraint> = Vec::new();
            let path = fields.at("defaultConstraints");
            if let Some(items) =
                fields.list("defaultConstraints", "[]TopologySpreadConstraint", errors)
            {
                for (i, item) in items.iter().enumerate() {
                    if let Some(constraint) = typed(item, &index(&path, i), errors) {
                        default_constraints.push(constraint);
                    }
                }
            }
            PluginArgs::Spread(SpreadRaw {
                default_constraints,
                defaulting_type: fields.string("defaultingType", errors),
            })
        }
        _ => PluginArgs::InterPod(InterPodRaw {
            hard_pod_affinity_weight: fields.int("hardPodAffinityWeight", IntType::I32, errors),
            ignore_preferred_terms_of_existing_pods: fields
                .boolean("ignorePreferredTermsOfExistingPods", errors)
                .unwrap_or(false),
        }),
    };
    Ok(Some(args))
}

fn strategy(node: &Node, path: &str, errors: &mut Vec<FieldError>) -> Option<StrategyRaw> {
    let fields = object(
        node,
        path,
        "ScoringStrategy",
        &["type", "resources", "requestedToCapacityRatio"],
        errors,
    )?;
    let shape = fields.get("requestedToCapacityRatio").and_then(|node| {
        let ratio = object(
            node,
            &fields.at("requestedToCapacityRatio"),
            "RequestedToCapacityRatioParam",
            &["shape"],
            errors,
        )?;
        Some(shape(&ratio, errors))
    });
    Some(StrategyRaw {
        kind: fields.string("type", errors).unwrap_or_default(),
        resources: resources(&fields, errors),
        shape,
    })
}

/// `resources: [{name, weight}]` (kube's `ResourceSpec`, weight an int64).
fn resources(fields: &Fields<'_>, errors: &mut Vec<FieldError>) -> Vec<RawResource> {
    let Some(items) = fields.list("resources", "[]ResourceSpec", errors) else {
        return Vec::new();
    };
    let path = fields.at("resources");
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(resource) = object(
            item,
            &index(&path, i),
            "ResourceSpec",
            &["name", "weight"],
            errors,
        ) {
            out.push(RawResource {
                name: resource.string("name", errors).unwrap_or_default(),
                weight: resource.int("weight", IntType::I64, errors).unwrap_or(0),
            });
        }
    }
    out
}

fn shape(fields: &Fields<'_>, errors: &mut Vec<FieldError>) -> Vec<(i64, i64)> {
    let Some(items) = fields.list("shape", "[]UtilizationShapePoint", errors) else {
        return Vec::new();
    };
    let path = fields.at("shape");
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(point) = object(
            item,
            &index(&path, i),
            "UtilizationShapePoint",
            &["utilization", "score"],
            errors,
        ) {
            out.push((
                point.int("utilization", IntType::I32, errors).unwrap_or(0),
                point.int("score", IntType::I32, errors).unwrap_or(0),
            ));
        }
    }
    out
}

/// A Kubernetes API type (`NodeAffinity`, `TopologySpreadConstraint`) through its serde
/// implementation, strictly: k8s-openapi ignores unknown fields, so the value is encoded back
/// and every input field the encoding lacks is reported as unknown.
fn typed<T: DeserializeOwned + Serialize>(
    node: &Node,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let Some(json) = node.to_json() else {
        errors.push(FieldError::invalid(
            path,
            node.render(),
            "a number is out of range",
        ));
        return None;
    };
    let value = match serde_json::from_value::<T>(json.clone()) {
        Ok(value) => value,
        Err(error) => {
            errors.push(FieldError::invalid(path, node.render(), error.to_string()));
            return None;
        }
    };
    match serde_json::to_value(&value) {
        Ok(known) => unknown_fields(&json, &known, path, errors),
        Err(error) => errors.push(FieldError::invalid(path, node.render(), error.to_string())),
    }
    Some(value)
}

fn unknown_fields(
    input: &serde_json::Value,
    known: &serde_json::Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    match (input, known) {
        (serde_json::Value::Object(input), serde_json::Value::Object(known)) => {
            for (key, value) in input {
                // null is "unset" to Go's decoder, and k8s-openapi drops it likewise.
                if value.is_null() {
                    continue;
                }
                match known.get(key) {
                    Some(known) => unknown_fields(value, known, &child(path, key), errors),
                    None => errors.push(FieldError::unknown(child(path, key))),
                }
            }
        }
        (serde_json::Value::Array(input), serde_json::Value::Array(known)) => {
            for (i, (value, known)) in input.iter().zip(known).enumerate() {
                unknown_fields(value, known, &index(path, i), errors);
            }
        }
        _ => {}
    }
}

/// Applies kube's defaults to `args`, validates them, and stores them in `into`.
pub(crate) fn resolve(
    args: &PluginArgs,
    path: &str,
    into: &mut ProfileArgs,
    errors: &mut Vec<FieldError>,
) {
    match args {
        PluginArgs::Fit(raw) => {
            into.fit = resolve_fit(raw, path, errors);
            into.paths
                .push((PluginKind::NodeResourcesFit, path.to_owned()));
        }
        PluginArgs::Balanced(raw) => {
            into.balanced = resolve_balanced(raw, path, errors);
            into.paths
                .push((PluginKind::NodeResourcesBalancedAllocation, path.to_owned()));
        }
        PluginArgs::NodeAffinity(added) => {
            // keel's plugin parses the added affinity as kube's `nodeaffinity.NewNodeSelector`
            // does for validation; its refusal is the validation error.
            if let Err(error) = NodeAffinity::new(added.as_ref()) {
                errors.push(FieldError::plugin(child(path, "addedAffinity"), error.0));
            }
            into.node_affinity = added.clone();
            into.paths.push((PluginKind::NodeAffinity, path.to_owned()));
        }
        PluginArgs::Spread(raw) => {
            into.spread = resolve_spread(raw, path, errors);
            into.paths
                .push((PluginKind::PodTopologySpread, path.to_owned()));
        }
        PluginArgs::InterPod(raw) => {
            // SetDefaults_InterPodAffinityArgs: an unset weight is 1.
            let weight = raw.hard_pod_affinity_weight.unwrap_or(1);
            if !(0..=100).contains(&weight) {
                errors.push(FieldError::invalid(
                    child(path, "hardPodAffinityWeight"),
                    number(weight),
                    "not in valid range [0, 100]",
                ));
            }
            into.inter_pod = InterPodAffinityArgs {
                // In range once validated; a refused value never reaches a plugin.
                hard_pod_affinity_weight: i32::try_from(weight).unwrap_or(1),
                ignore_preferred_terms_of_existing_pods: raw
                    .ignore_preferred_terms_of_existing_pods,
            };
            into.paths
                .push((PluginKind::InterPodAffinity, path.to_owned()));
        }
    }
}

/// `SetDefaults_NodeResourcesFitArgs` then `ValidateNodeResourcesFitArgs`.
fn resolve_fit(raw: &FitRaw, path: &str, errors: &mut Vec<FieldError>) -> FitArgs {
    let resources_path = child(path, "ignoredResources");
    for (i, resource) in raw.ignored_resources.iter().enumerate() {
        label_name(&index(&resources_path, i), resource, errors);
    }
    let groups_path = child(path, "ignoredResourceGroups");
    for (i, group) in raw.ignored_resource_groups.iter().enumerate() {
        let group_path = index(&groups_path, i);
        if group.contains('/') {
            errors.push(FieldError::invalid(
                group_path.clone(),
                quote(group),
                "resource group name can't contain '/'",
            ));
        }
        label_name(&group_path, group, errors);
    }

    let strategy_path = child(path, "scoringStrategy");
    let (strategy, resources) = match &raw.scoring_strategy {
        // No strategy: LeastAllocated over CPU and memory.
        None => (ScoringStrategy::LeastAllocated, default_resources()),
        Some(raw) => {
            let resources = scoring_resources(&raw.resources);
            let resources_path = child(&strategy_path, "resources");
            for (i, resource) in resources.iter().enumerate() {
                if !(1..=100).contains(&resource.weight) {
                    errors.push(FieldError::invalid(
                        child(&index(&resources_path, i), "weight"),
                        number(resource.weight),
                        format!(
                            "resource weight of {} not in valid range (0, 100]",
                            resource.name
                        ),
                    ));
                }
            }
            let ratio_path = child(&strategy_path, "requestedToCapacityRatio");
            let strategy = match raw.kind.as_str() {
                LEAST_ALLOCATED => Some(ScoringStrategy::LeastAllocated),
                MOST_ALLOCATED => Some(ScoringStrategy::MostAllocated),
                REQUESTED_TO_CAPACITY_RATIO => match &raw.shape {
                    None => {
                        errors.push(FieldError::required(
                            ratio_path.clone(),
                            "must be specified when type is RequestedToCapacityRatio",
                        ));
                        None
                    }
                    Some(shape) => {
                        let shape = function_shape(shape, &child(&ratio_path, "shape"), errors);
                        Some(ScoringStrategy::RequestedToCapacityRatio { shape })
                    }
                },
                other => {
                    errors.push(FieldError::not_supported(
                        child(&strategy_path, "type"),
                        other,
                        &[LEAST_ALLOCATED, MOST_ALLOCATED, REQUESTED_TO_CAPACITY_RATIO],
                    ));
                    None
                }
            };
            if raw.kind != REQUESTED_TO_CAPACITY_RATIO && raw.shape.is_some() {
                errors.push(FieldError::forbidden(
                    ratio_path,
                    "must be nil when type is not RequestedToCapacityRatio",
                ));
            }
            // A refused strategy never reaches the plugin; the default stands in meanwhile.
            (strategy.unwrap_or_default(), resources)
        }
    };
    FitArgs {
        ignored_resources: raw.ignored_resources.iter().cloned().collect(),
        ignored_resource_groups: raw.ignored_resource_groups.iter().cloned().collect(),
        strategy,
        resources,
    }
}

/// The scoring resources with kube's defaults: none listed is CPU and memory; weight 0 is 1.
fn scoring_resources(raw: &[RawResource]) -> Vec<ResourceSpec> {
    if raw.is_empty() {
        return default_resources();
    }
    raw.iter()
        .map(|resource| {
            let weight = if resource.weight == 0 {
                1
            } else {
                resource.weight
            };
            ResourceSpec::new(resource.name.clone(), weight)
        })
        .collect()
}

/// kube's `validateFunctionShape`: at least one point, utilizations strictly increasing (the
/// first offender reported), utilization in [0, 100], score in [0, 10].
fn function_shape(
    shape: &[(i64, i64)],
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<UtilizationShapePoint> {
    if shape.is_empty() {
        errors.push(FieldError::required(
            path,
            "at least one point must be specified",
        ));
        return Vec::new();
    }
    // Only the first offender, as kube's loop breaks there.
    if let Some(i) = shape.windows(2).position(|pair| pair[0].0 >= pair[1].0) {
        errors.push(FieldError::invalid(
            child(&index(path, i + 1), "utilization"),
            number(shape[i + 1].0),
            "values must be sorted in increasing order",
        ));
    }
    for (i, &(utilization, score)) in shape.iter().enumerate() {
        if !(0..=100).contains(&utilization) {
            errors.push(FieldError::invalid(
                child(&index(path, i), "utilization"),
                number(utilization),
                "not in valid range [0, 100]",
            ));
        }
        if !(0..=10).contains(&score) {
            errors.push(FieldError::invalid(
                child(&index(path, i), "score"),
                number(score),
                "not in valid range [0, 10]",
            ));
        }
    }
    shape
        .iter()
        .map(|&(utilization, score)| UtilizationShapePoint {
            // Decoded as int32, so these conversions hold.
            utilization: i32::try_from(utilization).unwrap_or(i32::MAX),
            score: i32::try_from(score).unwrap_or(i32::MAX),
        })
        .collect()
}

/// `SetDefaults_NodeResourcesBalancedAllocationArgs` then its validation: each resource once,
/// each of weight 1.
fn resolve_balanced(
    raw: &[RawResource],
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<ResourceSpec> {
    let resources = scoring_resources(raw);
    let resources_path = child(path, "resources");
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (i, resource) in resources.iter().enumerate() {
        let resource_path = index(&resources_path, i);
        if !seen.insert(resource.name.clone()) {
            errors.push(FieldError::duplicate(
                child(&resource_path, "name"),
                &resource.name,
            ));
        }
        if resource.weight != 1 {
            errors.push(FieldError::invalid(
                child(&resource_path, "weight"),
                number(resource.weight),
                "must be 1",
            ));
        }
    }
    resources
}

/// `SetDefaults_PodTopologySpreadArgs` then `ValidatePodTopologySpreadArgs`.
fn resolve_spread(raw: &SpreadRaw, path: &str, errors: &mut Vec<FieldError>) -> TopologySpreadArgs {
    let defaulting = raw.defaulting_type.as_deref().unwrap_or(SYSTEM);
    let defaulting_path = child(path, "defaultingType");
    let defaulting_type = match defaulting {
        SYSTEM => {
            if !raw.default_constraints.is_empty() {
                errors.push(FieldError::invalid(
                    defaulting_path,
                    quote(SYSTEM),
                    "when .defaultConstraints are not empty",
                ));
            }
            DefaultingType::System
        }
        LIST => DefaultingType::List,
        other => {
            errors.push(FieldError::not_supported(
                defaulting_path,
                other,
                &[SYSTEM, LIST],
            ));
            DefaultingType::System
        }
    };
    let constraints_path = child(path, "defaultConstraints");
    for (i, constraint) in raw.default_constraints.iter().enumerate() {
        let constraint_path = index(&constraints_path, i);
        if constraint.max_skew <= 0 {
            errors.push(FieldError::invalid(
                child(&constraint_path, "maxSkew"),
                number(constraint.max_skew),
                "not in valid range (0, inf)",
            ));
        }
        let key_path = child(&constraint_path, "topologyKey");
        if constraint.topology_key.is_empty() {
            errors.push(FieldError::required(key_path, "can not be empty"));
        } else {
            label_name(&key_path, &constraint.topology_key, errors);
        }
        let when_path = child(&constraint_path, "whenUnsatisfiable");
        match constraint.when_unsatisfiable.as_str() {
            "" => errors.push(FieldError::required(when_path, "can not be empty")),
            DO_NOT_SCHEDULE | SCHEDULE_ANYWAY => {}
            other => errors.push(FieldError::not_supported(
                when_path,
                other,
                &[DO_NOT_SCHEDULE, SCHEDULE_ANYWAY],
            )),
        }
        if constraint.label_selector.is_some() {
            errors.push(FieldError::forbidden(
                child(&constraint_path, "labelSelector"),
                "constraint must not define a selector, as they deduced for each pod",
            ));
        }
        let repeated = raw.default_constraints[..i].iter().any(|other| {
            other.topology_key == constraint.topology_key
                && other.when_unsatisfiable == constraint.when_unsatisfiable
        });
        if repeated {
            errors.push(FieldError::duplicate(
                constraint_path,
                &format!(
                    "{{{}, {}}}",
                    constraint.topology_key, constraint.when_unsatisfiable
                ),
            ));
        }
    }
    TopologySpreadArgs {
        default_constraints: raw.default_constraints.clone(),
        defaulting_type,
    }
}

/// `metav1validation.ValidateLabelName`: one Invalid error per rule the name breaks.
fn label_name(path: &str, name: &str, errors: &mut Vec<FieldError>) {
    for message in is_qualified_name(name) {
        errors.push(FieldError::invalid(path, quote(name), message));
    }
}
