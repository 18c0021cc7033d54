//! The eviction both of the recorder's per-component caches use: the correlator's Events by
//! key and the spam filter's buckets by object.

use std::collections::HashMap;
use std::hash::Hash;

use k8s_openapi::jiff::Timestamp;

/// Makes room in `map` for one more entry, so that it holds at most `capacity`: entries that
/// are `worthless` (forgetting them changes nothing) go first, then the least recently used by
/// `last_used`, as an LRU would evict them. The scan is linear, so callers run it only when
/// the map is full.
pub(crate) fn make_room<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    capacity: usize,
    worthless: impl Fn(&V) -> bool,
    last_used: impl Fn(&V) -> Timestamp,
) {
    if map.len() < capacity {
        return;
    }
    map.retain(|_, value| !worthless(value));
    while map.len() >= capacity {
        let oldest = map
            .iter()
            .min_by_key(|(_, value)| last_used(value))
            .map(|(key, _)| key.clone());
        match oldest {
            Some(oldest) => {
                map.remove(&oldest);
            }
            None => break,
        }
    }
}
