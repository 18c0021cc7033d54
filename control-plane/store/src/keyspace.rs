//! The multi-version keyspace the state machine applies commands to, as etcd's mvcc package
//! keeps it: current values, plus the log of events since the compaction point. A read at an
//! older revision starts from the current values and undoes newer events (each event carries
//! the version it replaced); a watch from an older revision replays the same log. Compaction
//! drops the events below its revision, which is what bounds history.
//!
//! The revision is the raft index of the entry that made a change, so it is unique, grows with
//! the log, and equals what the API server exposes as `resourceVersion`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::history::History;
use crate::types::{
    ApplyError, Compare, CompareResult, CompareTarget, Event, EventKind, KeyRange, KeyValue,
    PutRequest, RangeRequest, RangeResult, SortOrder, SortTarget, TxnOp, TxnOpResult, TxnRequest,
    TxnResult,
};

/// A lease and the keys attached to it (revoking it deletes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Lease {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "StoredKeyspace")]
pub struct Keyspace {
    current: BTreeMap<Vec<u8>, KeyValue>,
    /// Every event with a revision at or above `compact_revision`, in revision order.
    events: History,
    compact_revision: i64,
    /// The revision of the last applied entry (whether or not it changed a key).
    revision: i64,
    leases: BTreeMap<i64, Lease>,
    /// [`live_bytes`] of every current key, kept as keys change (as [`History::bytes`] is);
    /// not stored: a decoded keyspace counts its keys again.
    #[serde(skip_serializing)]
    live_bytes: usize,
}

/// A keyspace as snapshots and backups hold it: [`Keyspace`]'s stored fields, in its order.
#[derive(Deserialize)]
struct StoredKeyspace {
    current: BTreeMap<Vec<u8>, KeyValue>,
    events: History,
    compact_revision: i64,
    revision: i64,
    leases: BTreeMap<i64, Lease>,
}

impl From<StoredKeyspace> for Keyspace {
    fn from(stored: StoredKeyspace) -> Self {
        Self {
            live_bytes: stored.current.values().map(live_bytes).sum(),
            current: stored.current,
            events: stored.events,
            compact_revision: stored.compact_revision,
            revision: stored.revision,
            leases: stored.leases,
        }
    }
}

/// A current key's approximate share of the store's size: its key twice (the map's and the
/// value's own copy), its value, and a fixed cost for its revisions and lease.
fn live_bytes(kv: &KeyValue) -> usize {
    kv.key.len() * 2 + kv.value.len() + 48
}

impl Keyspace {
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    pub fn history_len(&self) -> usize {
        self.events.len()
    }

    /// Records that the entry at `revision` was applied (a blank or membership entry too), so
    /// that the store revision is the applied index.
    pub fn advance(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    pub fn leases(&self) -> &BTreeMap<i64, Lease> {
        &self.leases
    }

    /// An approximate byte size of the live data and its history, for etcd's `dbSize`
    /// figures; kept as the keyspace changes, so asking costs nothing.
    pub fn approximate_size(&self) -> usize {
        self.live_bytes + self.events.bytes()
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResult, ApplyError> {
        let at = if req.revision <= 0 {
            self.revision
        } else {
            req.revision
        };
        if at > self.revision {
            return Err(ApplyError::FutureRevision);
        }
        if at < self.compact_revision {
            return Err(ApplyError::Compacted);
        }
        let key_order = matches!(
            (req.sort_order, req.sort_target),
            (SortOrder::None | SortOrder::Ascend, SortTarget::Key)
        );
        // An older revision reads like the current one when nothing in the range changed
        // since (revisions also move for entries that touch no key, such as compactions): a
        // paged list at its first page's revision then copies one page, not the whole range.
        if key_order && (at == self.revision || !self.changed_since(&req.range, at)) {
            return Ok(self.range_current(req));
        }
        let mut kvs: Vec<KeyValue> = if at == self.revision {
            self.current_in(&req.range).cloned().collect()
        } else {
            self.range_at(&req.range, at).into_values().collect()
        };
        let count = kvs.len() as i64;
        kvs.retain(|kv| passes_filters(kv, req));
        if req.count_only {
            return Ok(RangeResult {
                kvs: Vec::new(),
                more: false,
                count,
            });
        }
        sort(&mut kvs, req.sort_order, req.sort_target);
        let more = req.limit > 0 && kvs.len() as i64 > req.limit;
        if more {
            kvs.truncate(req.limit as usize);
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResult { kvs, more, count })
    }

    /// A range of the current revision in key order: counted by walking references, and only
    /// the first `limit` keys that pass the filters cloned (a page of 500 out of 10,000 copies
    /// 500 values, not 10,000).
    fn range_current(&self, req: &RangeRequest) -> RangeResult {
        let mut count = 0i64;
        let mut kvs = Vec::new();
        let mut more = false;
        for kv in self.current_in(&req.range) {
            count += 1;
            if req.count_only || more || !passes_filters(kv, req) {
                continue;
            }
            if req.limit > 0 && kvs.len() as i64 >= req.limit {
                more = true;
                continue;
            }
            let mut copy = kv.clone();
            if req.keys_only {
                copy.value.clear();
            }
            kvs.push(copy);
        }
        if req.count_only {
            kvs.clear();
        }
        RangeResult { kvs, more, count }
    }

    /// Whether any event after revision `at` touched a key of `range`.
    fn changed_since(&self, range: &KeyRange, at: i64) -> bool {
        self.events
            .from_revision(at.saturating_add(1))
            .any(|(_, event)| range.contains(&event.kv.key))
    }

    fn current_in<'a>(&'a self, range: &KeyRange) -> Box<dyn Iterator<Item = &'a KeyValue> + 'a> {
        if range.is_single_key() {
            return Box::new(self.current.get(&range.key).into_iter());
        }
        let start = Bound::Included(range.key.clone());
        let end = if range.range_end == [0] {
            Bound::Unbounded
        } else if range.range_end <= range.key {
            return Box::new(std::iter::empty());
        } else {
            Bound::Excluded(range.range_end.clone())
        };
        Box::new(self.current.range((start, end)).map(|(_, kv)| kv))
    }

    /// The keys of `range` as they were at revision `at`: the current ones with every newer
    /// event undone, newest first.
    fn range_at(&self, range: &KeyRange, at: i64) -> BTreeMap<Vec<u8>, KeyValue> {
        let mut view: BTreeMap<Vec<u8>, KeyValue> = self
            .current_in(range)
            .map(|kv| (kv.key.clone(), kv.clone()))
            .collect();
        for (_, event) in self.events.from_revision(at.saturating_add(1)).rev() {
            if !range.contains(&event.kv.key) {
                continue;
            }
            match &event.prev {
                Some(prev) => view.insert(prev.key.clone(), prev.clone()),
                None => view.remove(&event.kv.key),
            };
        }
        view
    }

    /// Events at or after `start`, or the compaction revision if they are gone.
    pub fn events_since(&self, start: i64) -> Result<impl Iterator<Item = &(i64, Event)>, i64> {
        if start < self.compact_revision {
            return Err(self.compact_revision);
        }
        Ok(self.events.from_revision(start))
    }

    /// Checks a transaction for what would fail half-way (a put on a lease that does not
    /// exist, `ignore_value` on a missing key), walking the branches its compares choose now,
    /// so that a failing transaction changes nothing.
    fn check_txn(&self, req: &TxnRequest) -> Result<(), ApplyError> {
        let ops = if self.compares_hold(&req.compare) {
            &req.success
        } else {
            &req.failure
        };
        for op in ops {
            match op {
                TxnOp::Put(put) => self.check_put(put)?,
                TxnOp::Txn(inner) => self.check_txn(inner)?,
                TxnOp::Range(r) => {
                    if r.revision > self.revision {
                        return Err(ApplyError::FutureRevision);
                    }
                    if r.revision > 0 && r.revision < self.compact_revision {
                        return Err(ApplyError::Compacted);
                    }
                }
                TxnOp::Delete(_) => {}
            }
        }
        Ok(())
    }

    fn check_put(&self, put: &PutRequest) -> Result<(), ApplyError> {
        if put.key.is_empty() {
            return Err(ApplyError::EmptyKey);
        }
        if (put.ignore_value || put.ignore_lease) && !self.current.contains_key(&put.key) {
            return Err(ApplyError::KeyNotFound);
        }
        if !put.ignore_lease && put.lease != 0 && !self.leases.contains_key(&put.lease) {
            return Err(ApplyError::LeaseNotFound);
        }
        Ok(())
    }

    /// Applies a transaction at `revision`, appending its events to the history and to `out`.
    pub fn apply_txn(
        &mut self,
        req: &TxnRequest,
        revision: i64,
        out: &mut Vec<Event>,
    ) -> Result<TxnResult, ApplyError> {
        self.check_txn(req)?;
        let result = self.run_txn(req, revision, out);
        self.advance(revision);
        Ok(result)
    }

    fn run_txn(&mut self, req: &TxnRequest, revision: i64, out: &mut Vec<Event>) -> TxnResult {
        let succeeded = self.compares_hold(&req.compare);
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                // A read inside a transaction sees the writes before it (they are already in
                // `current`); its revisions were checked by `check_txn`.
                TxnOp::Range(r) => TxnOpResult::Range(self.range(r).unwrap_or_default()),
                TxnOp::Put(put) => TxnOpResult::Put {
                    prev_kv: self.put(put, revision, out),
                },
                TxnOp::Delete(del) => {
                    let prev_kvs = self.delete(&del.range, revision, out);
                    TxnOpResult::Delete {
                        deleted: prev_kvs.len() as i64,
                        prev_kvs: if del.prev_kv { prev_kvs } else { Vec::new() },
                    }
                }
                TxnOp::Txn(inner) => TxnOpResult::Txn(self.run_txn(inner, revision, out)),
            });
        }
        TxnResult {
            succeeded,
            responses,
        }
    }

    /// Puts one key (already checked by `check_put`); answers the replaced version.
    fn put(&mut self, put: &PutRequest, revision: i64, out: &mut Vec<Event>) -> Option<KeyValue> {
        let prev = self.current.get(&put.key).cloned();
        let value = match (&prev, put.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => bytes::Bytes::from(put.value.clone()),
        };
        let lease = match (&prev, put.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => put.lease,
        };
        let kv = KeyValue {
            key: put.key.clone(),
            value,
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        if let Some(p) = &prev {
            if p.lease != 0 && p.lease != lease {
                if let Some(l) = self.leases.get_mut(&p.lease) {
                    l.keys.remove(&p.key);
                }
            }
        }
        if lease != 0 {
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(kv.key.clone());
            }
        }
        if let Some(replaced) = self.current.insert(kv.key.clone(), kv.clone()) {
            self.live_bytes -= live_bytes(&replaced);
        }
        self.live_bytes += live_bytes(&kv);
        let answer = if put.prev_kv { prev.clone() } else { None };
        self.record(
            revision,
            Event {
                kind: EventKind::Put,
                kv,
                prev,
            },
            out,
        );
        answer
    }

    fn delete(&mut self, range: &KeyRange, revision: i64, out: &mut Vec<Event>) -> Vec<KeyValue> {
        let keys: Vec<Vec<u8>> = self.current_in(range).map(|kv| kv.key.clone()).collect();
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(prev) = self.current.remove(&key) else {
                continue;
            };
            self.live_bytes -= live_bytes(&prev);
            if prev.lease != 0 {
                if let Some(l) = self.leases.get_mut(&prev.lease) {
                    l.keys.remove(&key);
                }
            }
            let tombstone = KeyValue {
                key,
                mod_revision: revision,
                ..KeyValue::default()
            };
            self.record(
                revision,
                Event {
                    kind: EventKind::Delete,
                    kv: tombstone,
                    prev: Some(prev.clone()),
                },
                out,
            );
            removed.push(prev);
        }
        removed
    }

    fn record(&mut self, revision: i64, event: Event, out: &mut Vec<Event>) {
        out.push(event.clone());
        self.events.push(revision, event);
    }

    fn compares_hold(&self, compares: &[Compare]) -> bool {
        compares.iter().all(|c| self.compare_holds(c))
    }

    /// etcd's rule: a compare over a range holds when it holds for every key in it; a missing
    /// key compares as version/create/mod 0, lease 0, and never equal on value.
    fn compare_holds(&self, c: &Compare) -> bool {
        let kvs: Vec<&KeyValue> = self.current_in(&c.range).collect();
        if kvs.is_empty() {
            if let CompareTarget::Value(_) = c.target {
                return false;
            }
            let absent = KeyValue::default();
            return compare_one(&absent, c);
        }
        kvs.into_iter().all(|kv| compare_one(kv, c))
    }

    pub fn compact(&mut self, revision: i64, applied_at: i64) -> Result<(), ApplyError> {
        self.advance(applied_at);
        if revision <= self.compact_revision {
            return Err(ApplyError::Compacted);
        }
        if revision > self.revision {
            return Err(ApplyError::FutureRevision);
        }
        self.compact_revision = revision;
        self.events.compact_below(revision);
        Ok(())
    }

    pub fn grant_lease(&mut self, id: i64, ttl: i64, revision: i64) -> Result<(), ApplyError> {
        self.advance(revision);
        if self.leases.contains_key(&id) {
            return Err(ApplyError::LeaseExists);
        }
        self.leases.insert(
            id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// Revokes a lease and deletes its keys at `revision`.
    pub fn revoke_lease(
        &mut self,
        id: i64,
        revision: i64,
        out: &mut Vec<Event>,
    ) -> Result<(), ApplyError> {
        self.advance(revision);
        let lease = self.leases.remove(&id).ok_or(ApplyError::LeaseNotFound)?;
        for key in lease.keys {
            self.delete(
                &KeyRange {
                    key,
                    range_end: Vec::new(),
                },
                revision,
                out,
            );
        }
        Ok(())
    }
}

fn compare_one(kv: &KeyValue, c: &Compare) -> bool {
    use std::cmp::Ordering;
    let ordering = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value[..].cmp(v.as_slice()),
    };
    match c.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

fn passes_filters(kv: &KeyValue, req: &RangeRequest) -> bool {
    (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
        && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
        && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
}

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // Keys come out of the map ascending; etcd leaves them so unless asked otherwise.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    kvs.sort_by(|a, b| {
        let ord = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            ord.reverse()
        } else {
            ord
        }
    });
}

/// Put, delete and nested writes of one transaction must touch distinct keys (etcd refuses the
/// request before proposing it).
pub fn check_duplicate_writes(req: &TxnRequest) -> Result<(), ApplyError> {
    fn writes<'a>(ops: &'a [TxnOp], puts: &mut Vec<&'a [u8]>, dels: &mut Vec<&'a KeyRange>) {
        for op in ops {
            match op {
                TxnOp::Put(p) => puts.push(&p.key),
                TxnOp::Delete(d) => dels.push(&d.range),
                TxnOp::Txn(t) => {
                    writes(&t.success, puts, dels);
                    writes(&t.failure, puts, dels);
                }
                TxnOp::Range(_) => {}
            }
        }
    }
    for branch in [&req.success, &req.failure] {
        let (mut puts, mut dels) = (Vec::new(), Vec::new());
        writes(branch, &mut puts, &mut dels);
        let unique: BTreeSet<&[u8]> = puts.iter().copied().collect();
        if unique.len() != puts.len() {
            return Err(ApplyError::DuplicateKey);
        }
        if puts.iter().any(|k| dels.iter().any(|r| r.contains(k))) {
            return Err(ApplyError::DuplicateKey);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "keyspace_tests.rs"]
mod tests;
