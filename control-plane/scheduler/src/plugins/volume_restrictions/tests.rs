//! kube-scheduler's `volume_restrictions_test.go` disk cases (`TestGCEDiskConflicts`,
//! `TestAWSDiskConflicts`, `TestRBDDiskConflicts`, `TestISCSIDiskConflicts`), every case, and
//! the read-only rules of `isVolumeConflict` its tables leave out. (`TestAccessModeConflicts`
//! needs PersistentVolumeClaims, which keel does not serve.)

use k8s_openapi::api::core::v1::{
    AWSElasticBlockStoreVolumeSource, GCEPersistentDiskVolumeSource, ISCSIVolumeSource,
    RBDVolumeSource, Volume,
};

use super::*;
use crate::framework::Code;
use crate::testing::{node, node_info, pod};

fn gce(pd_name: &str, read_only: bool) -> Volume {
    Volume {
        gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
            pd_name: pd_name.to_string(),
            read_only: read_only.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn aws(volume_id: &str, read_only: bool) -> Volume {
    Volume {
        aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
            volume_id: volume_id.to_string(),
            read_only: read_only.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rbd(monitors: &[&str], pool: Option<&str>, image: &str, read_only: bool) -> Volume {
    Volume {
        rbd: Some(RBDVolumeSource {
            monitors: monitors.iter().map(|m| m.to_string()).collect(),
            pool: pool.map(str::to_string),
            image: image.to_string(),
            fs_type: Some("ext4".to_string()),
            read_only: read_only.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn iscsi(iqn: &str, read_only: bool) -> Volume {
    Volume {
        iscsi: Some(ISCSIVolumeSource {
            target_portal: "127.0.0.1:3260".to_string(),
            iqn: iqn.to_string(),
            fs_type: Some("ext4".to_string()),
            lun: 0,
            read_only: read_only.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What PreFilter and then Filter answer for a pod with `wanted` on a node whose one pod
/// mounts `existing` (no pod at all when `existing` is `None`): `None` for a PreFilter Skip.
fn judge(wanted: &[Volume], existing: Option<&[Volume]>) -> Option<Status> {
    let incoming = pod().name("incoming").volumes(wanted).obj();
    let pods = existing
        .map(|volumes| vec![pod().name("existing").node("m1").volumes(volumes).obj()])
        .unwrap_or_default();
    let node = node_info(node("m1").obj(), pods);
    let mut state = CycleState::new();
    let pre_filter =
        VolumeRestrictions.pre_filter(&incoming, std::slice::from_ref(&node), &mut state);
    match pre_filter.code {
        Code::Skip => None,
        Code::Success => Some(VolumeRestrictions.filter(&state, &incoming, &node)),
        other => panic!("PreFilter answered {other:?}"),
    }
}

/// (case, the incoming pod's volumes, the placed pod's if any, PreFilter+Filter's answer).
type Case<'a> = (&'a str, &'a [Volume], Option<&'a [Volume]>, Option<Status>);

/// Each of kube's four tables: the same cases over the disk kind's two volumes.
#[test]
fn kube_disk_conflict_tables() {
    let no_restriction = Volume {
        name: "volume with no restriction".to_string(),
        ..Default::default()
    };
    let kinds: [(&str, Volume, Volume); 4] = [
        ("GCE", gce("foo", false), gce("bar", false)),
        ("AWS", aws("foo", false), aws("bar", false)),
        (
            "RBD",
            rbd(&["a", "b"], Some("foo"), "bar", false),
            rbd(&["c", "d"], Some("foo"), "bar", false),
        ),
        (
            "ISCSI",
            iscsi("iqn.2016-12.server:storage.target01", false),
            iscsi("iqn.2017-12.server:storage.target01", false),
        ),
    ];
    let conflict = Some(Status::unschedulable(ERR_REASON_DISK_CONFLICT));
    for (kind, state, state2) in kinds {
        let one = std::slice::from_ref(&state);
        let cases: [Case<'_>; 4] = [
            ("nothing", &[], None, None),
            ("one state", &[], Some(one), None),
            ("same state", one, Some(one), conflict.clone()),
            (
                "different state",
                std::slice::from_ref(&state2),
                Some(one),
                Some(Status::success()),
            ),
        ];
        for (name, wanted, existing, want) in cases {
            assert_eq!(judge(wanted, existing), want, "{kind}: {name}");
        }
    }
    // Only in TestGCEDiskConflicts.
    assert_eq!(
        judge(std::slice::from_ref(&no_restriction), None),
        None,
        "pod with a volume that doesn't have restrictions"
    );
}

/// The read-only and identity rules of kube's `isVolumeConflict`, one line each:
/// (case, the incoming pod's volume, the placed pod's volume, conflict).
#[test]
fn read_only_and_identity_rules() {
    let cases: [(&str, Volume, Volume, bool); 14] = [
        (
            "GCE both read-only",
            gce("foo", true),
            gce("foo", true),
            false,
        ),
        (
            "GCE one read-only",
            gce("foo", true),
            gce("foo", false),
            true,
        ),
        (
            "GCE other read-only",
            gce("foo", false),
            gce("foo", true),
            true,
        ),
        (
            "AWS both read-only",
            aws("foo", true),
            aws("foo", true),
            true,
        ),
        (
            "RBD both read-only",
            rbd(&["a"], Some("p"), "i", true),
            rbd(&["a"], Some("p"), "i", true),
            false,
        ),
        (
            "RBD one read-only",
            rbd(&["a"], Some("p"), "i", true),
            rbd(&["a"], Some("p"), "i", false),
            true,
        ),
        (
            "RBD one monitor in common",
            rbd(&["a", "b"], Some("p"), "i", false),
            rbd(&["b", "c", "d"], Some("p"), "i", false),
            true,
        ),
        (
            "RBD other pool",
            rbd(&["a"], Some("p"), "i", false),
            rbd(&["a"], Some("q"), "i", false),
            false,
        ),
        (
            "RBD other image",
            rbd(&["a"], Some("p"), "i", false),
            rbd(&["a"], Some("p"), "j", false),
            false,
        ),
        (
            "RBD absent pool is kube's default rbd",
            rbd(&["a"], None, "i", false),
            rbd(&["a"], Some("rbd"), "i", false),
            true,
        ),
        (
            "ISCSI both read-only",
            iscsi("q", true),
            iscsi("q", true),
            false,
        ),
        (
            "ISCSI one read-only",
            iscsi("q", false),
            iscsi("q", true),
            true,
        ),
        (
            "different kinds",
            gce("foo", false),
            aws("foo", false),
            false,
        ),
        (
            "same name other kind",
            iscsi("foo", false),
            gce("foo", false),
            false,
        ),
    ];
    for (name, wanted, existing, conflict) in cases {
        let want = if conflict {
            Status::unschedulable(ERR_REASON_DISK_CONFLICT)
        } else {
            Status::success()
        };
        let got = judge(
            std::slice::from_ref(&wanted),
            Some(std::slice::from_ref(&existing)),
        );
        assert_eq!(got, Some(want), "{name}");
    }
}

/// A conflict with any one pod on the node refuses it; a pod on another node does not count.
#[test]
fn any_pod_on_the_node_and_only_that_node() {
    let incoming = pod()
        .volumes(&[gce("other", false), aws("vol", false)])
        .obj();
    let holder = pod()
        .name("holder")
        .node("m1")
        .volumes(&[aws("vol", false)])
        .obj();
    let bystander = pod()
        .name("bystander")
        .node("m1")
        .volumes(&[gce("x", false)])
        .obj();
    let crowded = node_info(node("m1").obj(), vec![bystander.clone(), holder]);
    assert_eq!(
        VolumeRestrictions.filter(&CycleState::new(), &incoming, &crowded),
        Status::unschedulable(ERR_REASON_DISK_CONFLICT)
    );
    let spared = node_info(node("m1").obj(), vec![bystander]);
    assert!(VolumeRestrictions
        .filter(&CycleState::new(), &incoming, &spared)
        .is_success());
}
