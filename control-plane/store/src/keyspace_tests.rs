use super::*;
use crate::types::DeleteRequest;

fn key(k: &str) -> KeyRange {
    KeyRange {
        key: k.as_bytes().to_vec(),
        range_end: Vec::new(),
    }
}

fn prefix(p: &str) -> KeyRange {
    let mut end = p.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    KeyRange {
        key: p.as_bytes().to_vec(),
        range_end: end,
    }
}

fn put_op(k: &str, v: &str) -> TxnOp {
    TxnOp::Put(PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        prev_kv: true,
        ..PutRequest::default()
    })
}

fn txn(ops: Vec<TxnOp>) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success: ops,
        failure: Vec::new(),
    }
}

fn put(ks: &mut Keyspace, k: &str, v: &str, rev: i64) -> Vec<Event> {
    let mut events = Vec::new();
    ks.apply_txn(&txn(vec![put_op(k, v)]), rev, &mut events)
        .expect("put applies");
    events
}

fn get(ks: &Keyspace, range: KeyRange, revision: i64) -> Result<RangeResult, ApplyError> {
    ks.range(&RangeRequest {
        range,
        revision,
        ..RangeRequest::default()
    })
}

#[test]
fn a_put_records_create_mod_and_version_at_the_applied_index() {
    let mut ks = Keyspace::default();
    put(&mut ks, "/a", "1", 5);
    let events = put(&mut ks, "/a", "2", 9);
    let kv = &get(&ks, key("/a"), 0).expect("read").kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 9, 2));
    assert_eq!(ks.revision(), 9);
    assert_eq!(
        events[0].prev.as_ref().map(|p| p.value.to_vec()),
        Some(b"1".to_vec())
    );
}

#[test]
fn a_prefix_range_limits_counts_and_says_there_is_more() {
    let mut ks = Keyspace::default();
    for (i, k) in ["/p/a", "/p/b", "/p/c", "/q/a"].iter().enumerate() {
        put(&mut ks, k, "v", i as i64 + 1);
    }
    let r = ks
        .range(&RangeRequest {
            range: prefix("/p/"),
            limit: 2,
            ..RangeRequest::default()
        })
        .expect("read");
    assert_eq!(r.kvs.len(), 2);
    assert!(r.more);
    assert_eq!(r.count, 3);
    let counted = ks
        .range(&RangeRequest {
            range: prefix("/p/"),
            count_only: true,
            ..RangeRequest::default()
        })
        .expect("read");
    assert!(counted.kvs.is_empty());
    assert_eq!(counted.count, 3);
    // A range whose end is below its start is empty, not a panic.
    let inverted = KeyRange {
        key: b"/z".to_vec(),
        range_end: b"/a".to_vec(),
    };
    assert_eq!(get(&ks, inverted, 0).expect("read").count, 0);
    // From-key ranges (`range_end` = "\0") reach the end of the keyspace.
    let from = KeyRange {
        key: b"/p/c".to_vec(),
        range_end: vec![0],
    };
    assert_eq!(get(&ks, from, 0).expect("read").count, 2);
}

#[test]
fn a_read_at_an_older_revision_sees_the_keyspace_as_it_was() {
    let mut ks = Keyspace::default();
    put(&mut ks, "/a", "1", 1);
    put(&mut ks, "/b", "1", 2);
    put(&mut ks, "/a", "2", 3);
    let mut events = Vec::new();
    ks.apply_txn(
        &txn(vec![TxnOp::Delete(DeleteRequest {
            range: key("/b"),
            prev_kv: false,
        })]),
        4,
        &mut events,
    )
    .expect("delete");
    let at2 = get(&ks, prefix("/"), 2).expect("read at 2");
    let values: Vec<(&[u8], &[u8])> = at2
        .kvs
        .iter()
        .map(|kv| (kv.key.as_slice(), &kv.value[..]))
        .collect();
    assert_eq!(
        values,
        vec![(&b"/a"[..], &b"1"[..]), (&b"/b"[..], &b"1"[..])]
    );
    assert_eq!(get(&ks, prefix("/"), 4).expect("read").count, 1);
    assert_eq!(get(&ks, key("/a"), 5), Err(ApplyError::FutureRevision));
}

#[test]
fn compaction_drops_history_and_refuses_older_reads_and_watches() {
    let mut ks = Keyspace::default();
    for rev in 1..=10 {
        put(&mut ks, "/k", &rev.to_string(), rev);
    }
    ks.compact(6, 11).expect("compact");
    assert_eq!(get(&ks, key("/k"), 5), Err(ApplyError::Compacted));
    assert_eq!(
        get(&ks, key("/k"), 6).expect("read").kvs[0].value,
        &b"6"[..]
    );
    assert!(ks.events_since(5).is_err());
    let replay: Vec<i64> = ks
        .events_since(6)
        .expect("retained")
        .map(|(rev, _)| *rev)
        .collect();
    assert_eq!(replay, vec![6, 7, 8, 9, 10]);
    assert_eq!(ks.compact(6, 12), Err(ApplyError::Compacted));
    assert_eq!(ks.compact(99, 13), Err(ApplyError::FutureRevision));
}

#[test]
fn compare_and_swap_on_mod_revision_succeeds_once() {
    let mut ks = Keyspace::default();
    put(&mut ks, "/cas", "a", 1);
    let cas = |value: &str| TxnRequest {
        compare: vec![Compare {
            range: key("/cas"),
            result: CompareResult::Equal,
            target: CompareTarget::Mod(1),
        }],
        success: vec![put_op("/cas", value)],
        failure: vec![TxnOp::Range(RangeRequest {
            range: key("/cas"),
            ..RangeRequest::default()
        })],
    };
    let mut events = Vec::new();
    let first = ks.apply_txn(&cas("b"), 2, &mut events).expect("txn");
    let second = ks.apply_txn(&cas("c"), 3, &mut events).expect("txn");
    assert!(first.succeeded);
    assert!(!second.succeeded);
    match &second.responses[0] {
        TxnOpResult::Range(r) => assert_eq!(r.kvs[0].value, &b"b"[..]),
        other => panic!("expected the failure branch's read, got {other:?}"),
    }
    // Creation guard: mod_revision 0 means "absent".
    let create = TxnRequest {
        compare: vec![Compare {
            range: key("/new"),
            result: CompareResult::Equal,
            target: CompareTarget::Mod(0),
        }],
        success: vec![put_op("/new", "x")],
        failure: Vec::new(),
    };
    assert!(
        ks.apply_txn(&create, 4, &mut events)
            .expect("txn")
            .succeeded
    );
    assert!(
        !ks.apply_txn(&create, 5, &mut events)
            .expect("txn")
            .succeeded
    );
}

#[test]
fn a_failing_transaction_changes_nothing() {
    let mut ks = Keyspace::default();
    let mut events = Vec::new();
    let bad = txn(vec![
        put_op("/ok", "1"),
        TxnOp::Put(PutRequest {
            key: b"/leased".to_vec(),
            lease: 42,
            ..PutRequest::default()
        }),
    ]);
    assert_eq!(
        ks.apply_txn(&bad, 1, &mut events),
        Err(ApplyError::LeaseNotFound)
    );
    assert!(events.is_empty());
    assert_eq!(get(&ks, key("/ok"), 0).expect("read").count, 0);
    let empty_key = txn(vec![put_op("", "1")]);
    assert_eq!(
        ks.apply_txn(&empty_key, 2, &mut events),
        Err(ApplyError::EmptyKey)
    );
    let ignore = txn(vec![TxnOp::Put(PutRequest {
        key: b"/missing".to_vec(),
        ignore_value: true,
        ..PutRequest::default()
    })]);
    assert_eq!(
        ks.apply_txn(&ignore, 3, &mut events),
        Err(ApplyError::KeyNotFound)
    );
}

#[test]
fn revoking_a_lease_deletes_its_keys() {
    let mut ks = Keyspace::default();
    ks.grant_lease(7, 10, 1).expect("grant");
    assert_eq!(ks.grant_lease(7, 10, 2), Err(ApplyError::LeaseExists));
    let mut events = Vec::new();
    let leased = txn(vec![TxnOp::Put(PutRequest {
        key: b"/l".to_vec(),
        value: b"v".to_vec(),
        lease: 7,
        ..PutRequest::default()
    })]);
    ks.apply_txn(&leased, 3, &mut events).expect("put");
    events.clear();
    ks.revoke_lease(7, 4, &mut events).expect("revoke");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Delete);
    assert_eq!(events[0].kv.mod_revision, 4);
    assert_eq!(get(&ks, key("/l"), 0).expect("read").count, 0);
    assert_eq!(
        ks.revoke_lease(7, 5, &mut events),
        Err(ApplyError::LeaseNotFound)
    );
}

#[test]
fn a_transaction_writing_one_key_twice_is_refused() {
    assert_eq!(
        check_duplicate_writes(&txn(vec![put_op("/a", "1"), put_op("/a", "2")])),
        Err(ApplyError::DuplicateKey)
    );
    let put_and_delete = txn(vec![
        put_op("/a/x", "1"),
        TxnOp::Delete(DeleteRequest {
            range: prefix("/a/"),
            prev_kv: false,
        }),
    ]);
    assert_eq!(
        check_duplicate_writes(&put_and_delete),
        Err(ApplyError::DuplicateKey)
    );
    assert_eq!(
        check_duplicate_writes(&txn(vec![put_op("/a", "1"), put_op("/b", "2")])),
        Ok(())
    );
}

#[test]
fn a_range_at_an_older_revision_sees_that_revision_whether_or_not_its_keys_changed() {
    let mut ks = Keyspace::default();
    put(&mut ks, "/p/a", "1", 1);
    put(&mut ks, "/p/b", "1", 2);
    put(&mut ks, "/q/x", "1", 3);
    // Another range changes: the page at revision 3 is read like the current one.
    put(&mut ks, "/q/y", "1", 4);
    let page = ks
        .range(&RangeRequest {
            range: prefix("/p/"),
            limit: 1,
            revision: 3,
            ..RangeRequest::default()
        })
        .expect("read");
    assert_eq!((page.kvs.len(), page.more, page.count), (1, true, 2));
    // Its own range changes: the old value is still what revision 3 saw.
    put(&mut ks, "/p/a", "2", 5);
    let old = ks
        .range(&RangeRequest {
            range: prefix("/p/"),
            revision: 3,
            ..RangeRequest::default()
        })
        .expect("read");
    assert_eq!(old.kvs[0].value, b"1".to_vec());
    assert_eq!(old.kvs[0].mod_revision, 1);
    let now = ks
        .range(&RangeRequest {
            range: prefix("/p/"),
            ..RangeRequest::default()
        })
        .expect("read");
    assert_eq!(now.kvs[0].value, b"2".to_vec());
}

/// A snapshot written while values were owned `Vec<u8>`s decodes into the shared values, and
/// the shared values encode to the same bytes.
#[test]
fn values_encode_as_they_did_when_they_were_owned() {
    #[derive(serde::Serialize)]
    struct OwnedKeyValue {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        create_revision: i64,
        mod_revision: i64,
        version: i64,
        lease: i64,
    }
    let owned = OwnedKeyValue {
        key: b"/registry/pods/default/a".to_vec(),
        value: (0..=255u8).collect(),
        create_revision: 3,
        mod_revision: 7,
        version: 2,
        lease: 9,
    };
    let old = postcard::to_stdvec(&owned).expect("encodes");
    let decoded: KeyValue = postcard::from_bytes(&old).expect("decodes");
    assert_eq!(decoded.key, owned.key);
    assert_eq!(&decoded.value[..], &owned.value[..]);
    assert_eq!(
        (
            decoded.create_revision,
            decoded.mod_revision,
            decoded.version,
            decoded.lease
        ),
        (3, 7, 2, 9)
    );
    assert_eq!(postcard::to_stdvec(&decoded).expect("encodes"), old);
}

/// What `approximate_size` kept, counted again from scratch.
fn recounted_size(ks: &Keyspace) -> usize {
    ks.current.values().map(live_bytes).sum::<usize>()
        + ks.events
            .iter()
            .map(|(_, e)| crate::history::event_bytes(e))
            .sum::<usize>()
}

#[test]
fn the_kept_size_matches_a_recount_through_puts_deletes_leases_compaction_and_a_snapshot() {
    let mut ks = Keyspace::default();
    ks.grant_lease(3, 60, 1).expect("grant");
    // A fixed pseudo-random walk (xorshift), so a failure reproduces: overwrites that grow and
    // shrink values, ignore_value puts, range deletes, a lease revoked with its keys, and
    // compactions that cut inside and across history's chunks.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut events = Vec::new();
    let mut longest = 0;
    for revision in 2..8_000i64 {
        let r = next();
        let k = format!("/k/{:03}", r % 200);
        longest = longest.max(ks.history_len());
        let op = match r % 100 {
            0..=59 => TxnOp::Put(PutRequest {
                key: k.into_bytes(),
                value: vec![b'v'; (r >> 8) as usize % 700],
                lease: if r % 7 == 0 { 3 } else { 0 },
                ..PutRequest::default()
            }),
            60..=69 => TxnOp::Put(PutRequest {
                key: k.into_bytes(),
                ignore_value: true,
                ..PutRequest::default()
            }),
            70..=97 => TxnOp::Delete(DeleteRequest {
                range: if r % 3 == 0 { prefix(&k[..5]) } else { key(&k) },
                prev_kv: false,
            }),
            _ => {
                let _ = ks.compact(revision - 1000 - (r >> 8) as i64 % 2500, revision);
                assert_eq!(ks.approximate_size(), recounted_size(&ks), "at {revision}");
                continue;
            }
        };
        // An ignore_value put of an absent key is refused, and must count nothing.
        let _ = ks.apply_txn(&txn(vec![op]), revision, &mut events);
        assert_eq!(ks.approximate_size(), recounted_size(&ks), "at {revision}");
    }
    assert!(
        longest > crate::history::CHUNK,
        "history reached only {longest} events: compaction never dropped a whole chunk"
    );
    ks.revoke_lease(3, 8_000, &mut events).expect("revoke");
    assert_eq!(
        ks.approximate_size(),
        recounted_size(&ks),
        "after the revoke"
    );
    assert!(ks.approximate_size() > 0 && ks.history_len() > 0);
    // A snapshot does not store the count; the keyspace decoded from one counts again.
    let bytes = postcard::to_allocvec(&ks).expect("encodes");
    let decoded: Keyspace = postcard::from_bytes(&bytes).expect("decodes");
    assert_eq!(decoded.approximate_size(), ks.approximate_size());
    assert_eq!(decoded, ks);
}
