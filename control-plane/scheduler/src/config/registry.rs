//! The plugins a profile can name: keel's in-tree plugins, the extension points each implements
//! in kube-scheduler, and kube-scheduler's default plugin set.

use crate::plugins::{
    balanced_allocation, image_locality, inter_pod_affinity, node_affinity, node_name, node_ports,
    node_resources_fit, node_unschedulable, pod_topology_spread, taint_toleration,
    volume_restrictions,
};

/// One of keel's plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PluginKind {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    VolumeRestrictions,
    PodTopologySpread,
    InterPodAffinity,
    NodeResourcesBalancedAllocation,
    ImageLocality,
}

/// The extension points keel builds. kube's framework fills each from its own plugin set and
/// from `multiPoint`; keel's profile keeps only the filters and the scores, a plugin's
/// pre-filter and pre-score being methods of those (see the module docs of `config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    PreFilter,
    Filter,
    PreScore,
    Score,
}

impl Point {
    pub(crate) const ALL: [Point; 4] = [
        Point::PreFilter,
        Point::Filter,
        Point::PreScore,
        Point::Score,
    ];
}

/// kube-scheduler 1.33+'s `getDefaultPlugins()`
/// (`pkg/scheduler/apis/config/v1/default_plugins.go`): `multiPoint.enabled` in its order, restricted to the plugins keel has, with kube's weights
/// (`None`: no weight, the plugin does not score).
///
/// kube's defaults that keel lacks, and why:
/// - `SchedulingGates` (PreEnqueue): keeps gated pods out of the queue; keel's scheduling
///   queue does it itself, for every profile (disabling the plugin changes nothing).
/// - `PrioritySort` (QueueSort): the queue's order, likewise the queue's business.
/// - `NodeVolumeLimits`, `VolumeBinding`, `VolumeZone`: volume placement; keel's scheduler
///   does not model PersistentVolumes, CSI drivers or attach limits. (`VolumeRestrictions`'
///   inline-disk half is here; its ReadWriteOncePod half needs PersistentVolumeClaims.)
/// - `DynamicResources` (default since DRA went GA in 1.34): keel has no ResourceClaims.
/// - `DefaultPreemption` (PostFilter): keel preempts, but not as a profile's plugin: the
///   scheduling loop (`core::Core::schedule_next`) calls `preemption::preempt` for
///   every pod of every profile that fits nowhere, with kube's default args
///   (`minCandidateNodesPercentage` 10, `minCandidateNodesAbsolute` 100; fewer candidates
///   when PodTopologySpread or InterPodAffinity judge the pod). So disabling it
///   changes nothing, and its `pluginConfig` is refused rather than ignored.
/// - `DefaultBinder` (Bind): binding is the scheduling loop's job, not a configurable plugin.
///
/// (`EBSLimits`, `GCEPDLimits`, `AzureDiskLimits` left kube's defaults in 1.31 and are refused by
/// kube's v1 validation.)
pub(crate) const DEFAULT_MULTI_POINT: [(PluginKind, Option<i64>); 11] = [
    (PluginKind::NodeUnschedulable, None),
    (PluginKind::NodeName, None),
    (PluginKind::TaintToleration, Some(3)),
    (PluginKind::NodeAffinity, Some(2)),
    (PluginKind::NodePorts, None),
    (PluginKind::NodeResourcesFit, Some(1)),
    (PluginKind::VolumeRestrictions, None),
    (PluginKind::PodTopologySpread, Some(2)),
    (PluginKind::InterPodAffinity, Some(2)),
    (PluginKind::NodeResourcesBalancedAllocation, Some(1)),
    (PluginKind::ImageLocality, Some(1)),
];

/// kube-scheduler's in-tree plugin names that keel does not have. A profile may disable them
/// (a no-op here, as they never run) but not enable them.
pub(crate) const KUBE_ONLY_PLUGINS: [&str; 8] = [
    "SchedulingGates",
    "PrioritySort",
    "NodeVolumeLimits",
    "VolumeBinding",
    "VolumeZone",
    "DynamicResources",
    "DefaultPreemption",
    "DefaultBinder",
];

impl PluginKind {
    /// Every plugin, in kube's default order.
    pub(crate) const ALL: [PluginKind; 11] = [
        PluginKind::NodeUnschedulable,
        PluginKind::NodeName,
        PluginKind::TaintToleration,
        PluginKind::NodeAffinity,
        PluginKind::NodePorts,
        PluginKind::NodeResourcesFit,
        PluginKind::VolumeRestrictions,
        PluginKind::PodTopologySpread,
        PluginKind::InterPodAffinity,
        PluginKind::NodeResourcesBalancedAllocation,
        PluginKind::ImageLocality,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            PluginKind::NodeUnschedulable => node_unschedulable::NAME,
            PluginKind::NodeName => node_name::NAME,
            PluginKind::TaintToleration => taint_toleration::NAME,
            PluginKind::NodeAffinity => node_affinity::NAME,
            PluginKind::NodePorts => node_ports::NAME,
            PluginKind::NodeResourcesFit => node_resources_fit::NAME,
            PluginKind::VolumeRestrictions => volume_restrictions::NAME,
            PluginKind::PodTopologySpread => pod_topology_spread::NAME,
            PluginKind::InterPodAffinity => inter_pod_affinity::NAME,
            PluginKind::NodeResourcesBalancedAllocation => balanced_allocation::NAME,
            PluginKind::ImageLocality => image_locality::NAME,
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub(crate) fn is_filter(self) -> bool {
        !matches!(
            self,
            PluginKind::NodeResourcesBalancedAllocation | PluginKind::ImageLocality
        )
    }

    pub(crate) fn is_score(self) -> bool {
        !matches!(
            self,
            PluginKind::NodeUnschedulable
                | PluginKind::NodeName
                | PluginKind::NodePorts
                | PluginKind::VolumeRestrictions
        )
    }

    /// Whether kube's plugin of this name implements the extension point. PreFilter and
    /// PreScore follow kube's plugins, so that a profile naming a plugin at a point is refused
    /// exactly where kube refuses it ("does not extend PreFilterPlugin").
    pub(crate) fn implements(self, point: Point) -> bool {
        match point {
            Point::Filter => self.is_filter(),
            Point::Score => self.is_score(),
            Point::PreFilter => matches!(
                self,
                PluginKind::NodeAffinity
                    | PluginKind::NodePorts
                    | PluginKind::NodeResourcesFit
                    | PluginKind::VolumeRestrictions
                    | PluginKind::PodTopologySpread
                    | PluginKind::InterPodAffinity
            ),
            Point::PreScore => matches!(
                self,
                PluginKind::TaintToleration
                    | PluginKind::NodeAffinity
                    | PluginKind::NodeResourcesFit
                    | PluginKind::PodTopologySpread
                    | PluginKind::InterPodAffinity
                    | PluginKind::NodeResourcesBalancedAllocation
            ),
        }
    }

    /// The names of the plugins implementing `point` (all of them for `None`, i.e. multiPoint),
    /// for "supported values".
    pub(crate) fn names_at(point: Option<Point>) -> Vec<&'static str> {
        PluginKind::ALL
            .into_iter()
            .filter(|kind| point.is_none_or(|point| kind.implements(point)))
            .map(PluginKind::name)
            .collect()
    }
}

/// Whether `name` may appear in a `disabled` list: `*`, one of keel's plugins, or one of kube's
/// that keel lacks.
pub(crate) fn may_disable(name: &str) -> bool {
    name == "*" || PluginKind::from_name(name).is_some() || KUBE_ONLY_PLUGINS.contains(&name)
}

/// The names `disabled` accepts, for "supported values".
pub(crate) fn disable_names() -> Vec<&'static str> {
    let mut names = vec!["*"];
    names.extend(PluginKind::names_at(None));
    names.extend(KUBE_ONLY_PLUGINS);
    names
}
