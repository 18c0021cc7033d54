//! PodTopologySpread: a pod's `topologySpreadConstraints` keep the pods they select spread
//! evenly over topology domains (zones, hosts, racks…). A `DoNotSchedule` constraint rules out
//! the nodes whose domain would then hold more than `maxSkew` pods over the least-loaded
//! eligible domain (filter); a `ScheduleAnyway` constraint prefers the nodes whose domains hold
//! fewer of them (score).
//!
//! kube-scheduler's `podtopologyspread` plugin as of Kubernetes 1.33, with every feature gate
//! of the plugin at its default (all GA or beta-on): `minDomains`, `nodeAffinityPolicy`
//! (`Honor` unless set), `nodeTaintsPolicy` (`Ignore` unless set) and `matchLabelKeys`.
//!
//! How the pods are counted, for one constraint:
//! - a node counts only if it carries *every* topology key of the pod's constraints of that
//!   kind (hard or soft), and passes the constraint's inclusion policies (the pod's node
//!   selector and required affinity when `Honor`, its tolerations of NoSchedule/NoExecute
//!   taints when `Honor`);
//! - on such a node, the pods of the incoming pod's namespace, not terminating, that the
//!   constraint's selector matches (`labelSelector` ANDed with `matchLabelKeys`; a missing
//!   `labelSelector` selects no pod, `{}` every pod);
//! - a domain is a value of the topology key on an eligible node, even with no pod.
//!
//! When the pod has no constraint of its own, the plugin's default constraints apply
//! ([`TopologySpreadArgs`]), with the selector of the Services and controllers that select
//! the pod (see [`DefaultSelectorSource`]).
//!
//! # Layout
//! - `constraints`: a constraint as the plugin applies it (selector, policies), and the counts.
//! - `filtering`: PreFilter and Filter (`DoNotSchedule`).
//! - `scoring`: PreScore, Score and NormalizeScore (`ScheduleAnyway`).

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

mod constraints;
mod filtering;
mod scoring;

pub const NAME: &str = "PodTopologySpread";
/// The filter's reason when placing the pod on the node would exceed a constraint's `maxSkew`.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// The filter's reason when the node lacks the topology key of one of the pod's constraints:
/// no eviction can give it the label, hence UnschedulableAndUnresolvable.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// `whenUnsatisfiable` of a hard constraint (the filter's).
pub const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
/// `whenUnsatisfiable` of a soft constraint (the score's).
pub const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
/// The node label whose every value is one node: the score counts its pods on the node itself.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// Where the default constraints come from (`PodTopologySpreadArgs.defaultingType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultingType {
    /// kube-scheduler's built-in defaults: `kubernetes.io/hostname` with maxSkew 3 and
    /// `topology.kubernetes.io/zone` with maxSkew 5, both `ScheduleAnyway`.
    #[default]
    System,
    /// [`TopologySpreadArgs::default_constraints`], possibly none.
    List,
}

/// The plugin's arguments (kube-scheduler's `PodTopologySpreadArgs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopologySpreadArgs {
    /// The constraints of the pods that have none, with `List` defaulting. They name no
    /// selector: each pod's is deduced from the Services and controllers selecting it.
    pub default_constraints: Vec<TopologySpreadConstraint>,
    pub defaulting_type: DefaultingType,
}

/// Arguments kube-scheduler's `ValidatePodTopologySpreadArgs` refuses. kube reports them all;
/// keel reports the first, in kube's order (the defaulting type, then each constraint's fields
/// in turn), with kube's field path and wording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologySpreadArgsError {
    #[error("defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty")]
    SystemWithConstraints,
    #[error("defaultConstraints[{index}].maxSkew: Invalid value: {max_skew}: not in valid range (0, inf)")]
    MaxSkew { index: usize, max_skew: i32 },
    #[error("defaultConstraints[{index}].topologyKey: Required value: can not be empty")]
    EmptyTopologyKey { index: usize },
    #[error("defaultConstraints[{index}].topologyKey: Invalid value: {key:?}: {message}")]
    InvalidTopologyKey {
        index: usize,
        key: String,
        message: String,
    },
    #[error("defaultConstraints[{index}].whenUnsatisfiable: Required value: can not be empty")]
    EmptyWhenUnsatisfiable { index: usize },
    #[error("defaultConstraints[{index}].whenUnsatisfiable: Unsupported value: {value:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\"")]
    UnsupportedWhenUnsatisfiable { index: usize, value: String },
    #[error("defaultConstraints[{index}].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod")]
    LabelSelector { index: usize },
    #[error("defaultConstraints[{index}]: Duplicate value: \"{{{key}, {when_unsatisfiable}}}\"")]
    Duplicate {
        index: usize,
        key: String,
        when_unsatisfiable: String,
    },
}

/// The selector the default constraints count pods with: the selectors of the Services,
/// ReplicationControllers, ReplicaSets and StatefulSets that select the pod, ANDed
/// (kube-scheduler's `helper.DefaultSelector`). An empty selector means that nothing selects
/// the pod, and then no default constraint applies.
///
/// kube-scheduler reads those objects from its informers; keel's plugins see no API objects
/// but pods and nodes, so the scheduler that owns the watches hands the plugin this source. A
/// closure `Fn(&Pod) -> LabelSelector` is one.
pub trait DefaultSelectorSource: Send + Sync {
    fn default_selector(&self, pod: &Pod) -> LabelSelector;
}

impl<F> DefaultSelectorSource for F
where
    F: Fn(&Pod) -> LabelSelector + Send + Sync,
{
    fn default_selector(&self, pod: &Pod) -> LabelSelector {
        self(pod)
    }
}

/// The plugin. [`Default`] is kube-scheduler's default profile: System defaulting.
///
/// Default constraints (System or List) apply only once a [`DefaultSelectorSource`] is given
/// ([`PodTopologySpread::with_default_selector`]): without one, the plugin cannot tell which
/// pods belong with the incoming one, which is kube's case of a pod no Service or controller
/// selects — no default constraint. Pods with constraints of their own never need it.
#[derive(Clone)]
pub struct PodTopologySpread {
    /// The constraints of pods without any, already resolved from the defaulting type.
    default_constraints: Vec<TopologySpreadConstraint>,
    /// System defaulting: the score then spreads by hostname even on nodes without a zone.
    system_defaulted: bool,
    default_selector: Option<Arc<dyn DefaultSelectorSource>>,
}

impl PodTopologySpread {
    /// The plugin with `args`, refused as kube-scheduler refuses them at startup.
    pub fn new(args: TopologySpreadArgs) -> Result<PodTopologySpread, TopologySpreadArgsError> {
        validate(&args)?;
        let system_defaulted = args.defaulting_type == DefaultingType::System;
        let default_constraints = if system_defaulted {
            system_default_constraints()
        } else {
            args.default_constraints
        };
        Ok(PodTopologySpread {
            default_constraints,
            system_defaulted,
            default_selector: None,
        })
    }

    /// The plugin with a source for the default constraints' selector.
    pub fn with_default_selector(mut self, source: impl DefaultSelectorSource + 'static) -> Self {
        self.default_selector = Some(Arc::new(source));
        self
    }
}

impl Default for PodTopologySpread {
    fn default() -> PodTopologySpread {
        PodTopologySpread {
            default_constraints: system_default_constraints(),
            system_defaulted: true,
            default_selector: None,
        }
    }
}

impl fmt::Debug for PodTopologySpread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodTopologySpread")
            .field("default_constraints", &self.default_constraints)
            .field("system_defaulted", &self.system_defaulted)
            .field("default_selector", &self.default_selector.is_some())
            .finish()
    }
}

/// kube-scheduler's `systemDefaultConstraints`, in its order.
fn system_default_constraints() -> Vec<TopologySpreadConstraint> {
    vec![
        TopologySpreadConstraint {
            topology_key: LABEL_HOSTNAME.to_string(),
            when_unsatisfiable: SCHEDULE_ANYWAY.to_string(),
            max_skew: 3,
            ..Default::default()
        },
        TopologySpreadConstraint {
            topology_key: LABEL_TOPOLOGY_ZONE.to_string(),
            when_unsatisfiable: SCHEDULE_ANYWAY.to_string(),
            max_skew: 5,
            ..Default::default()
        },
    ]
}

/// kube-scheduler's `ValidatePodTopologySpreadArgs`, stopping at the first error.
fn validate(args: &TopologySpreadArgs) -> Result<(), TopologySpreadArgsError> {
    use TopologySpreadArgsError as E;
    if args.defaulting_type == DefaultingType::System && !args.default_constraints.is_empty() {
        return Err(E::SystemWithConstraints);
    }
    for (index, constraint) in args.default_constraints.iter().enumerate() {
        if constraint.max_skew <= 0 {
            return Err(E::MaxSkew {
                index,
                max_skew: constraint.max_skew,
            });
        }
        let key = &constraint.topology_key;
        if key.is_empty() {
            return Err(E::EmptyTopologyKey { index });
        }
        if let Some(message) = keel_api::validation::is_qualified_name(key)
            .into_iter()
            .next()
        {
            return Err(E::InvalidTopologyKey {
                index,
                key: key.clone(),
                message,
            });
        }
        match constraint.when_unsatisfiable.as_str() {
            "" => return Err(E::EmptyWhenUnsatisfiable { index }),
            DO_NOT_SCHEDULE | SCHEDULE_ANYWAY => {}
            other => {
                return Err(E::UnsupportedWhenUnsatisfiable {
                    index,
                    value: other.to_string(),
                })
            }
        }
        if constraint.label_selector.is_some() {
            return Err(E::LabelSelector { index });
        }
        let repeated = args.default_constraints[..index].iter().any(|other| {
            other.topology_key == constraint.topology_key
                && other.when_unsatisfiable == constraint.when_unsatisfiable
        });
        if repeated {
            return Err(E::Duplicate {
                index,
                key: key.clone(),
                when_unsatisfiable: constraint.when_unsatisfiable.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod filter_tests;

#[cfg(test)]
mod score_tests;
