//! The per-key search: Wing & Gong's with Lowe's memo, over the register model of the
//! [parent module](super).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::{describe, show, write_revision, Op, Operation, Outcome, MAX_LISTED};

pub(super) enum Verdict {
    Linearizable,
    NotLinearizable(String),
    Undecided,
}

/// An operation compiled for the search: values interned, outcome `None` when unknown.
#[derive(Clone, Copy, Debug)]
enum Action {
    Put {
        value: u32,
        revision: Option<i64>,
    },
    Get {
        value: Option<u32>,
        mod_revision: i64,
    },
    Delete {
        outcome: Option<(bool, i64)>,
    },
    Cas {
        expected: i64,
        value: u32,
        outcome: Option<(bool, i64)>,
    },
}

struct Entry {
    /// Index in the history.
    index: usize,
    call: u64,
    /// `u64::MAX`: no deadline.
    ret: u64,
    /// Must take effect (its outcome is known); otherwise optional.
    required: bool,
    /// The revision of a write known to have been applied.
    write: Option<i64>,
    action: Action,
}

/// The revision that last wrote a key (put, swap or delete).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Rev {
    Known(i64),
    /// Written by an operation of unknown outcome: some revision above `above`, none of
    /// `excluded` (sorted), none of a known write's.
    Unknown {
        above: i64,
        excluded: Vec<i64>,
    },
}

impl Rev {
    /// The least the revision can be; a later write of the key is above it.
    fn floor(&self) -> i64 {
        match self {
            Rev::Known(revision) => *revision,
            Rev::Unknown { above, .. } => above.saturating_add(1),
        }
    }

    fn could_be(&self, revision: i64, known: &HashSet<i64>) -> bool {
        match self {
            Rev::Known(own) => *own == revision,
            Rev::Unknown { above, excluded } => {
                revision > *above
                    && excluded.binary_search(&revision).is_err()
                    && !known.contains(&revision)
            }
        }
    }

    fn excluding(&self, revision: i64) -> Rev {
        match self {
            Rev::Unknown { above, excluded } => {
                let mut excluded = excluded.clone();
                if let Err(at) = excluded.binary_search(&revision) {
                    excluded.insert(at, revision);
                }
                Rev::Unknown {
                    above: *above,
                    excluded,
                }
            }
            known => known.clone(),
        }
    }

    /// The revision of a write of unknown outcome applied now.
    fn after(&self) -> Rev {
        Rev::Unknown {
            above: self.floor(),
            excluded: Vec::new(),
        }
    }
}

/// A key's model state: its value (interned; `None`: absent) and last write revision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    value: Option<u32>,
    rev: Rev,
}

/// The state after `action`, or `None` if it cannot take effect in `state` (for an optional
/// action: cannot take effect *and change anything*; not taking effect is left to the search).
fn step(state: &State, action: &Action, known: &HashSet<i64>) -> Option<State> {
    let floor = state.rev.floor();
    let absent = state.value.is_none();
    match *action {
        Action::Put {
            value,
            revision: Some(revision),
        } => (revision > floor).then_some(State {
            value: Some(value),
            rev: Rev::Known(revision),
        }),
        Action::Put {
            value,
            revision: None,
        } => Some(State {
            value: Some(value),
            rev: state.rev.after(),
        }),
        Action::Get { value: None, .. } => absent.then(|| state.clone()),
        Action::Get {
            value: Some(value),
            mod_revision,
        } => (state.value == Some(value) && state.rev.could_be(mod_revision, known)).then_some(
            State {
                value: Some(value),
                rev: Rev::Known(mod_revision),
            },
        ),
        Action::Delete {
            outcome: Some((true, revision)),
        } => (!absent && revision > floor).then_some(State {
            value: None,
            rev: Rev::Known(revision),
        }),
        Action::Delete {
            outcome: Some((false, _)),
        } => absent.then(|| state.clone()),
        Action::Delete { outcome: None } => (!absent).then(|| State {
            value: None,
            rev: state.rev.after(),
        }),
        Action::Cas {
            expected,
            value,
            outcome,
        } => {
            // Whether the compare may hold, and whether it must.
            let (may, must) = if expected == 0 {
                (absent, absent)
            } else if absent {
                (false, false)
            } else {
                (
                    state.rev.could_be(expected, known),
                    state.rev == Rev::Known(expected),
                )
            };
            // What the swap's write is above, if the compare held.
            let above = if expected == 0 { floor } else { expected };
            match outcome {
                Some((true, revision)) => (may && revision > above).then_some(State {
                    value: Some(value),
                    rev: Rev::Known(revision),
                }),
                Some((false, _)) if must => None,
                Some((false, _)) if may => Some(State {
                    value: state.value,
                    rev: state.rev.excluding(expected),
                }),
                Some((false, _)) => Some(state.clone()),
                None => may.then(|| State {
                    value: Some(value),
                    rev: Rev::Unknown {
                        above,
                        excluded: Vec::new(),
                    },
                }),
            }
        }
    }
}

/// Values of one key as small numbers, so that states hash cheaply.
#[derive(Default)]
struct Interner<'h> {
    ids: HashMap<&'h [u8], u32>,
    names: Vec<&'h [u8]>,
}

impl<'h> Interner<'h> {
    fn id(&mut self, value: &'h [u8]) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(value, id);
        self.names.push(value);
        id
    }

    fn name(&self, id: u32) -> &'h [u8] {
        self.names.get(id as usize).copied().unwrap_or_default()
    }
}

/// `None`: nothing to check (a read of unknown outcome, or a malformed operation).
fn compile<'h>(operation: &'h Operation, values: &mut Interner<'h>) -> Option<Action> {
    Some(match (&operation.op, &operation.outcome) {
        (Op::Put { value }, Outcome::Put { revision }) => Action::Put {
            value: values.id(value),
            revision: Some(*revision),
        },
        (Op::Put { value }, Outcome::Unknown) => Action::Put {
            value: values.id(value),
            revision: None,
        },
        (
            Op::Get,
            Outcome::Get {
                value,
                mod_revision,
            },
        ) => Action::Get {
            value: value.as_deref().map(|value| values.id(value)),
            mod_revision: *mod_revision,
        },
        (Op::Delete, Outcome::Delete { deleted, revision }) => Action::Delete {
            outcome: Some((*deleted, *revision)),
        },
        (Op::Delete, Outcome::Unknown) => Action::Delete { outcome: None },
        (
            Op::CasModRevision {
                expected_mod_revision,
                value,
            },
            Outcome::Cas {
                succeeded,
                revision,
            },
        ) => Action::Cas {
            expected: *expected_mod_revision,
            value: values.id(value),
            outcome: Some((*succeeded, *revision)),
        },
        (
            Op::CasModRevision {
                expected_mod_revision,
                value,
            },
            Outcome::Unknown,
        ) => Action::Cas {
            expected: *expected_mod_revision,
            value: values.id(value),
            outcome: None,
        },
        _ => return None,
    })
}

pub(super) fn check_key(
    history: &[Operation],
    indices: &[usize],
    known: &HashSet<i64>,
    max_steps: u64,
) -> Verdict {
    let mut values = Interner::default();
    let mut entries = Vec::with_capacity(indices.len());
    for &index in indices {
        let Some(operation) = history.get(index) else {
            continue;
        };
        let Some(action) = compile(operation, &mut values) else {
            continue;
        };
        let required = operation.outcome != Outcome::Unknown;
        entries.push(Entry {
            index,
            call: operation.call,
            ret: if required {
                operation.ret.unwrap_or(u64::MAX)
            } else {
                u64::MAX
            },
            required,
            write: write_revision(operation),
            action,
        });
    }
    entries.sort_by_key(|entry| (entry.call, entry.index));
    Search {
        history,
        entries: &entries,
        known,
        values: &values,
    }
    .run(max_steps)
}

/// Which entries are placed.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        (self.0[i / 64] >> (i % 64)) & 1 == 1
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1u64 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1u64 << (i % 64));
    }
}

struct Search<'a, 'h> {
    history: &'h [Operation],
    /// Sorted by call.
    entries: &'a [Entry],
    known: &'a HashSet<i64>,
    values: &'a Interner<'h>,
}

impl Search<'_, '_> {
    fn run(&self, max_steps: u64) -> Verdict {
        let n = self.entries.len();
        let mut required_left = self.entries.iter().filter(|entry| entry.required).count();
        let mut done = Bits::new(n);
        let mut state = State {
            value: None,
            rev: Rev::Known(0),
        };
        let mut seen: HashSet<(Bits, State)> = HashSet::new();
        // The placed entries, each with the state before it.
        let mut stack: Vec<(usize, State)> = Vec::new();
        let mut deepest: (Vec<usize>, State) = (Vec::new(), state.clone());
        let mut cursor = 0;
        let mut steps = 0u64;
        loop {
            if required_left == 0 {
                return Verdict::Linearizable;
            }
            let (horizon, lowest) = self.frontier(&done);
            // A pending write at or below the key's revision can never be placed.
            let dead = lowest.is_some_and(|(revision, _)| revision <= state.rev.floor());
            let mut placed = None;
            let mut i = cursor;
            while !dead && i < n && self.entries[i].call <= horizon {
                if !done.get(i) {
                    steps += 1;
                    if steps > max_steps {
                        return Verdict::Undecided;
                    }
                    if let Some(next) = step(&state, &self.entries[i].action, self.known) {
                        done.set(i);
                        if seen.insert((done.clone(), next.clone())) {
                            placed = Some((i, next));
                            break;
                        }
                        done.clear(i);
                    }
                }
                i += 1;
            }
            if let Some((i, next)) = placed {
                stack.push((i, std::mem::replace(&mut state, next)));
                if self.entries[i].required {
                    required_left -= 1;
                }
                cursor = 0;
                if stack.len() > deepest.0.len() {
                    deepest = (stack.iter().map(|&(i, _)| i).collect(), state.clone());
                }
                continue;
            }
            let Some((i, previous)) = stack.pop() else {
                return Verdict::NotLinearizable(self.explain(&deepest.0, &deepest.1));
            };
            done.clear(i);
            state = previous;
            if self.entries[i].required {
                required_left += 1;
            }
            cursor = i + 1;
        }
    }

    /// The earliest return among unplaced required entries (the next one placed must have been
    /// called by then), and the unplaced known write of lowest revision.
    fn frontier(&self, done: &Bits) -> (u64, Option<(i64, usize)>) {
        let mut horizon = u64::MAX;
        let mut lowest: Option<(i64, usize)> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if !entry.required || done.get(i) {
                continue;
            }
            horizon = horizon.min(entry.ret);
            if let Some(revision) = entry.write {
                if lowest.is_none_or(|(low, _)| revision < low) {
                    lowest = Some((revision, i));
                }
            }
        }
        (horizon, lowest)
    }

    /// Why the search failed, from the longest linearizable prefix it found.
    fn explain(&self, order: &[usize], state: &State) -> String {
        let mut done = Bits::new(self.entries.len());
        for &i in order {
            done.set(i);
        }
        let mut text = format!("not linearizable ({} operations)", self.entries.len());
        if order.is_empty() {
            text.push_str("; none can come first");
        } else {
            let skipped = order.len().saturating_sub(MAX_LISTED);
            let _ = write!(
                text,
                "; the longest linearizable prefix places {}",
                order.len()
            );
            if skipped > 0 {
                let _ = write!(text, " (the last {MAX_LISTED} shown)");
            }
            let placed: Vec<String> = order[skipped..].iter().map(|&i| self.label(i)).collect();
            let _ = write!(
                text,
                ": {}; the key is then {}",
                placed.join(", then "),
                self.describe_state(state)
            );
        }
        let (horizon, lowest) = self.frontier(&done);
        let floor = state.rev.floor();
        if let Some((revision, i)) = lowest.filter(|&(revision, _)| revision <= floor) {
            let _ = write!(
                text,
                "; but {} wrote at revision {revision}, not above {floor}",
                self.label(i)
            );
            return text;
        }
        let next: Vec<String> = (0..self.entries.len())
            .filter(|&i| !done.get(i) && self.entries[i].call <= horizon)
            .take(MAX_LISTED)
            .map(|i| {
                let why = match step(state, &self.entries[i].action, self.known) {
                    Some(_) => "fits, but leads only to dead ends",
                    None => "does not fit",
                };
                format!("{} ({why})", self.label(i))
            })
            .collect();
        if !next.is_empty() {
            let _ = write!(text, ". Could come next: {}", next.join("; "));
        }
        let due = (0..self.entries.len())
            .find(|&i| self.entries[i].required && !done.get(i) && self.entries[i].ret == horizon);
        if let Some(i) = due {
            let _ = write!(text, ". {} had to take effect by its return", self.label(i));
        }
        text
    }

    fn label(&self, i: usize) -> String {
        let index = self.entries[i].index;
        format!("#{index} ({})", describe(&self.history[index]))
    }

    fn describe_state(&self, state: &State) -> String {
        let revision = match &state.rev {
            Rev::Known(revision) => format!("revision {revision}"),
            Rev::Unknown { above, .. } => format!("an unknown revision above {above}"),
        };
        match state.value {
            Some(id) => format!("{} written at {revision}", show(self.values.name(id))),
            None => format!("absent since {revision}"),
        }
    }
}
