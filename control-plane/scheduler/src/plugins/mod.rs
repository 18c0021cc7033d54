//! kube-scheduler's in-tree plugins, each named as kube-scheduler names it.
//!
//! | plugin | filter | score |
//! |---|---|---|
//! | [`NodeUnschedulable`] | `spec.unschedulable` | |
//! | [`NodeName`] | `spec.nodeName` | |
//! | [`TaintToleration`] | NoSchedule/NoExecute taints | untolerated PreferNoSchedule taints |
//! | [`NodeAffinity`] | `nodeSelector`, required node affinity | preferred node affinity |
//! | [`NodeResourcesFit`] | requests against free allocatable | LeastAllocated, MostAllocated, RequestedToCapacityRatio |
//! | [`BalancedAllocation`] | | balance of CPU and memory use |
//! | [`NodePorts`] | host port conflicts | |
//! | [`ImageLocality`] | | images already on the node |
//! | [`InterPodAffinity`] | required pod affinity and anti-affinity (the pod's and the placed pods') | preferred pod affinity and anti-affinity, both ways |
//! | [`VolumeRestrictions`] | inline GCE PD, AWS EBS, RBD, iSCSI disks already mounted on the node | |
//! | [`PodTopologySpread`] | `DoNotSchedule` topology spread constraints (`maxSkew`, `minDomains`) | `ScheduleAnyway` topology spread constraints, emptiest domains first |

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod resource_allocation;
pub mod taint_toleration;
pub mod volume_restrictions;

pub use balanced_allocation::BalancedAllocation;
pub use image_locality::ImageLocality;
pub use inter_pod_affinity::{InterPodAffinity, InterPodAffinityArgs};
pub use node_affinity::NodeAffinity;
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_fit::{FitArgs, NodeResourcesFit, ScoringStrategy, UtilizationShapePoint};
pub use node_unschedulable::NodeUnschedulable;
pub use pod_topology_spread::{DefaultingType, PodTopologySpread, TopologySpreadArgs};
pub use resource_allocation::{ArgsError, ResourceSpec};
pub use taint_toleration::TaintToleration;
pub use volume_restrictions::VolumeRestrictions;
