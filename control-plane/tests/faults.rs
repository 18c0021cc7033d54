//! The store under network faults, each member in a network namespace of its own so that the
//! links between members can be cut for real (iptables inside the pods): a member cut off
//! alone must neither commit a write nor answer a linearizable read, while the majority elects
//! a leader and goes on (the majority's history checked for linearizability, the isolated
//! member catching up once healed); an even split must elect no one; and a watch must keep
//! etcd's guarantees (ordered, no duplicate, no gap, resumable) across a leader killed with
//! `kill -9`.
//!
//! These are the promises the API server builds on: a minority that still answered would
//! let two API servers each believe their write won, and a watch with a gap is a controller
//! that never hears of an object.
//!
//! Root only (network namespaces, iptables): `cargo xtask test` runs them as root.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::{EventType, GetOptions, WatchOptions};
use keel_lab::history::{check_watch, EventKind, WatchEvent};
use support::lab_cluster::{self, LabCluster};
use support::workload::{self, Recorder};
use support::{connect, require_root, runtime, status_within, wait_leader, Cluster};

/// The tests wait on elections and on requests that must time out: run one at a time, so that
/// ten member processes on a small machine do not turn timing into flakiness.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longer than the client's own 8 s request timeout (`support::connect`): a request to an
/// isolated member answers with an error or that timeout, and this bounds it if neither comes.
const ISOLATED_TIMEOUT: Duration = Duration::from_secs(9);

/// The answer to one request, for the report: what it returned if it succeeded, why not
/// otherwise.
fn answered<T, E: std::fmt::Display>(
    answer: Result<Result<T, E>, tokio::time::error::Elapsed>,
    timeout: Duration,
    success: impl FnOnce(T) -> String,
) -> Result<String, String> {
    match answer {
        Ok(Ok(response)) => Ok(success(response)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// A put and a linearizable get, at once, through a client of the isolated member alone.
async fn ask_isolated(endpoint: String) -> (Result<String, String>, Result<String, String>) {
    let mut writer = connect(&[endpoint])
        .await
        .expect("a client of the isolated member");
    let mut reader = writer.clone();
    let (put, get) = tokio::join!(
        tokio::time::timeout(
            ISOLATED_TIMEOUT,
            writer.put("/isolated/put", "from the minority", None)
        ),
        tokio::time::timeout(ISOLATED_TIMEOUT, reader.get("/pre/0", None)),
    );
    let put = answered(put, ISOLATED_TIMEOUT, |r| {
        format!("revision {}", r.header().map_or(0, |h| h.revision()))
    });
    let get = answered(get, ISOLATED_TIMEOUT, |r| format!("{} keys", r.kvs().len()));
    (put, get)
}

/// Puts `key` through `endpoints` until a put is acknowledged, and answers its revision; panics
/// after `within`. Retrying is for liveness claims ("the majority takes writes"), where a
/// first attempt may meet a member that has not yet heard of the new leader; a failed attempt
/// may still have committed, which is harmless for these marker keys.
async fn put_within(endpoints: &[String], key: &str, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = tokio::time::timeout(Duration::from_secs(3), async {
            let mut client = connect(endpoints).await?;
            let put = client.put(key, "marker", None).await?;
            Ok::<_, etcd_client::Error>(put)
        })
        .await;
        match attempt {
            Ok(Ok(r)) => return r.header().map_or(0, |h| h.revision()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer within 3 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no put of {key} through {endpoints:?} acknowledged within {within:?}: {last}");
}

#[test]
fn a_partitioned_minority_serves_no_writes_or_linearizable_reads_and_heals() {
    let _serial = serial();
    require_root("the fault tests create network namespaces and iptables rules");
    let cluster = LabCluster::new(3, &[]);
    let old = cluster.block_on(cluster.wait_leader(Duration::from_secs(10)));
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let majority_endpoints = cluster.endpoints_of(&majority);
    let isolated_endpoint = cluster.members[old].endpoint();
    cluster.block_on(async {
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        for i in 0..10 {
            client
                .put(format!("/pre/{i}"), "before", None)
                .await
                .expect("a put before the partition");
        }
    });

    // The recorded workload goes through the majority's members only, from before the cut
    // (their writes then reach the leader about to be isolated) to after it: operations in
    // flight at the cut become unknown, and whatever was acknowledged must still be there.
    let recorder = Recorder::new();
    let until = Instant::now() + Duration::from_secs(10);
    let load = cluster.spawn({
        let (endpoints, recorder) = (majority_endpoints.clone(), recorder.clone());
        async move {
            let clients: Vec<_> = (0..4)
                .map(|id| {
                    tokio::spawn(workload::client(
                        id,
                        endpoints.clone(),
                        "/part/".into(),
                        4,
                        until,
                        recorder.clone(),
                    ))
                })
                .collect();
            for c in clients {
                let _ = c.await;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let partitioned_at = recorder.now();
    cluster.partition(&[old]);

    // At once: the isolated member is asked to write and to read linearizably, and the
    // majority must elect a leader of its own and take writes through each of its members.
    let ((put, get), new) = cluster.block_on(async {
        tokio::join!(ask_isolated(isolated_endpoint.clone()), async {
            let new = cluster
                .wait_leader_among(&majority, Duration::from_secs(10))
                .await;
            for &i in &majority {
                put_within(
                    &[cluster.members[i].endpoint()],
                    &format!("/majority/m{i}"),
                    Duration::from_secs(10),
                )
                .await;
            }
            new
        })
    });
    println!(
        "isolated m{old}: put -> {put:?}; linearizable get -> {get:?}; the majority elected m{new}"
    );
    assert!(
        put.is_err(),
        "the isolated m{old} acknowledged a write: {put:?}\n{}",
        cluster.logs()
    );
    assert!(
        get.is_err(),
        "the isolated m{old} answered a linearizable read: {get:?}\n{}",
        cluster.logs()
    );
    assert_ne!(new, old, "the isolated member cannot lead the majority");
    lab_cluster::join(load);

    // Healed, the old leader rejoins as a follower and catches up: its local (serializable)
    // read must reach a write the majority made after the cut.
    cluster.heal();
    cluster.block_on(async {
        let revision = put_within(&majority_endpoints, "/healed", Duration::from_secs(10)).await;
        let mut rejoined = connect(std::slice::from_ref(&isolated_endpoint))
            .await
            .expect("a client of the rejoined member");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = tokio::time::timeout(
                Duration::from_secs(2),
                rejoined.get("/healed", Some(GetOptions::new().with_serializable())),
            )
            .await;
            if let Ok(Ok(got)) = got {
                if got.kvs().first().map(|kv| kv.mod_revision()) == Some(revision) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "m{old} did not catch up within 10 s of healing (the write is at revision {revision})\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    cluster.block_on(workload::read_back(
        &cluster.endpoints(),
        "/part/",
        4,
        &recorder,
    ));
    let after_cut = workload::check(&recorder.history(), "partition", partitioned_at, "the cut");
    assert!(
        after_cut.is_some(),
        "the majority acknowledged no write of the workload after the cut"
    );
}

/// What one member showed during the split.
#[derive(Debug)]
struct Probe {
    member: usize,
    /// The leader it names (0: none); `None` when `Status` did not answer.
    leader: Option<u64>,
    term: Option<u64>,
    put: Result<String, String>,
}

/// Per request during the split: long enough for a commit on any healthy cluster, short
/// enough to keep the test short (the puts must all time out or fail).
const SPLIT_TIMEOUT: Duration = Duration::from_secs(2);

async fn probe(member: usize, endpoint: String, key: String) -> Probe {
    let mut client = match tokio::time::timeout(SPLIT_TIMEOUT, connect(&[endpoint])).await {
        Ok(Ok(client)) => client,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no connection within {SPLIT_TIMEOUT:?}"),
            };
            return Probe {
                member,
                leader: None,
                term: None,
                put: Err(why),
            };
        }
    };
    let (leader, term) = match tokio::time::timeout(SPLIT_TIMEOUT, client.status()).await {
        Ok(Ok(status)) => (Some(status.leader()), Some(status.raft_term())),
        _ => (None, None),
    };
    let put = tokio::time::timeout(SPLIT_TIMEOUT, client.put(key, "split", None)).await;
    let put = answered(put, SPLIT_TIMEOUT, |r| {
        format!("revision {}", r.header().map_or(0, |h| h.revision()))
    });
    Probe {
        member,
        leader,
        term,
        put,
    }
}

/// The member every member names as leader, and its id, when all name the same one and it
/// names itself.
async fn agreed_leader(cluster: &LabCluster) -> Option<(usize, u64)> {
    let mut named = BTreeSet::new();
    let mut own_ids = Vec::new();
    for member in &cluster.members {
        let (_, status) = status_within(&member.endpoint(), SPLIT_TIMEOUT).await?;
        named.insert(status.leader());
        own_ids.push(status.header().map(|h| h.member_id()));
    }
    let [leader] = named.into_iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let index = own_ids.iter().position(|id| *id == Some(leader))?;
    (leader != 0).then_some((index, leader))
}

#[test]
fn an_even_split_elects_no_leader_on_either_side() {
    let _serial = serial();
    require_root("the fault tests create network namespaces and iptables rules");
    let cluster = LabCluster::new(4, &[]);
    // The leader's id as raft names it (`Status.leader`, the id the probes compare), once the
    // leadership has settled: every member names the same leader, that member names itself,
    // and the same holds a second time a second later (two election timeouts). At start-up
    // four members may elect twice, and with openraft's default leader ids a second election
    // can keep the term (a higher node id wins term 1 again): a leader taken from one look
    // could already be replaced before the split, which the probes then saw as a new leader.
    let (leader, leader_id) = cluster.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut settled: Option<u64> = None;
        loop {
            let agreed = agreed_leader(&cluster).await;
            match (agreed, settled) {
                (Some((i, id)), Some(before)) if id == before => return (i, id),
                (Some((_, id)), _) => settled = Some(id),
                (None, _) => settled = None,
            }
            assert!(
                Instant::now() < deadline,
                "the four members did not agree on one leader for a second within 30 s\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    cluster.split(&[0, 1], &[2, 3]);
    // Several election timeouts (500 ms by default): each side has had every chance to elect.
    std::thread::sleep(Duration::from_secs(3));

    // Rounds of questions to every member at once, for about 3 s. A quorum of four is three:
    // no side can elect anyone new, and none can commit. The old leader may still call itself
    // leader (and its side may still name it) until it notices; a leader named by anyone
    // must be that one.
    let probes: Vec<Probe> = cluster.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut probes = Vec::new();
        let mut round = 0;
        while round == 0 || Instant::now() < deadline {
            round += 1;
            let asked: Vec<_> = (0..cluster.members.len())
                .map(|i| {
                    tokio::spawn(probe(
                        i,
                        cluster.members[i].endpoint(),
                        format!("/split/m{i}/{round}"),
                    ))
                })
                .collect();
            for a in asked {
                probes.push(a.await.expect("a probe task"));
            }
        }
        probes
    });
    let first_round: Vec<String> = probes
        .iter()
        .take(cluster.members.len())
        .map(|p| match &p.put {
            Ok(r) => format!("m{} committed at {r}", p.member),
            Err(e) => format!("m{} refused ({e})", p.member),
        })
        .collect();
    println!(
        "even split, first round of puts: {}",
        first_round.join("; ")
    );
    let named: BTreeSet<u64> = probes.iter().filter_map(|p| p.leader).collect();
    let terms: BTreeSet<u64> = probes.iter().filter_map(|p| p.term).collect();
    println!(
        "even split: m{leader} (id {leader_id:x}) led before; {} probes; leaders named {named:x?}, terms {terms:?}",
        probes.len()
    );
    let committed: Vec<&Probe> = probes.iter().filter(|p| p.put.is_ok()).collect();
    assert!(
        committed.is_empty(),
        "a side without a quorum committed a write: {committed:#?}\n{}",
        cluster.logs()
    );
    let elected: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.leader.is_some_and(|l| l != 0 && l != leader_id))
        .collect();
    assert!(
        elected.is_empty(),
        "a side of two out of four elected a new leader: {elected:#?}\n{}",
        cluster.logs()
    );

    // Healed, the four elect (or keep) a leader and commit again.
    cluster.heal();
    cluster.block_on(async {
        let after = cluster.wait_leader(Duration::from_secs(10)).await;
        let revision = put_within(
            &cluster.endpoints(),
            "/split/healed",
            Duration::from_secs(10),
        )
        .await;
        println!("healed: m{after} leads and a write commits at revision {revision}");
    });
}

/// What the watcher received, every stream's events concatenated.
struct Watched {
    events: Vec<WatchEvent>,
    /// Watch streams opened: more than one means it resumed after a break.
    streams: usize,
}

/// Watches `prefix` from `start`, first through `endpoints[0]`; when a stream breaks, resumes
/// through the next member from the revision after the last event seen, as an etcd client
/// must. Returns once it has seen an event at `target` or later (set when the writer is done),
/// or at `deadline`.
async fn watch(
    endpoints: Vec<String>,
    prefix: String,
    start: i64,
    target: Arc<AtomicI64>,
    deadline: Instant,
) -> Watched {
    let mut events = Vec::new();
    let mut next = start;
    let mut streams = 0;
    let mut attempt = 0usize;
    'resume: while Instant::now() < deadline {
        let endpoint = endpoints[attempt % endpoints.len()].clone();
        attempt += 1;
        let Ok(Ok(mut client)) =
            tokio::time::timeout(Duration::from_secs(2), connect(&[endpoint])).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(next);
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(2),
            client.watch(prefix.clone(), Some(options)),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        streams += 1;
        loop {
            if next > target.load(Ordering::SeqCst) || Instant::now() >= deadline {
                break 'resume;
            }
            // A short wait per message, so that the target and the deadline are looked at
            // even while nothing arrives.
            match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(response))) => {
                    if response.canceled() {
                        continue 'resume;
                    }
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        let kind = match event.event_type() {
                            EventType::Put => EventKind::Put,
                            EventType::Delete => EventKind::Delete,
                        };
                        events.push(WatchEvent {
                            revision: kv.mod_revision(),
                            key: kv.key().to_vec(),
                            kind,
                            value: (kind == EventKind::Put).then(|| kv.value().to_vec()),
                        });
                        next = kv.mod_revision() + 1;
                    }
                }
                // The stream ended or broke: resume elsewhere.
                Ok(Ok(None)) | Ok(Err(_)) => continue 'resume,
            }
        }
    }
    Watched { events, streams }
}

/// An acknowledged write: the writer's operation number, its revision, key and kind.
type Acked = (usize, i64, Vec<u8>, EventKind);

/// `total` puts and deletes on 8 keys under `prefix`, counting them in `progress`. A request
/// that fails or times out is of unknown outcome: left out of the acknowledged writes (the
/// checker accepts an event at a revision nobody saw acknowledged), and the client is made
/// again so that it does not stick to a dead member.
async fn write(
    endpoints: Vec<String>,
    prefix: String,
    total: usize,
    progress: Arc<AtomicUsize>,
) -> (Vec<Acked>, usize) {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let mut acked = Vec::new();
    let mut unknown = 0;
    let mut client = None;
    for n in 0..total {
        progress.store(n, Ordering::SeqCst);
        if client.is_none() {
            // No client, no request: the operation is skipped, not unknown.
            match tokio::time::timeout(TIMEOUT, connect(&endpoints)).await {
                Ok(Ok(c)) => client = Some(c),
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let key = format!("{prefix}{}", (n * 7) % 8).into_bytes();
        let done = if n % 3 == 2 {
            match tokio::time::timeout(TIMEOUT, c.delete(key.clone(), None)).await {
                // Deleting an absent key writes nothing and makes no event.
                Ok(Ok(r)) if r.deleted() == 0 => Some(None),
                Ok(Ok(r)) => r
                    .header()
                    .map(|h| Some((n, h.revision(), key, EventKind::Delete))),
                _ => None,
            }
        } else {
            match tokio::time::timeout(TIMEOUT, c.put(key.clone(), format!("v{n}"), None)).await {
                Ok(Ok(r)) => r
                    .header()
                    .map(|h| Some((n, h.revision(), key, EventKind::Put))),
                _ => None,
            }
        };
        match done {
            Some(outcome) => acked.extend(outcome),
            None => {
                unknown += 1;
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    progress.store(total, Ordering::SeqCst);
    (acked, unknown)
}

#[test]
fn a_watch_stream_keeps_etcds_guarantees_across_a_leader_change() {
    let _serial = serial();
    require_root("the fault tests create network namespaces and iptables rules");
    let mut cluster = Cluster::loopback(3, &[]);
    let rt = runtime();
    let prefix = "/watch/";
    let leader = rt.block_on(wait_leader(&cluster, Duration::from_secs(10)));
    let follower = (0..3).find(|&i| i != leader).expect("a follower");

    // Writes before the watch's start revision, on the watched prefix: none may be delivered.
    let (start, before) = rt.block_on(async {
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let mut before: Vec<(i64, Vec<u8>, EventKind)> = Vec::new();
        for k in 0..4 {
            let key = format!("{prefix}{k}");
            let revision = client
                .put(key.clone(), "before", None)
                .await
                .expect("a put before the watch")
                .header()
                .map_or(0, |h| h.revision());
            before.push((revision, key.into_bytes(), EventKind::Put));
        }
        let last = before.last().map_or(0, |w| w.0);
        (last + 1, before)
    });

    // The watcher starts on a follower (the member that is killed is the leader, so its
    // stream may well survive: the leader change must then be invisible in it); the other
    // members follow in its list for resuming.
    let mut order = vec![cluster.members[follower].endpoint()];
    order.extend(
        (0..3)
            .filter(|&i| i != follower)
            .map(|i| cluster.members[i].endpoint()),
    );
    let target = Arc::new(AtomicI64::new(i64::MAX));
    let watcher = rt.spawn(watch(
        order,
        prefix.to_owned(),
        start,
        target.clone(),
        Instant::now() + Duration::from_secs(30),
    ));

    let progress = Arc::new(AtomicUsize::new(0));
    let writer = rt.spawn(write(
        cluster.endpoints(),
        prefix.to_owned(),
        300,
        progress.clone(),
    ));
    // Midway, with writes in flight: kill -9 the leader.
    let waiting = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::SeqCst) < 150 {
        assert!(
            Instant::now() < waiting,
            "the writer did not reach 150 operations in 20 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed_at = progress.load(Ordering::SeqCst);
    cluster.members[leader].kill();
    let (acked, unknown) = rt.block_on(writer).expect("the writer task");
    let new = rt.block_on(wait_leader(&cluster, Duration::from_secs(10)));
    assert_ne!(new, leader, "the killed member cannot lead");

    let up_to = acked.iter().map(|w| w.1).max().unwrap_or(start - 1);
    target.store(up_to, Ordering::SeqCst);
    let watched = rt.block_on(watcher).expect("the watcher task");
    let after_kill = acked.iter().filter(|w| w.0 > killed_at).count();
    let acknowledged: Vec<(i64, Vec<u8>, EventKind)> = before
        .into_iter()
        .chain(
            acked
                .into_iter()
                .map(|(_, revision, key, kind)| (revision, key, kind)),
        )
        .collect();
    let report = check_watch(
        &watched.events,
        start,
        &acknowledged,
        prefix.as_bytes(),
        up_to,
    );
    println!(
        "watch: {} events from revision {start} to {up_to} over {} streams, {} acknowledged writes ({after_kill} after the leader m{leader} was killed at write {killed_at}, new leader m{new}), {unknown} unknown, anomalies {}",
        watched.events.len(),
        watched.streams,
        acknowledged.len(),
        report.anomalies.len()
    );
    assert!(report.ok(), "{report}");
    assert!(
        after_kill > 0,
        "no write was acknowledged after the leader was killed"
    );
}
