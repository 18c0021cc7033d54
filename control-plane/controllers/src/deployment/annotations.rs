//! The annotations a Deployment keeps on its ReplicaSets, as kube's `deployment_util.go`
//! reads and writes them: revisions (and the revisions a reused ReplicaSet served before),
//! the Deployment's own annotations, and the desired and max replicas proportional scaling
//! starts from.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The revision of a ReplicaSet in its Deployment's rollout history (and of the Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions a ReplicaSet served (set when a rollback reuses it).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's `spec.replicas + maxSurge` when the ReplicaSet was last scaled: the base
/// of proportional scaling.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const LAST_APPLIED_CONFIG_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// The longest `revision-history` annotation kube keeps (`maxRevHistoryLengthInChars`).
pub const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;

/// Annotations never copied from a Deployment to its ReplicaSets (`annotationsToSkip`).
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    LAST_APPLIED_CONFIG_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    DEPRECATED_ROLLBACK_TO,
];

/// Why an integer annotation did not parse (`getNonNegativeInt32FromAnnotation`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("strconv.ParseUint: parsing {0:?}: invalid syntax")]
    Syntax(String),
    #[error("strconv.ParseUint: parsing {0:?}: value out of range")]
    Range(String),
    #[error("value {0} is out of range (higher than {max})", max = i32::MAX)]
    AboveInt32(u64),
}

/// The revision of an object (`Revision`): 0 without the annotation.
pub fn revision(meta: &ObjectMeta) -> Result<i64, std::num::ParseIntError> {
    match meta
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(REVISION_ANNOTATION))
    {
        Some(value) => value.parse(),
        None => Ok(0),
    }
}

/// The highest revision among `rss`, skipping unparsable ones (`MaxRevision`).
pub fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter()
        .filter_map(|rs| revision(&rs.metadata).ok())
        .fold(0, i64::max)
}

/// Sets the Deployment's revision annotation; returns whether it changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let annotations = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
        return false;
    }
    annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
    true
}

/// Copies the Deployment's annotations but the skipped ones onto `rs`
/// (`copyDeploymentAnnotationsToReplicaSet`); returns whether any changed.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in d.metadata.annotations.iter().flatten() {
        if ANNOTATIONS_TO_SKIP.contains(&key.as_str()) || annotations.get(key) == Some(value) {
            continue;
        }
        annotations.insert(key.clone(), value.clone());
        changed = true;
    }
    changed
}

/// Sets the annotations of the new ReplicaSet (`SetNewReplicaSetAnnotations`): the
/// Deployment's own, a revision raised to `new_revision` (never lowered: old ReplicaSets may
/// have been deleted since), the revisions it served before when it is reused (a rollback),
/// within `history_limit` characters, and for one about to be created the replica
/// annotations (`replicas`: the Deployment's desired and its desired plus surge — the caller
/// computes them, so this module stays below the budget arithmetic). Returns whether any
/// changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
    history_limit: usize,
    replicas: (i32, i32),
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old_revision = annotations.get(REVISION_ANNOTATION).cloned();
    let had_revision = old_revision.is_some();
    let old_revision = old_revision.unwrap_or_default();
    let old_number = match old_revision.parse::<i64>() {
        Ok(number) => number,
        Err(_) if old_revision.is_empty() => 0,
        Err(error) => {
            tracing::warn!(%error, "updating replica set revision: old revision is not an int");
            return false;
        }
    };
    let new_number = match new_revision.parse::<i64>() {
        Ok(number) => number,
        Err(error) => {
            tracing::warn!(%error, "updating replica set revision: new revision is not an int");
            return false;
        }
    };
    if old_number < new_number {
        annotations.insert(REVISION_ANNOTATION.to_string(), new_revision.to_string());
        changed = true;
    }
    if had_revision && old_number < new_number {
        let history = annotations
            .get(REVISION_HISTORY_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let revisions: Vec<&str> = history.split(',').collect();
        if revisions.first().is_none_or(|first| first.is_empty()) {
            annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), old_revision);
        } else {
            // Drop the oldest entries until the new one fits.
            let mut total = history.len() + old_revision.len() + 1;
            let mut start = 0;
            while total > history_limit && start < revisions.len() {
                total -= revisions[start].len() + 1;
                start += 1;
            }
            if total <= history_limit {
                let mut kept = revisions[start..].to_vec();
                kept.push(&old_revision);
                annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), kept.join(","));
            } else {
                tracing::warn!(
                    history_limit,
                    "not appending revision: history length limit"
                );
            }
        }
    }
    let (desired, max) = replicas;
    if !exists && set_replicas_annotations(rs, desired, max) {
        changed = true;
    }
    changed
}

/// Sets the desired and max replicas annotations; returns whether either changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (MAX_REPLICAS_ANNOTATION, max.to_string()),
    ] {
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Whether [`set_replicas_annotations`] would change anything.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let Some(annotations) = &rs.metadata.annotations else {
        return true;
    };
    annotations.get(DESIRED_REPLICAS_ANNOTATION) != Some(&desired.to_string())
        || annotations.get(MAX_REPLICAS_ANNOTATION) != Some(&max.to_string())
}

/// A non-negative int32 annotation (`getNonNegativeInt32FromAnnotation`): `None` when absent.
pub fn non_negative_i32_annotation(
    rs: &ReplicaSet,
    key: &str,
) -> Result<Option<i32>, AnnotationError> {
    let Some(value) = rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(key))
    else {
        return Ok(None);
    };
    // Go's ParseUint: digits only, no sign.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AnnotationError::Syntax(value.clone()));
    }
    let number: u64 = value
        .parse()
        .map_err(|_| AnnotationError::Range(value.clone()))?;
    if number > u64::from(u32::MAX) {
        return Err(AnnotationError::Range(value.clone()));
    }
    i32::try_from(number)
        .map(Some)
        .map_err(|_| AnnotationError::AboveInt32(number))
}

fn annotation_or_log(rs: &ReplicaSet, key: &str) -> Option<i32> {
    non_negative_i32_annotation(rs, key).unwrap_or_else(|error| {
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        tracing::debug!(%name, %key, %error, "cannot read the annotation of a replica set");
        None
    })
}

/// The `desired-replicas` annotation (`GetDesiredReplicasAnnotation`).
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_or_log(rs, DESIRED_REPLICAS_ANNOTATION)
}

/// The `max-replicas` annotation.
pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_or_log(rs, MAX_REPLICAS_ANNOTATION)
}
