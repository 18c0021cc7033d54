//! The pod cache: kube-rs's reflector store, with an index by controller as kube's pod
//! informer has (`controller.PodControllerUIDIndex`), so that a sync reads its own pods and
//! its namespace's orphans instead of every pod in the cluster.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};

use super::pods;

/// Where a pod is filed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Filing {
    /// Under its controller's uid.
    Controlled(String),
    /// Among its namespace's orphans.
    Orphan(String),
}

#[derive(Debug, Default)]
pub(super) struct PodIndex {
    controlled: HashMap<String, HashSet<ObjectRef<Pod>>>,
    orphans: HashMap<String, HashSet<ObjectRef<Pod>>>,
    filed: HashMap<ObjectRef<Pod>, Filing>,
}

impl PodIndex {
    fn bucket(&mut self, filing: &Filing) -> &mut HashMap<String, HashSet<ObjectRef<Pod>>> {
        match filing {
            Filing::Controlled(_) => &mut self.controlled,
            Filing::Orphan(_) => &mut self.orphans,
        }
    }

    /// Files `pod` (again, if it was: its controller may have changed).
    pub(super) fn file(&mut self, pod: &Pod) {
        let key = ObjectRef::from_obj(pod);
        self.unfile(&key);
        let filing = match pods::controller_ref(&pod.metadata) {
            Some(owner) => Filing::Controlled(owner.uid.clone()),
            None => Filing::Orphan(pod.metadata.namespace.clone().unwrap_or_default()),
        };
        let (Filing::Controlled(under) | Filing::Orphan(under)) = &filing;
        let under = under.clone();
        self.bucket(&filing)
            .entry(under)
            .or_default()
            .insert(key.clone());
        self.filed.insert(key, filing);
    }

    pub(super) fn unfile(&mut self, key: &ObjectRef<Pod>) {
        let Some(filing) = self.filed.remove(key) else {
            return;
        };
        let (Filing::Controlled(under) | Filing::Orphan(under)) = &filing;
        let bucket = self.bucket(&filing);
        let emptied = bucket.get_mut(under).is_some_and(|set| {
            set.remove(key);
            set.is_empty()
        });
        if emptied {
            bucket.remove(under);
        }
    }

    /// Rebuilds the index from a complete list.
    pub(super) fn rebuild(&mut self, pods: &[Arc<Pod>]) {
        *self = PodIndex::default();
        for pod in pods {
            self.file(pod);
        }
    }
}

/// The pod store and its index. Writers change both under the index's write lock, readers
/// read both under its read lock, so a sync never sees a pod in one and not the other.
pub(super) struct PodCache {
    pub(super) store: Store<Pod>,
    index: RwLock<PodIndex>,
}

impl PodCache {
    pub(super) fn new(store: Store<Pod>) -> PodCache {
        PodCache {
            store,
            index: RwLock::new(PodIndex::default()),
        }
    }

    /// Locks the index for a change of the store and the index together.
    pub(super) fn write(&self) -> RwLockWriteGuard<'_, PodIndex> {
        // Every change leaves the index consistent; a panic elsewhere does not poison it.
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, PodIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn resolve<'a>(&self, keys: impl Iterator<Item = &'a ObjectRef<Pod>>) -> Vec<Arc<Pod>> {
        keys.filter_map(|key| self.store.get(key)).collect()
    }

    /// The pods controlled by `uid`, and the orphans of `namespace` (kube's
    /// `FilterPodsByOwner` with orphans): every pod a ReplicaSet may own after claiming.
    pub(super) fn controlled_or_orphan(&self, uid: &str, namespace: &str) -> Vec<Arc<Pod>> {
        let index = self.read();
        let controlled = index.controlled.get(uid).into_iter().flatten();
        let orphans = index.orphans.get(namespace).into_iter().flatten();
        self.resolve(controlled.chain(orphans))
    }

    /// The pods controlled by `uid`.
    pub(super) fn controlled_by(&self, uid: &str) -> Vec<Arc<Pod>> {
        let index = self.read();
        self.resolve(index.controlled.get(uid).into_iter().flatten())
    }
}
