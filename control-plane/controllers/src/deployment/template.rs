//! Which ReplicaSets a Deployment owns, which of them runs its current pod template, and the
//! new one it creates — kube's `FindNewReplicaSet`/`FindOldReplicaSets`, `EqualIgnoreHash`,
//! `controller.ComputeHash` and `ClaimReplicaSets`.
//!
//! # The template hash
//! kube names a new ReplicaSet `<deployment>-<hash>`, the hash being FNV-1a (32 bits) over
//! the pod template printed by go-spew, then `status.collisionCount` (when set) as 8 bytes,
//! little-endian, rendered with `rand.SafeEncodeString`. go-spew's output of a Go struct
//! cannot be reproduced here, so keel hashes the template's canonical JSON instead (object
//! keys sorted, nulls and empty lists and objects left out, `pod-template-hash` removed):
//! same algorithm, same alphabet, other values. Nothing depends on the values — the new
//! ReplicaSet is found by comparing templates, not names — but a ReplicaSet created by
//! kube-controller-manager for the same template has another name.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keel_api::label_selector::Selector;
use serde_json::Value;

use super::util::{self, POD_TEMPLATE_HASH_LABEL};
use crate::replicaset::pods;

pub const API_VERSION: &str = "apps/v1";
pub const KIND: &str = "Deployment";
/// `rand.SafeEncodeString`'s alphabet: no vowels (no words), no 0/1/3 (no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// Drops nulls and empty lists and objects, recursively; returns whether `value` is empty.
/// Go's semantic equality holds a nil and an empty map or slice equal; JSON does not tell a
/// map from a struct, so empty objects go as well.
fn prune(value: &mut Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
            items.is_empty()
        }
        Value::Object(fields) => {
            fields.retain(|_, field| !prune(field));
            fields.is_empty()
        }
        _ => false,
    }
}

/// The template as compared and hashed: without `pod-template-hash`, pruned.
fn canonical(template: &PodTemplateSpec) -> Option<Value> {
    let mut template = template.clone();
    if let Some(labels) = template
        .metadata
        .as_mut()
        .and_then(|meta| meta.labels.as_mut())
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let mut value = serde_json::to_value(&template).ok()?;
    prune(&mut value);
    Some(value)
}

/// Whether two templates are equal but for `pod-template-hash` (`EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    match (canonical(a), canonical(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec.template.clone().unwrap_or_default()
}

fn fnv32a(hash: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// kube's `rand.SafeEncodeString`: each byte as a letter of the safe alphabet.
pub fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| char::from(SAFE_ALPHABET[usize::from(byte) % SAFE_ALPHABET.len()]))
        .collect()
}

/// The `pod-template-hash` of `template` (see the module's notes on how it differs from
/// kube's).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // A template always serializes; were it not to, every template would hash alike and a
    // collision would be resolved through collisionCount.
    let json = canonical(template)
        .and_then(|value| serde_json::to_vec(&value).ok())
        .unwrap_or_default();
    let mut hash = fnv32a(FNV_OFFSET_BASIS, &json);
    if let Some(count) = collision_count {
        // As kube: the count as a little-endian uint32 in an 8-byte buffer.
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&count.to_le_bytes());
        hash = fnv32a(hash, &bytes);
    }
    safe_encode(&hash.to_string())
}

/// The oldest ReplicaSet running the Deployment's template (`FindNewReplicaSet`): after an
/// upgrade two may, and the choice must be stable.
pub fn find_new_replica_set<'a>(d: &Deployment, rss: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let mut sorted = rss.to_vec();
    sorted.sort_by(|a, b| util::by_creation(a, b));
    sorted
        .into_iter()
        .find(|rs| equal_ignore_hash(&rs_template(rs), &d.spec.template))
}

/// The other ReplicaSets, oldest first (`FindOldReplicaSets`): those with replicas wanted,
/// and all.
pub fn find_old_replica_sets<'a>(
    d: &Deployment,
    rss: &[&'a ReplicaSet],
) -> (Vec<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let new_rs = find_new_replica_set(d, rss);
    let mut sorted = rss.to_vec();
    sorted.sort_by(|a, b| util::by_creation(a, b));
    let all: Vec<&ReplicaSet> = sorted
        .into_iter()
        .filter(|rs| !new_rs.is_some_and(|new_rs| std::ptr::eq(new_rs, *rs)))
        .collect();
    let required = all
        .iter()
        .copied()
        .filter(|rs| util::rs_replicas(rs) != 0)
        .collect();
    (required, all)
}

/// The `ownerReferences` entry that makes `d` a ReplicaSet's controller.
pub fn controller_reference(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        name: d.metadata.name.clone().unwrap_or_default(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The new ReplicaSet for `d`'s template with `hash`, at 0 replicas and without annotations
/// (the caller sizes and annotates it): `<deployment>-<hash>`, `pod-template-hash=<hash>` in
/// its labels, its selector and its template's labels, and `d` as its controller.
pub fn new_replica_set(d: &Deployment, hash: &str) -> ReplicaSet {
    let mut template = d.spec.template.clone();
    let labels = template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    labels.insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    let labels = labels.clone();
    let mut selector = d.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    let name = d.metadata.name.as_deref().unwrap_or_default();
    ReplicaSet {
        metadata: ObjectMeta {
            // Deterministic, so that a create repeated after a lost reply finds its first try.
            name: Some(format!("{name}-{hash}")),
            namespace: d.metadata.namespace.clone(),
            owner_references: Some(vec![controller_reference(d)]),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: d.spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

/// The outcome of kube's `ClaimReplicaSets`.
#[derive(Clone, Debug, Default)]
pub struct Claim {
    /// The Deployment's ReplicaSets: those it controls that match its selector, and the
    /// orphans it adopts (as if every adoption succeeds).
    pub claimed: Vec<Arc<ReplicaSet>>,
    /// Orphans that match: to adopt (also in `claimed`).
    pub adopt: Vec<Arc<ReplicaSet>>,
    /// ReplicaSets it controls that no longer match: to release.
    pub release: Vec<Arc<ReplicaSet>>,
}

/// Claims ReplicaSets for `d` by their labels, as the ReplicaSet controller claims pods: one
/// controlled by another object is never touched; a controlled one that no longer matches is
/// released unless `d` is being deleted; a matching orphan is adopted unless either is being
/// deleted or it lives in another namespace.
pub fn claim_replica_sets(d: &Deployment, selector: &Selector, rss: &[Arc<ReplicaSet>]) -> Claim {
    let uid = d.metadata.uid.as_deref().unwrap_or_default();
    let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut claim = Claim::default();
    for rs in rss {
        let matches = selector.matches(pods::labels(&rs.metadata));
        match pods::controller_ref(&rs.metadata) {
            Some(owner) if owner.uid != uid => {}
            Some(_) if matches => claim.claimed.push(rs.clone()),
            Some(_) if !deleting => claim.release.push(rs.clone()),
            Some(_) => {}
            None => {
                let rs_namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
                let adoptable = matches
                    && !deleting
                    && rs.metadata.deletion_timestamp.is_none()
                    && (namespace.is_empty() || namespace == rs_namespace);
                if adoptable {
                    claim.claimed.push(rs.clone());
                    claim.adopt.push(rs.clone());
                }
            }
        }
    }
    claim
}

/// The Deployments that may adopt the orphan `rs` (`GetDeploymentsForReplicaSet`): same
/// namespace, a selector that parses, is not empty and matches its labels. A ReplicaSet
/// without labels has none.
pub fn deployments_selecting<'a, I>(candidates: I, rs: &ReplicaSet) -> Vec<Arc<Deployment>>
where
    I: IntoIterator<Item = &'a Arc<Deployment>>,
{
    let labels = pods::labels(&rs.metadata);
    if labels.is_empty() {
        return Vec::new();
    }
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    candidates
        .into_iter()
        .filter(|d| d.metadata.namespace.as_deref().unwrap_or_default() == namespace)
        .filter(|d| {
            Selector::new(&d.spec.selector)
                .is_ok_and(|selector| !selector.is_everything() && selector.matches(labels))
        })
        .cloned()
        .collect()
}
