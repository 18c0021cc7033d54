//! The dependency graph: kube's `GraphBuilder` and its `uidToNode`.
//!
//! Every watched object is a node keyed by uid, holding the owner references it was last seen
//! with and the uids of the nodes that name it as an owner (its dependents). An owner named by
//! a reference but not (yet) seen in any watch gets a *virtual* node, with the coordinates of
//! the reference, so that its dependents have somewhere to hang; the collector then asks the
//! API server whether it exists, and removes it (a *virtual delete*) when it does not.
//!
//! Every change returns the [`Work`] it implies, as kube's graph builder fills the
//! `attemptToDelete` and `attemptToOrphan` queues, and keeps the references it found naming
//! an owner in another namespace ([`InvalidOwnerRef`], kube's `OwnerRefInvalidNamespace`
//! events) for the caller to [`take`](Graph::take_invalid_owner_refs). Nothing here recurses along owner or
//! dependent edges, so cycles of references cannot make it loop.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::kinds::{group_of, Kind};

/// The finalizer of an object whose dependents are to be orphaned (`metav1.FinalizerOrphanDependents`).
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The finalizer of an object deleted in the foreground (`metav1.FinalizerDeleteDependents`).
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";
/// How many absent owners are remembered (kube's `absentOwnerCache` size).
pub const ABSENT_OWNER_CACHE_SIZE: usize = 500;

/// An object's coordinates (kube's `objectReference`). Ordered as kube's `referenceLessThan`:
/// kind, apiVersion, namespace, name, uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub kind: String,
    pub api_version: String,
    /// `""` for a cluster-scoped object. An owner known only from references carries the
    /// namespace of the dependent that named it, whatever its kind's scope.
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Identity {
    /// The identity of an object of `kind`; `None` without a uid (never served so).
    pub fn of(kind: &Kind, meta: &ObjectMeta) -> Option<Identity> {
        Some(Identity {
            kind: kind.resource.kind.clone(),
            api_version: kind.resource.api_version.clone(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone()?,
        })
    }

    /// The owner `reference` names, as seen from a dependent in `namespace`.
    pub fn of_owner(reference: &OwnerReference, namespace: &str) -> Identity {
        Identity {
            kind: reference.kind.clone(),
            api_version: reference.api_version.clone(),
            namespace: namespace.to_string(),
            name: reference.name.clone(),
            uid: reference.uid.clone(),
        }
    }

    /// Whether `reference` names this object (kube's `ownerReferenceMatchesCoordinates`; the
    /// version is not compared, see [`Kind::is`]).
    pub fn matches(&self, reference: &OwnerReference) -> bool {
        self.uid == reference.uid
            && self.name == reference.name
            && self.kind == reference.kind
            && group_of(&self.api_version) == group_of(&reference.api_version)
    }
}

/// A dependent naming as its owner an object of another namespace, which a namespaced owner
/// can never be (kube's `reportInvalidNamespaceOwnerRef`; the event is `run`'s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOwnerRef {
    pub dependent: Identity,
    /// The reference's coordinates, in the dependent's namespace.
    pub owner: Identity,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// What a watch showed of one object.
#[derive(Clone, Debug)]
pub struct Observation {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
}

impl Observation {
    /// The observation of an object of `kind`; `None` without a uid.
    pub fn of(kind: &Kind, meta: &ObjectMeta) -> Option<Observation> {
        Some(Observation {
            identity: Identity::of(kind, meta)?,
            owners: meta.owner_references.clone().unwrap_or_default(),
            being_deleted: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }
}

/// One object in the graph.
#[derive(Clone, Debug)]
pub struct Node {
    pub identity: Identity,
    /// The owner references it was last seen with (none for a virtual node).
    pub owners: Vec<OwnerReference>,
    /// The uids of the nodes naming it as an owner.
    pub dependents: BTreeSet<String>,
    /// Seen in a watch; a virtual node is known only from references.
    pub observed: bool,
    /// Has a `deletionTimestamp` (a one-way trip: never unset).
    pub being_deleted: bool,
    /// Being deleted in the foreground: waits for its blocking dependents to go.
    pub deleting_dependents: bool,
    /// The finalizers it was last seen with, to tell when a deletion with one of the
    /// collector's finalizers starts.
    pub finalizers: Vec<String>,
}

impl Node {
    fn virtual_node(identity: Identity) -> Node {
        Node {
            identity,
            owners: Vec::new(),
            dependents: BTreeSet::new(),
            observed: false,
            being_deleted: false,
            deleting_dependents: false,
            finalizers: Vec::new(),
        }
    }

    fn deletion_with(&self, finalizer: &str) -> bool {
        self.being_deleted && self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// What a change to the graph asks the workers to do, by uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Look at the object: delete it if its owners are gone, finish its foreground deletion,
    /// or verify that a virtual node exists (`attemptToDelete`).
    Delete(String),
    /// The same after the queue's backoff: a virtual node given another identity its
    /// dependents name it by, verified again without spinning (kube's `AddRateLimited`).
    DeleteAfterBackoff(String),
    /// Orphan its dependents, then drop its `orphan` finalizer (`attemptToOrphan`).
    Orphan(String),
}

/// Owners verified absent, so that further references to them are decided without asking the
/// API server again. kube keeps an LRU; first in, first out is as good here, since an entry
/// only saves a request.
#[derive(Debug, Default)]
pub struct AbsentOwners {
    set: HashSet<Identity>,
    order: VecDeque<Identity>,
}

impl AbsentOwners {
    pub fn add(&mut self, owner: Identity) {
        if self.set.contains(&owner) {
            return;
        }
        if self.order.len() >= ABSENT_OWNER_CACHE_SIZE {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.set.insert(owner.clone());
        self.order.push_back(owner);
    }

    pub fn contains(&self, owner: &Identity) -> bool {
        self.set.contains(owner)
    }
}

/// The graph of every watched object.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    pub absent: AbsentOwners,
    /// Found since the last [`take_invalid_owner_refs`](Graph::take_invalid_owner_refs).
    invalid_owner_refs: Vec<InvalidOwnerRef>,
}

/// An owner reference whose fields other than the uid changed.
type Changed = (OwnerReference, OwnerReference);

/// The owner references `new` adds, removes and changes against `old`, by uid
/// (`referencesDiffs`).
fn references_diff(
    old: &[OwnerReference],
    new: &[OwnerReference],
) -> (Vec<OwnerReference>, Vec<OwnerReference>, Vec<Changed>) {
    let mut before: HashMap<&str, &OwnerReference> =
        old.iter().map(|r| (r.uid.as_str(), r)).collect();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for reference in new {
        match before.remove(reference.uid.as_str()) {
            Some(previous) if previous != reference => {
                changed.push((previous.clone(), reference.clone()));
            }
            Some(_) => {}
            None => added.push(reference.clone()),
        }
    }
    let mut removed: Vec<OwnerReference> = before.into_values().cloned().collect();
    // A map's order is arbitrary; the work it queues need not be.
    removed.sort_by(|a, b| a.uid.cmp(&b.uid));
    (added, removed, changed)
}

fn blocks(reference: &OwnerReference) -> bool {
    reference.block_owner_deletion == Some(true)
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes naming `uid` as an owner.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.nodes
            .get(uid)
            .into_iter()
            .flat_map(|node| node.dependents.iter())
            .filter_map(|dependent| self.nodes.get(dependent))
            .collect()
    }

    /// The dependents whose reference to `uid` has `blockOwnerDeletion: true`: those a
    /// foreground deletion of `uid` waits for (`blockingDependents`).
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents(uid)
            .into_iter()
            .filter(|dependent| {
                dependent
                    .owners
                    .iter()
                    .any(|owner| owner.uid == uid && blocks(owner))
            })
            .collect()
    }

    /// The references naming an owner in another namespace found since the last call.
    pub fn take_invalid_owner_refs(&mut self) -> Vec<InvalidOwnerRef> {
        std::mem::take(&mut self.invalid_owner_refs)
    }

    /// Keeps the reference of `dependent` to `owner_uid` as invalid, if it still has one.
    fn report_invalid_namespace(&mut self, dependent: &str, owner_uid: &str) {
        let Some(node) = self.nodes.get(dependent) else {
            return;
        };
        let Some(reference) = node.owners.iter().find(|r| r.uid == owner_uid) else {
            return;
        };
        let invalid = InvalidOwnerRef {
            dependent: node.identity.clone(),
            owner: Identity::of_owner(reference, &node.identity.namespace),
        };
        self.invalid_owner_refs.push(invalid);
    }

    /// An object was added or changed (an informer's add or update event).
    pub fn observe(&mut self, observation: Observation) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = observation.identity.uid.clone();
        let Some(existing) = self.nodes.get(&uid) else {
            let node = Node {
                identity: observation.identity.clone(),
                owners: observation.owners.clone(),
                dependents: BTreeSet::new(),
                observed: true,
                being_deleted: observation.being_deleted,
                deleting_dependents: false,
                finalizers: observation.finalizers.clone(),
            };
            self.nodes.insert(uid.clone(), node);
            self.add_dependent_to_owners(&uid, &observation.owners, &mut work);
            self.transitions(&uid, None, &mut work);
            return work;
        };
        // A virtual node seen at last: its earlier state is no state at all.
        let before = existing.observed.then(|| existing.clone());
        let old_owners = existing.owners.clone();
        if !existing.observed && existing.identity != observation.identity {
            // Dependents that named it with other coordinates than it really has: their
            // references may be dangling, so they are looked at again. Those in another
            // namespace than a namespaced owner's are certainly wrong.
            let (_, mismatched) = self.partition_dependents(&uid, &observation.identity);
            let namespace = &observation.identity.namespace;
            let elsewhere: Vec<String> = mismatched
                .iter()
                .filter(|dependent| {
                    self.nodes
                        .get(*dependent)
                        .is_some_and(|node| node.identity.namespace != *namespace)
                })
                .cloned()
                .collect();
            if !namespace.is_empty() {
                for dependent in &elsewhere {
                    self.report_invalid_namespace(dependent, &uid);
                }
            }
            work.extend(mismatched.into_iter().map(Work::Delete));
        }
        let (added, removed, changed) = references_diff(&old_owners, &observation.owners);
        // An owner waiting for this object in the foreground may be unblocked.
        for reference in &removed {
            if blocks(reference) && self.nodes.contains_key(&reference.uid) {
                work.push(Work::Delete(reference.uid.clone()));
            }
        }
        for (old, new) in &changed {
            if blocks(old) && !blocks(new) && self.nodes.contains_key(&new.uid) {
                work.push(Work::Delete(new.uid.clone()));
            }
        }
        if let Some(node) = self.nodes.get_mut(&uid) {
            node.identity = observation.identity.clone();
            node.observed = true;
            node.owners = observation.owners.clone();
            node.being_deleted |= observation.being_deleted;
            node.finalizers = observation.finalizers.clone();
        }
        self.add_dependent_to_owners(&uid, &added, &mut work);
        self.remove_dependent_from_owners(&uid, &removed);
        self.transitions(&uid, before.as_ref(), &mut work);
        work
    }

    /// An object was deleted (an informer's delete event).
    pub fn observe_deleted(&mut self, identity: &Identity) -> Vec<Work> {
        self.delete_event(identity, false)
    }

    /// The API server answered that the object `identity` names does not exist (not found, or
    /// another uid under that name): kube's virtual delete event.
    pub fn virtual_delete(&mut self, identity: &Identity) -> Vec<Work> {
        self.delete_event(identity, true)
    }

    /// A watch of `kind` listed again: its observed objects missing from `listed` (uids) were
    /// deleted meanwhile (client-go's `Replace`).
    pub fn relisted(&mut self, kind: &Kind, listed: &HashSet<String>) -> Vec<Work> {
        let mut gone: Vec<Identity> = self
            .nodes
            .values()
            .filter(|node| {
                node.observed
                    && kind.is(&node.identity.api_version, &node.identity.kind)
                    && !listed.contains(&node.identity.uid)
            })
            .map(|node| node.identity.clone())
            .collect();
        gone.sort();
        gone.iter()
            .flat_map(|identity| self.delete_event(identity, false))
            .collect()
    }

    /// Queues what starts when an object's deletion with one of the collector's finalizers
    /// starts (`processTransitions`); `before` is its earlier observed state.
    fn transitions(&mut self, uid: &str, before: Option<&Node>, work: &mut Vec<Work>) {
        let Some(node) = self.nodes.get_mut(uid) else {
            return;
        };
        let starts = |finalizer: &str| {
            node.deletion_with(finalizer) && !before.is_some_and(|b| b.deletion_with(finalizer))
        };
        if starts(FINALIZER_ORPHAN) {
            work.push(Work::Orphan(uid.to_string()));
            return;
        }
        if starts(FINALIZER_FOREGROUND) {
            node.deleting_dependents = true;
            work.extend(node.dependents.iter().cloned().map(Work::Delete));
            work.push(Work::Delete(uid.to_string()));
        }
    }

    /// Files `uid` under each of `owners`, creating virtual nodes for unknown ones
    /// (`addDependentToOwners`). A reference that disagrees with the owner node it finds
    /// (namespace, or coordinates) queues the dependent, whose references are then checked
    /// against the API server.
    fn add_dependent_to_owners(
        &mut self,
        uid: &str,
        owners: &[OwnerReference],
        work: &mut Vec<Work>,
    ) {
        let Some(namespace) = self.nodes.get(uid).map(|n| n.identity.namespace.clone()) else {
            return;
        };
        let mut potentially_invalid = false;
        let mut invalid = Vec::new();
        for reference in owners {
            if !self.nodes.contains_key(&reference.uid) {
                let mut owner = Node::virtual_node(Identity::of_owner(reference, &namespace));
                owner.dependents.insert(uid.to_string());
                self.nodes.insert(reference.uid.clone(), owner);
                // Whether it exists is for the API server to say.
                work.push(Work::Delete(reference.uid.clone()));
                continue;
            }
            let Some(owner) = self.nodes.get_mut(&reference.uid) else {
                continue;
            };
            owner.dependents.insert(uid.to_string());
            if potentially_invalid {
                continue;
            }
            let owner_namespaced = !owner.identity.namespace.is_empty();
            if owner_namespaced && owner.identity.namespace != namespace && owner.observed {
                // Observed in its namespace: this reference is certainly wrong.
                invalid.push(reference.uid.clone());
            }
            potentially_invalid = if owner_namespaced {
                // A namespaced owner can only own objects of its own namespace.
                owner.identity.namespace != namespace || !owner.identity.matches(reference)
            } else {
                !owner.identity.matches(reference)
                    || (owner.identity.namespace != namespace && !owner.observed)
            };
        }
        for owner in invalid {
            self.report_invalid_namespace(uid, &owner);
        }
        if potentially_invalid {
            work.push(Work::Delete(uid.to_string()));
        }
    }

    fn remove_dependent_from_owners(&mut self, uid: &str, owners: &[OwnerReference]) {
        for reference in owners {
            if let Some(owner) = self.nodes.get_mut(&reference.uid) {
                owner.dependents.remove(uid);
            }
        }
    }

    /// The dependents of `uid` whose references match `identity`, and those whose do not
    /// (`partitionDependents`); a dependent with both kinds of reference is in both.
    fn partition_dependents(&self, uid: &str, identity: &Identity) -> (Vec<String>, Vec<String>) {
        let owner_namespaced = !identity.namespace.is_empty();
        let mut matching = Vec::new();
        let mut mismatched = Vec::new();
        for dependent in self.dependents(uid) {
            let (mut found_match, mut found_mismatch) = (false, false);
            if owner_namespaced && identity.namespace != dependent.identity.namespace {
                found_mismatch = true;
            } else {
                for reference in dependent.owners.iter().filter(|r| r.uid == identity.uid) {
                    if identity.matches(reference) {
                        found_match = true;
                    } else {
                        found_mismatch = true;
                    }
                }
            }
            if found_match {
                matching.push(dependent.identity.uid.clone());
            }
            if found_mismatch {
                mismatched.push(dependent.identity.uid.clone());
            }
        }
        (matching, mismatched)
    }

    /// Another identity the `dependents` give the owner verified absent as `absent`: the
    /// least, so that the choice is stable (`getAlternateOwnerIdentity`).
    fn alternate_owner_identity(
        &self,
        dependents: &[String],
        absent: &Identity,
    ) -> Option<Identity> {
        let cluster_scoped = absent.namespace.is_empty();
        let mut seen = HashSet::from([absent.clone()]);
        let mut first: Option<Identity> = None;
        for dependent in dependents.iter().filter_map(|uid| self.nodes.get(uid)) {
            for reference in dependent.owners.iter().filter(|r| r.uid == absent.uid) {
                if absent.matches(reference)
                    && (cluster_scoped || absent.namespace == dependent.identity.namespace)
                {
                    continue;
                }
                let mut candidate = Identity::of_owner(reference, &dependent.identity.namespace);
                if cluster_scoped
                    && candidate.api_version == absent.api_version
                    && candidate.kind == absent.kind
                {
                    // That kind was verified cluster-scoped.
                    candidate.namespace.clear();
                }
                if !seen.insert(candidate.clone()) {
                    continue;
                }
                if first.as_ref().is_none_or(|best| candidate < *best) {
                    first = Some(candidate);
                }
            }
        }
        first
    }

    /// kube's handling of a delete event, real or virtual (`processGraphChanges`).
    fn delete_event(&mut self, deleted: &Identity, virtual_event: bool) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = deleted.uid.as_str();
        let Some(existing) = self.nodes.get(uid) else {
            return work;
        };
        let mut remove = true;
        if virtual_event {
            let (matching, mismatched) = self.partition_dependents(uid, deleted);
            // Only the dependents that named the absent identity lost their owner.
            let orphaned = |graph: &mut Graph, work: &mut Vec<Work>| {
                if !matching.is_empty() {
                    graph.absent.add(deleted.clone());
                    work.extend(matching.iter().cloned().map(Work::Delete));
                }
            };
            if !existing.observed {
                if !mismatched.is_empty() {
                    // Some dependents name this uid with other coordinates: the node stays.
                    remove = false;
                    let same_identity = existing.identity == *deleted;
                    orphaned(self, &mut work);
                    if same_identity {
                        if let Some(alternate) = self.alternate_owner_identity(&mismatched, deleted)
                        {
                            if let Some(node) = self.nodes.get_mut(uid) {
                                node.identity = alternate;
                            }
                            work.push(Work::DeleteAfterBackoff(uid.to_string()));
                        }
                    }
                }
            } else if existing.identity != *deleted {
                // The object was seen with other coordinates: it exists, only the references
                // naming the absent ones dangle.
                remove = false;
                orphaned(self, &mut work);
            }
        }
        if !remove {
            return work;
        }
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        self.remove_dependent_from_owners(uid, &node.owners);
        if !node.dependents.is_empty() {
            self.absent.add(deleted.clone());
        }
        work.extend(node.dependents.iter().cloned().map(Work::Delete));
        // An owner waiting for this object in the foreground may be done.
        for reference in &node.owners {
            if self
                .nodes
                .get(&reference.uid)
                .is_some_and(|owner| owner.deleting_dependents)
            {
                work.push(Work::Delete(reference.uid.clone()));
            }
        }
        work
    }
}
