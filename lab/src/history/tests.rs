//! Histories that must be accepted (sequential, concurrent, with requests of unknown outcome)
//! and histories that must not (each a bug a replicated store can have: a stale read from a
//! deposed leader, a swap applied twice, a lost acknowledged write, a revision handed out
//! twice or backwards).

use super::*;

fn operation(
    client: u64,
    key: &str,
    op: Op,
    call: u64,
    ret: Option<u64>,
    outcome: Outcome,
) -> Operation {
    Operation {
        client,
        key: key.as_bytes().to_vec(),
        op,
        call,
        ret,
        outcome,
    }
}

fn put(client: u64, key: &str, value: &str, revision: i64, call: u64, ret: u64) -> Operation {
    let op = Op::Put {
        value: value.as_bytes().to_vec(),
    };
    operation(client, key, op, call, Some(ret), Outcome::Put { revision })
}

fn put_unknown(client: u64, key: &str, value: &str, call: u64, ret: Option<u64>) -> Operation {
    let op = Op::Put {
        value: value.as_bytes().to_vec(),
    };
    operation(client, key, op, call, ret, Outcome::Unknown)
}

fn get(
    client: u64,
    key: &str,
    value: Option<&str>,
    mod_revision: i64,
    call: u64,
    ret: u64,
) -> Operation {
    let value = value.map(|value| value.as_bytes().to_vec());
    operation(
        client,
        key,
        Op::Get,
        call,
        Some(ret),
        Outcome::Get {
            value,
            mod_revision,
        },
    )
}

fn delete(client: u64, key: &str, deleted: bool, revision: i64, call: u64, ret: u64) -> Operation {
    operation(
        client,
        key,
        Op::Delete,
        call,
        Some(ret),
        Outcome::Delete { deleted, revision },
    )
}

fn cas_op(expected: i64, value: &str) -> Op {
    Op::CasModRevision {
        expected_mod_revision: expected,
        value: value.as_bytes().to_vec(),
    }
}

#[allow(clippy::too_many_arguments)]
fn cas(
    client: u64,
    key: &str,
    expected: i64,
    value: &str,
    succeeded: bool,
    revision: i64,
    call: u64,
    ret: u64,
) -> Operation {
    let outcome = Outcome::Cas {
        succeeded,
        revision,
    };
    operation(
        client,
        key,
        cas_op(expected, value),
        call,
        Some(ret),
        outcome,
    )
}

fn cas_unknown(
    client: u64,
    key: &str,
    expected: i64,
    value: &str,
    call: u64,
    ret: Option<u64>,
) -> Operation {
    operation(
        client,
        key,
        cas_op(expected, value),
        call,
        ret,
        Outcome::Unknown,
    )
}

fn accepted(history: &[Operation]) -> Report {
    let report = check_linearizable(history);
    assert!(
        report.linearizable && report.ok() && report.undecided == 0,
        "{report}"
    );
    report
}

/// Asserts the history is rejected with an anomaly containing `needle`.
fn rejected(history: &[Operation], needle: &str) -> Report {
    let report = check_linearizable(history);
    assert!(!report.linearizable, "accepted: {history:#?}");
    assert!(
        report
            .anomalies
            .iter()
            .any(|anomaly| anomaly.contains(needle)),
        "no {needle:?} in {report}"
    );
    report
}

#[test]
fn sequential_history_with_every_kind_of_request_is_linearizable() {
    let report = accepted(&[
        put(1, "k", "a", 2, 0, 10),
        get(1, "k", Some("a"), 2, 20, 30),
        cas(1, "k", 2, "b", true, 3, 40, 50),
        cas(1, "k", 2, "c", false, 0, 60, 70),
        get(1, "k", Some("b"), 3, 80, 90),
        delete(1, "k", true, 4, 100, 110),
        get(1, "k", None, 0, 120, 130),
        delete(1, "k", false, 4, 140, 150),
        cas(1, "k", 0, "d", true, 5, 160, 170),
        get(1, "k", Some("d"), 5, 180, 190),
        cas(1, "k", 0, "e", false, 0, 200, 210),
        put(2, "other", "x", 6, 220, 230),
    ]);
    assert_eq!((report.operations, report.keys), (12, 2));
}

/// Reads overlapping a write may see either side of it; the one after sees the write.
#[test]
fn concurrent_requests_may_take_effect_in_either_order() {
    accepted(&[
        put(1, "k", "a", 2, 0, 10),
        put(2, "k", "b", 3, 20, 60),
        get(3, "k", Some("a"), 2, 25, 40),
        get(4, "k", Some("b"), 3, 30, 70),
        get(3, "k", Some("b"), 3, 45, 55),
        put(1, "k", "c", 4, 65, 100),
        cas(2, "k", 3, "d", false, 0, 66, 99),
        get(3, "k", Some("c"), 4, 70, 95),
        get(4, "k", Some("c"), 4, 105, 110),
    ]);
}

/// The read a deposed leader serves from its own state: the write completed before it.
#[test]
fn stale_read_after_a_completed_write_is_reported() {
    rejected(
        &[
            put(1, "k", "a", 2, 0, 10),
            put(2, "k", "b", 3, 20, 30),
            get(3, "k", Some("a"), 2, 40, 50),
        ],
        "key \"k\": not linearizable",
    );
}

/// Two reads in sequence, both overlapping a write: once one saw it, the next cannot unsee it.
#[test]
fn read_going_back_in_time_is_reported() {
    rejected(
        &[
            put(1, "k", "a", 2, 0, 10),
            put(2, "k", "b", 3, 20, 100),
            get(3, "k", Some("b"), 3, 30, 40),
            get(3, "k", Some("a"), 2, 50, 60),
        ],
        "not linearizable",
    );
}

/// A write of a higher revision overwrote an older one: reading the older value after both
/// returned is stale even if the two writes overlapped.
#[test]
fn writes_apply_in_revision_order() {
    rejected(
        &[
            put(1, "k", "a", 5, 0, 20),
            put(2, "k", "b", 6, 0, 20),
            get(3, "k", Some("a"), 5, 30, 40),
        ],
        "not linearizable",
    );
}

/// A compare-and-swap applied twice (e.g. a retried proposal, or two leaders): both compared
/// the same mod_revision, yet the second must have seen the first's write.
#[test]
fn two_cas_with_the_same_expected_revision_cannot_both_succeed() {
    rejected(
        &[
            put(1, "k", "a", 2, 0, 10),
            cas(2, "k", 2, "b", true, 3, 20, 30),
            cas(3, "k", 2, "c", true, 4, 20, 30),
        ],
        "not linearizable",
    );
}

/// An acknowledged write the store forgot (e.g. a leader acknowledging before a quorum).
#[test]
fn lost_acknowledged_write_is_reported() {
    rejected(
        &[put(1, "k", "a", 2, 0, 10), get(2, "k", None, 0, 20, 30)],
        "not linearizable",
    );
    rejected(
        &[
            put(1, "k", "a", 2, 0, 10),
            put(1, "k", "b", 3, 20, 30),
            get(2, "k", Some("a"), 2, 40, 50),
        ],
        "not linearizable",
    );
}

/// Every key is linearizable on its own, but the revision counter ran backwards.
#[test]
fn revision_going_backwards_in_real_time_is_reported() {
    let report = rejected(
        &[put(1, "k1", "a", 5, 0, 10), put(2, "k2", "b", 4, 20, 30)],
        "revision went backwards in real time",
    );
    assert_eq!(report.anomalies.len(), 1, "{report}");
    // Concurrent writes may get revisions in either order.
    accepted(&[put(1, "k1", "a", 5, 0, 30), put(2, "k2", "b", 4, 20, 40)]);
}

#[test]
fn duplicate_revision_is_reported() {
    rejected(
        &[put(1, "k1", "a", 5, 0, 10), put(2, "k2", "b", 5, 5, 15)],
        "revision 5 was given to 2 writes",
    );
}

/// A timed-out write may take effect after its client gave up, or never.
#[test]
fn unknown_write_may_take_effect_late_or_never() {
    accepted(&[
        put(1, "k", "a", 2, 0, 10),
        put_unknown(2, "k", "b", 20, Some(25)),
        get(3, "k", Some("a"), 2, 30, 40),
        get(3, "k", Some("b"), 7, 50, 60),
        cas(1, "k", 7, "c", true, 9, 70, 80),
        get(3, "k", Some("c"), 9, 90, 100),
        put_unknown(2, "k", "x", 95, None),
        put_unknown(4, "other", "z", 0, None),
        get(4, "other", None, 0, 10, 20),
        operation(4, "other", Op::Get, 30, None, Outcome::Unknown),
    ]);
}

/// Once a read saw the value of a write of unknown outcome at some revision, that write's
/// revision is known.
#[test]
fn unknown_write_revision_is_pinned_by_the_first_read() {
    let history = [
        put_unknown(1, "k", "b", 0, None),
        get(2, "k", Some("b"), 5, 10, 20),
        get(2, "k", Some("b"), 6, 30, 40),
    ];
    rejected(&history, "not linearizable");
    accepted(&history[..2]);
}

/// A failed swap on mod_revision 5 says the unknown write's revision is not 5. (The swap on
/// 0 failing shows the write had taken effect by then.)
#[test]
fn failed_cas_rules_out_a_revision_for_an_unknown_write() {
    let mut history = vec![
        put_unknown(1, "k", "b", 0, None),
        cas(2, "k", 0, "x", false, 0, 5, 8),
        cas(2, "k", 5, "c", false, 0, 10, 20),
        get(2, "k", Some("b"), 5, 30, 40),
    ];
    rejected(&history, "not linearizable");
    history[3] = get(2, "k", Some("b"), 6, 30, 40);
    accepted(&history);
}

/// Revision 5 belongs to a write on another key: the unknown write cannot have it.
#[test]
fn unknown_write_cannot_take_a_revision_another_write_owns() {
    rejected(
        &[
            put_unknown(1, "k", "b", 0, None),
            put(2, "j", "x", 5, 0, 10),
            get(3, "k", Some("b"), 5, 20, 30),
        ],
        "key \"k\": not linearizable",
    );
}

#[test]
fn unknown_cas_may_have_succeeded_only_if_its_compare_could_hold() {
    accepted(&[
        put(1, "k", "a", 2, 0, 10),
        cas_unknown(2, "k", 2, "b", 20, Some(30)),
        get(3, "k", Some("b"), 4, 40, 50),
    ]);
    rejected(
        &[
            put(1, "k", "a", 2, 0, 10),
            cas_unknown(2, "k", 3, "b", 20, Some(30)),
            get(3, "k", Some("b"), 4, 40, 50),
        ],
        "not linearizable",
    );
}

#[test]
fn unknown_delete_may_have_taken_effect() {
    accepted(&[
        put(1, "k", "a", 2, 0, 10),
        operation(2, "k", Op::Delete, 20, Some(30), Outcome::Unknown),
        get(3, "k", None, 0, 40, 50),
        cas(3, "k", 0, "b", true, 8, 60, 70),
    ]);
}

#[test]
fn malformed_operations_are_reported_and_left_out() {
    let report = rejected(
        &[
            operation(1, "k", Op::Get, 0, Some(10), Outcome::Put { revision: 2 }),
            put(1, "k", "a", 3, 30, 20),
            put(1, "k", "b", 4, 40, 50),
        ],
        "#0 (client 1: get -> revision 2, 0..10) is malformed",
    );
    assert_eq!(report.anomalies.len(), 2, "{report}");
}

/// Many overlapping writes of one key, then a read of a value nobody wrote.
fn crowded(writers: i64) -> Vec<Operation> {
    let mut history: Vec<Operation> = (1..=writers)
        .map(|revision| {
            put(
                revision as u64,
                "k",
                &format!("v{revision}"),
                revision,
                0,
                100,
            )
        })
        .collect();
    history.push(get(0, "k", Some("never"), 99, 200, 210));
    history
}

#[test]
fn search_over_budget_is_reported_undecided() {
    let report = check_linearizable_with_limit(&crowded(12), 5);
    assert_eq!(report.undecided, 1, "{report}");
    assert!(
        !report.linearizable && report.anomalies[0].contains("undecided"),
        "{report}"
    );
    // Within the default budget the same history is decided: writes go in revision order.
    let report = check_linearizable(&crowded(40));
    assert_eq!(report.undecided, 0, "{report}");
    assert!(!report.linearizable, "{report}");
}

/// Five clients, three hundred operations with overlapping intervals, generated from a real
/// register so that it is linearizable; then one read corrupted.
#[test]
fn long_concurrent_history_is_checked() {
    let mut history = Vec::new();
    let mut value: Option<(String, i64)> = None;
    let mut revision = 1;
    for t in 0..300u64 {
        // The instant it takes effect is 10 t; the interval spans up to 3 neighbours.
        let (call, ret) = ((10 * t).saturating_sub(t * 7 % 23), 10 * t + t * 11 % 19);
        let client = t % 5;
        let next = format!("v{t}");
        // Matched on a copy, so that the arms may update the register.
        history.push(match (t % 4, value.clone()) {
            (0, _) | (1, None) => {
                revision += 1;
                value = Some((next.clone(), revision));
                put(client, "k", &next, revision, call, ret)
            }
            (1, Some((_, expected))) => {
                revision += 1;
                value = Some((next.clone(), revision));
                cas(client, "k", expected, &next, true, revision, call, ret)
            }
            (2, Some((held, at))) => get(client, "k", Some(&held), at, call, ret),
            (2, None) => get(client, "k", None, 0, call, ret),
            // No write gets revision 1 (the first is 2): this compare always fails.
            _ => cas(client, "k", 1, &next, false, 0, call, ret),
        });
    }
    accepted(&history);
    let last_read = history.iter().rposition(|o| o.op == Op::Get).unwrap();
    history[last_read].outcome = Outcome::Get {
        value: Some(b"v0".to_vec()),
        mod_revision: 2,
    };
    rejected(&history, "not linearizable");
}
