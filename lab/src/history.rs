//! Checking what fault tests saw of keel's replicated key-value store.
//!
//! A fault test runs clients against the store while members are killed, partitioned and
//! restarted, and records every request as an [`Operation`]: when it was called, when (if
//! ever) it returned, and what it returned. [`check_linearizable`] decides whether all of that
//! could have come from one copy of the store applying each request at a single instant
//! between its call and its return; [`check_watch`] whether a watch stream kept etcd's
//! promises.
//!
//! # The model
//! Each key is a register holding a value and the revision that last wrote it, as etcd's
//! `mod_revision`. Linearizability is compositional (Herlihy & Wing): a history of independent
//! objects is linearizable iff each object's sub-history is, so keys are checked one at a time,
//! which keeps every search small. What ties keys together, the store-wide revision counter,
//! is checked on its own: successful writes get distinct revisions, and a write that returned
//! before another was called has the smaller one. Revisions also order the writes of a key (a
//! revision is a position in the raft log), so the model applies a write only above the key's
//! last revision; besides being what the store does, this prunes the search.
//!
//! Keys are assumed absent when the history starts: record on fresh keys.
//!
//! # The search
//! Wing & Gong's: among the operations not yet placed, take one called before every unplaced
//! operation's return, apply it to the model, go on; undo on a dead end. Lowe's refinement
//! (also porcupine's) memoises each (set of placed operations, model state) reached: reaching
//! one a second time cannot succeed where the first failed, which bounds the search by the
//! distinct states reachable instead of the orders. A budget of model steps per key keeps a
//! pathological history from hanging a test: past it the key is reported undecided.
//!
//! # Requests of unknown outcome
//! A request that timed out or failed may still have been committed, even after the client gave
//! up (its proposal sat in the raft log). Such an operation ([`Outcome::Unknown`]) may take
//! effect at any instant after its call, or never: it is optional, its return is taken as
//! infinitely late. A write of unknown outcome has an unknown revision too: the model holds a
//! wildcard, above the key's revision at the time, that is none of the known writes' revisions;
//! the first read that sees the value pins it, and a failed compare-and-swap rules one out.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use search::{check_key, Verdict};

mod search;
mod watch;

pub use watch::{check_watch, EventKind, WatchEvent};

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        value: Vec<u8>,
    },
    Get,
    Delete,
    /// A transaction: if the key's `mod_revision` is `expected_mod_revision` (0: the key is
    /// absent, as etcd compares a missing key's), put `value`.
    CasModRevision {
        expected_mod_revision: i64,
        value: Vec<u8>,
    },
}

/// What the store answered. Each variant answers the [`Op`] of the same name; any other
/// pairing is reported as malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Put {
        revision: i64,
    },
    /// `value` `None`: the key was absent (`mod_revision` is then ignored).
    Get {
        value: Option<Vec<u8>>,
        mod_revision: i64,
    },
    /// `revision` is the delete's own only when `deleted`; otherwise it is ignored.
    Delete {
        deleted: bool,
        revision: i64,
    },
    /// `revision` is the swap's write only when `succeeded`; otherwise it is ignored.
    Cas {
        succeeded: bool,
        revision: i64,
    },
    /// Timed out or errored: the request may or may not have taken effect, at any time after
    /// its call.
    Unknown,
}

/// One request as a client saw it. Times are nanoseconds on one clock shared by all clients
/// (e.g. `origin.elapsed().as_nanos() as u64` with one `Instant` for the whole test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub key: Vec<u8>,
    pub op: Op,
    pub call: u64,
    /// `None`: it never returned. With a known outcome this still binds the operation to
    /// take effect (at any time after its call); with [`Outcome::Unknown`] the return time is
    /// ignored altogether.
    pub ret: Option<u64>,
    pub outcome: Outcome,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations in the history ([`check_watch`]: events in the stream).
    pub operations: usize,
    /// Distinct keys among them.
    pub keys: usize,
    /// No anomaly at all: every key shown linearizable and the revisions in order
    /// ([`check_watch`]: the stream kept every guarantee). An undecided key leaves it false.
    pub linearizable: bool,
    /// Keys whose search ran out of budget (each also listed in `anomalies`).
    pub undecided: usize,
    /// One readable line each, naming the key or the operations (`#n`: index in the history or
    /// stream) involved. Long lists of the same kind are cut after [`MAX_LISTED`].
    pub anomalies: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.anomalies.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} operations on {} keys: ", self.operations, self.keys)?;
        if self.anomalies.is_empty() {
            return write!(f, "no anomaly");
        }
        write!(f, "{} anomalies", self.anomalies.len())?;
        for anomaly in &self.anomalies {
            write!(f, "\n  - {anomaly}")?;
        }
        Ok(())
    }
}

/// The model steps per key [`check_linearizable`] allows. A few hundred operations per key from
/// a handful of clients take far fewer; the memo holds at most this many states.
pub const DEFAULT_MAX_STEPS_PER_KEY: u64 = 1_000_000;

/// How many anomalies of one kind a report lists before summing up the rest.
pub const MAX_LISTED: usize = 10;

/// Checks `history` with [`DEFAULT_MAX_STEPS_PER_KEY`]; see [`check_linearizable_with_limit`].
pub fn check_linearizable(history: &[Operation]) -> Report {
    check_linearizable_with_limit(history, DEFAULT_MAX_STEPS_PER_KEY)
}

/// Checks that each key's sub-history is linearizable for the register model of the module
/// docs, that successful writes have distinct revisions, and that revisions follow real time
/// across keys. A malformed operation (an outcome of another kind, a return before the call)
/// is reported and left out.
pub fn check_linearizable_with_limit(history: &[Operation], max_steps_per_key: u64) -> Report {
    let mut anomalies = Vec::new();
    let mut well_formed = Vec::with_capacity(history.len());
    let mut malformed_ones = Vec::new();
    for (index, operation) in history.iter().enumerate() {
        match malformed(operation) {
            Some(problem) => malformed_ones.push(format!(
                "#{index} ({}) is malformed: {problem}; left out of the check",
                describe(operation)
            )),
            None => well_formed.push(index),
        }
    }
    push_capped(&mut anomalies, malformed_ones);
    check_revisions(history, &well_formed, &mut anomalies);

    let known: HashSet<i64> = well_formed
        .iter()
        .filter_map(|&i| write_revision(&history[i]))
        .collect();
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for &index in &well_formed {
        by_key
            .entry(history[index].key.as_slice())
            .or_default()
            .push(index);
    }
    let mut undecided = 0;
    for (key, indices) in &by_key {
        match check_key(history, indices, &known, max_steps_per_key) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(why) => anomalies.push(format!("key {}: {why}", show(key))),
            Verdict::Undecided => {
                undecided += 1;
                anomalies.push(format!(
                    "key {}: undecided: the search gave up after {max_steps_per_key} model steps \
                     on {} operations",
                    show(key),
                    indices.len()
                ));
            }
        }
    }
    Report {
        operations: history.len(),
        keys: by_key.len(),
        linearizable: anomalies.is_empty(),
        undecided,
        anomalies,
    }
}

fn malformed(operation: &Operation) -> Option<String> {
    if let Some(ret) = operation.ret.filter(|&ret| ret < operation.call) {
        return Some(format!(
            "it returned at {ret}, before its call at {}",
            operation.call
        ));
    }
    let fits = matches!(
        (&operation.op, &operation.outcome),
        (_, Outcome::Unknown)
            | (Op::Put { .. }, Outcome::Put { .. })
            | (Op::Get, Outcome::Get { .. })
            | (Op::Delete, Outcome::Delete { .. })
            | (Op::CasModRevision { .. }, Outcome::Cas { .. })
    );
    (!fits).then(|| "its outcome answers another kind of request".to_string())
}

/// The revision of a write known to have been applied.
fn write_revision(operation: &Operation) -> Option<i64> {
    match operation.outcome {
        Outcome::Put { revision }
        | Outcome::Delete {
            deleted: true,
            revision,
        }
        | Outcome::Cas {
            succeeded: true,
            revision,
        } => Some(revision),
        _ => None,
    }
}

/// The store-wide part: revisions unique, and increasing with real time.
fn check_revisions(history: &[Operation], well_formed: &[usize], anomalies: &mut Vec<String>) {
    let writes: Vec<(usize, i64)> = well_formed
        .iter()
        .filter_map(|&i| Some((i, write_revision(history.get(i)?)?)))
        .collect();
    let mut by_revision: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for &(i, revision) in &writes {
        by_revision.entry(revision).or_default().push(i);
    }
    let duplicates = by_revision
        .iter()
        .filter(|(_, writers)| writers.len() > 1)
        .map(|(revision, writers)| {
            let listed: Vec<String> = writers
                .iter()
                .map(|&i| format!("#{i} {}", describe(&history[i])))
                .collect();
            format!(
                "revision {revision} was given to {} writes: {}",
                writers.len(),
                listed.join("; ")
            )
        })
        .collect();
    push_capped(anomalies, duplicates);

    // Sweep the writes by call time, keeping the highest revision among those returned before.
    let mut returned: Vec<(u64, usize, i64)> = writes
        .iter()
        .filter_map(|&(i, revision)| Some((history[i].ret?, i, revision)))
        .collect();
    returned.sort_unstable();
    let mut called: Vec<(u64, usize, i64)> = writes
        .iter()
        .map(|&(i, revision)| (history[i].call, i, revision))
        .collect();
    called.sort_unstable();
    let mut next = 0;
    let mut highest: Option<(i64, usize)> = None;
    let mut backwards = Vec::new();
    for &(call, i, revision) in &called {
        while let Some(&(ret, j, earlier)) = returned.get(next) {
            if ret >= call {
                break;
            }
            if highest.is_none_or(|(top, _)| earlier > top) {
                highest = Some((earlier, j));
            }
            next += 1;
        }
        if let Some((top, j)) = highest.filter(|&(top, _)| top > revision) {
            backwards.push(format!(
                "revision went backwards in real time: #{j} ({}) returned revision {top} before \
                 #{i} ({}) was called, which got revision {revision}",
                describe(&history[j]),
                describe(&history[i])
            ));
        }
    }
    push_capped(anomalies, backwards);
}

fn push_capped(anomalies: &mut Vec<String>, found: Vec<String>) {
    let more = found.len().saturating_sub(MAX_LISTED);
    anomalies.extend(found.into_iter().take(MAX_LISTED));
    if more > 0 {
        anomalies.push(format!("... and {more} more of the kind above"));
    }
}

/// Bytes as a quoted string, non-printable ones escaped.
fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

fn describe(operation: &Operation) -> String {
    let asked = match &operation.op {
        Op::Put { value } => format!("put {}", show(value)),
        Op::Get => "get".to_string(),
        Op::Delete => "delete".to_string(),
        Op::CasModRevision {
            expected_mod_revision,
            value,
        } => {
            format!(
                "if mod_revision == {expected_mod_revision} put {}",
                show(value)
            )
        }
    };
    let answered = match &operation.outcome {
        Outcome::Put { revision } => format!("revision {revision}"),
        Outcome::Get {
            value: Some(value),
            mod_revision,
        } => {
            format!("{} at mod_revision {mod_revision}", show(value))
        }
        Outcome::Get { value: None, .. } => "absent".to_string(),
        Outcome::Delete {
            deleted: true,
            revision,
        } => format!("deleted at revision {revision}"),
        Outcome::Delete { deleted: false, .. } => "nothing to delete".to_string(),
        Outcome::Cas {
            succeeded: true,
            revision,
        } => format!("swapped at revision {revision}"),
        Outcome::Cas {
            succeeded: false, ..
        } => "compare failed".to_string(),
        Outcome::Unknown => "unknown".to_string(),
    };
    let ret = operation
        .ret
        .map_or_else(|| "never".to_string(), |ret| ret.to_string());
    format!(
        "client {}: {asked} -> {answered}, {}..{ret}",
        operation.client, operation.call
    )
}

#[cfg(test)]
mod tests;
