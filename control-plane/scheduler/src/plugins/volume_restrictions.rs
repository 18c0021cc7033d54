//! VolumeRestrictions: a pod fits on a node only if none of its inline disks is already
//! mounted there by another pod in a way the disk cannot share (kube-scheduler's
//! `volumerestrictions` plugin).
//!
//! The disks that refuse sharing, as kube judges them:
//! - GCE persistent disk: the same `pdName`, unless both pods mount it read-only;
//! - AWS Elastic Block Store: the same `volumeID`, whatever the read-only flags;
//! - Ceph RBD: a monitor in common, the same pool and the same image, unless both read-only;
//! - iSCSI: the same IQN, unless both read-only.
//!
//! kube's plugin also refuses a second pod on a PersistentVolumeClaim whose access mode is
//! `ReadWriteOncePod`. That half cannot apply here: keel does not serve
//! PersistentVolumeClaims, so a claim's access modes are unknown and pods naming claims are
//! judged on their inline disks alone (kube, which reads the claim, would hold the pod while
//! the claim is missing).
//!
//! Queueing: the refusal is Unschedulable, not unresolvable — deleting the pod that holds the
//! disk frees it, so preemption may evict it, and a pod deletion moves the waiting pod back
//! to the active queue (keel's queue requeues on every pod deletion, which covers kube's
//! `isSchedulableAfterPodDeleted` hint), as does a new node.

use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::framework::{CycleState, FilterPlugin, Status};
use crate::node_info::NodeInfo;

pub const NAME: &str = "VolumeRestrictions";
/// kube's `ErrReasonDiskConflict`.
pub const ERR_REASON_DISK_CONFLICT: &str = "node(s) had no available disk";

/// The pool an RBD volume without one uses (kube's API defaulting of `RBDVolumeSource.pool`):
/// keel's API server does not default it, so an absent pool and `rbd` are the same pool.
const DEFAULT_RBD_POOL: &str = "rbd";

#[derive(Clone, Copy, Debug, Default)]
pub struct VolumeRestrictions;

impl FilterPlugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A pod without any of the four disk kinds conflicts with nothing (kube's PreFilter
    /// returns Skip).
    fn pre_filter(&self, pod: &Pod, _nodes: &[NodeInfo], _state: &mut CycleState) -> Status {
        if volumes(pod).iter().any(needs_check) {
            Status::success()
        } else {
            Status::skip()
        }
    }

    /// Unschedulable rather than unresolvable: evicting the pod holding the disk frees it.
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let conflict = volumes(pod)
            .iter()
            .filter(|volume| needs_check(volume))
            .any(|volume| node.pods.iter().any(|other| conflicts(volume, other)));
        if conflict {
            Status::unschedulable(ERR_REASON_DISK_CONFLICT)
        } else {
            Status::success()
        }
    }
}

fn volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.volumes.as_deref())
        .unwrap_or(&[])
}

/// Whether the volume is one of the kinds the plugin checks (kube's `needsRestrictionsCheck`).
fn needs_check(volume: &Volume) -> bool {
    volume.gce_persistent_disk.is_some()
        || volume.aws_elastic_block_store.is_some()
        || volume.rbd.is_some()
        || volume.iscsi.is_some()
}

/// Whether `volume` of the incoming pod collides with one of `existing`'s volumes (kube's
/// `isVolumeConflict`).
pub fn conflicts(volume: &Volume, existing: &Pod) -> bool {
    let both_read_only = |a: Option<bool>, b: Option<bool>| a == Some(true) && b == Some(true);
    volumes(existing).iter().any(|other| {
        if let (Some(disk), Some(other)) = (&volume.gce_persistent_disk, &other.gce_persistent_disk)
        {
            if disk.pd_name == other.pd_name && !both_read_only(disk.read_only, other.read_only) {
                return true;
            }
        }
        if let (Some(disk), Some(other)) = (
            &volume.aws_elastic_block_store,
            &other.aws_elastic_block_store,
        ) {
            // An EBS volume attaches to one instance at a time: read-only changes nothing.
            if disk.volume_id == other.volume_id {
                return true;
            }
        }
        if let (Some(disk), Some(other)) = (&volume.iscsi, &other.iscsi) {
            if disk.iqn == other.iqn && !both_read_only(disk.read_only, other.read_only) {
                return true;
            }
        }
        if let (Some(disk), Some(other)) = (&volume.rbd, &other.rbd) {
            let pool =
                |pool: &Option<String>| pool.as_deref().unwrap_or(DEFAULT_RBD_POOL).to_owned();
            let shared_monitor = disk
                .monitors
                .iter()
                .any(|monitor| other.monitors.contains(monitor));
            if shared_monitor
                && pool(&disk.pool) == pool(&other.pool)
                && disk.image == other.image
                && !both_read_only(disk.read_only, other.read_only)
            {
                return true;
            }
        }
        false
    })
}

#[cfg(test)]
mod tests;
