//! What the controllers' watch loops share beyond kube-rs' reflector.

use std::collections::HashMap;
use std::sync::Arc;

use kube::runtime::reflector::{Lookup, ObjectRef};

/// Calls the handlers a relist implies (as client-go's `Replace`): an update for what was
/// cached and is listed, an add for what is new, a delete for what is gone.
pub(crate) fn relisted<K>(
    before: Vec<Arc<K>>,
    after: &[Arc<K>],
    mut updated: impl FnMut(&K, &K),
    mut added: impl FnMut(&K),
    mut deleted: impl FnMut(&K),
) where
    K: Lookup<DynamicType = ()> + Clone + 'static,
{
    let mut before: HashMap<ObjectRef<K>, Arc<K>> = before
        .into_iter()
        .map(|object| (ObjectRef::from_obj(&*object), object))
        .collect();
    for current in after {
        match before.remove(&ObjectRef::from_obj(&**current)) {
            Some(old) => updated(&old, current),
            None => added(current),
        }
    }
    for gone in before.values() {
        deleted(gone);
    }
}
