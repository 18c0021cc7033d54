//! A recorded workload for fault tests: clients doing puts, linearizable gets and
//! compare-and-swaps on a few keys through the `etcd-client` crate, every operation kept with
//! its call and return times for the linearizability checker. An operation that errs or times
//! out is recorded as unknown: it may or may not have taken effect.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use keel_lab::history::{check_linearizable, Op, Operation, Outcome};

/// One clock for every client: nanoseconds since the recorder was made.
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
        })
    }

    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn at(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.origin).as_nanos() as u64
    }

    fn record(&self, op: Operation) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Counts for the test's report line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub operations: usize,
    pub acknowledged_writes: usize,
    pub unknown: usize,
}

pub fn counts(history: &[Operation]) -> Counts {
    let mut c = Counts {
        operations: history.len(),
        ..Counts::default()
    };
    for op in history {
        match (&op.op, &op.outcome) {
            (_, Outcome::Unknown) => c.unknown += 1,
            (Op::Put { .. }, _) | (Op::Delete, _) => c.acknowledged_writes += 1,
            (
                Op::CasModRevision { .. },
                Outcome::Cas {
                    succeeded: true, ..
                },
            ) => c.acknowledged_writes += 1,
            _ => {}
        }
    }
    c
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs one client until `until`, on `keys` keys under `prefix`.
pub async fn client(
    id: u64,
    endpoints: Vec<String>,
    prefix: String,
    keys: usize,
    until: Instant,
    recorder: Arc<Recorder>,
) {
    let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut client = loop {
        match super::connect(&endpoints).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(_) => return,
        }
    };
    let mut seen_mod: Vec<i64> = vec![0; keys];
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let k = (xorshift(&mut rng) % keys as u64) as usize;
        let key = format!("{prefix}{k}").into_bytes();
        let choice = xorshift(&mut rng) % 10;
        let call = recorder.now();
        let (op, outcome) = if choice < 4 {
            let value = format!("c{id}-{n}").into_bytes();
            let answer =
                tokio::time::timeout(OP_TIMEOUT, client.put(key.clone(), value.clone(), None))
                    .await;
            let outcome = match answer {
                Ok(Ok(r)) => r.header().map_or(Outcome::Unknown, |h| Outcome::Put {
                    revision: h.revision(),
                }),
                _ => Outcome::Unknown,
            };
            (Op::Put { value }, outcome)
        } else if choice < 8 {
            let answer = tokio::time::timeout(OP_TIMEOUT, client.get(key.clone(), None)).await;
            let outcome = match answer {
                Ok(Ok(r)) => match r.kvs().first() {
                    Some(kv) => {
                        seen_mod[k] = kv.mod_revision();
                        Outcome::Get {
                            value: Some(kv.value().to_vec()),
                            mod_revision: kv.mod_revision(),
                        }
                    }
                    None => Outcome::Get {
                        value: None,
                        mod_revision: 0,
                    },
                },
                _ => Outcome::Unknown,
            };
            (Op::Get, outcome)
        } else {
            let expected = seen_mod[k];
            let value = format!("c{id}-{n}-cas").into_bytes();
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    expected,
                )])
                .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
            let answer = tokio::time::timeout(OP_TIMEOUT, client.txn(txn)).await;
            let outcome = match answer {
                Ok(Ok(r)) => r.header().map_or(Outcome::Unknown, |h| Outcome::Cas {
                    succeeded: r.succeeded(),
                    revision: h.revision(),
                }),
                _ => Outcome::Unknown,
            };
            (
                Op::CasModRevision {
                    expected_mod_revision: expected,
                    value,
                },
                outcome,
            )
        };
        let ret = match outcome {
            Outcome::Unknown => None,
            _ => Some(recorder.now()),
        };
        let failed = matches!(outcome, Outcome::Unknown);
        recorder.record(Operation {
            client: id,
            key,
            op,
            call,
            ret,
            outcome,
        });
        if failed {
            // A new client identity after an unknown outcome (its op may still land later),
            // and a pause so a leaderless moment is not a busy loop.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Final linearizable reads of every key, recorded like the rest, so that a lost acknowledged
/// write shows as a read the checker cannot explain.
pub async fn read_back(endpoints: &[String], prefix: &str, keys: usize, recorder: &Recorder) {
    let mut client = super::connect(endpoints)
        .await
        .expect("a client for the read-back");
    for k in 0..keys {
        let key = format!("{prefix}{k}").into_bytes();
        let call = recorder.now();
        let r = client.get(key.clone(), None).await.expect("read-back get");
        let outcome = match r.kvs().first() {
            Some(kv) => Outcome::Get {
                value: Some(kv.value().to_vec()),
                mod_revision: kv.mod_revision(),
            },
            None => Outcome::Get {
                value: None,
                mod_revision: 0,
            },
        };
        recorder.record(Operation {
            client: 10_000 + k as u64,
            key,
            op: Op::Get,
            call,
            ret: Some(recorder.now()),
            outcome,
        });
    }
}

/// When the first write acknowledged after `since` was called (the failover's end).
pub fn first_ack_after(history: &[Operation], since: u64) -> Option<u64> {
    history
        .iter()
        .filter(|o| o.call >= since)
        .filter(|o| {
            matches!(
                o.outcome,
                Outcome::Put { .. }
                    | Outcome::Cas {
                        succeeded: true,
                        ..
                    }
            )
        })
        .filter_map(|o| o.ret)
        .min()
}

/// Checks a fault run's history: prints its counts in one line (`what`, and the first write
/// acknowledged after `since`, described by `after`), asserts it is linearizable and carried
/// enough load to mean anything, and answers how long after `since` the first write was
/// acknowledged.
pub fn check(history: &[Operation], what: &str, since: u64, after: &str) -> Option<Duration> {
    let counts = counts(history);
    let first = first_ack_after(history, since).map(|t| Duration::from_nanos(t - since));
    let report = check_linearizable(history);
    println!(
        "{what}: {} operations, {} acknowledged writes, {} unknown, checked {} keys, anomalies {}; first write acknowledged {first:?} after {after}",
        counts.operations,
        counts.acknowledged_writes,
        counts.unknown,
        report.keys,
        report.anomalies.len(),
    );
    assert!(report.linearizable, "{report}");
    assert!(
        counts.acknowledged_writes > 50,
        "too little load to mean anything: {counts:?}"
    );
    first
}
