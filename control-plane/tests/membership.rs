//! Membership changes with real processes on loopback: a learner that joins from a snapshot,
//! is promoted and removed; a joiner that knows no members yet; a removed member (a voter
//! down at the time, a leader that removes itself, a learner) that learns it and stops, and
//! refuses to start again on its data; a member added back on an empty data directory.

mod support;

use std::time::{Duration, Instant};

use etcd_client::{GetOptions, MemberAddOptions};
use support::{connect, runtime, wait_leader, Cluster};

/// What a removed member logs as it stops (etcd's words).
const REMOVED: &str = "the member has been permanently removed from the cluster";

/// The member's process stops by itself within 15 s, with status 0 and the reason logged, as
/// etcd's removed member does.
fn expect_stopped_as_removed(member: &mut support::Member) {
    let (code, output) = member.wait_exit(Duration::from_secs(15));
    let output = output.join("\n");
    assert_eq!(
        code,
        Some(0),
        "the removed member {} did not stop by itself with status 0:\n{output}",
        member.name
    );
    assert!(
        output.contains(REMOVED),
        "the removed member {} stopped without saying why:\n{output}",
        member.name
    );
}

/// Removes member `index` (`None`: the leader itself) through the leader, asking again while
/// the leadership moves (at the start an election may still be settling; the member asked
/// then answers "not leader" or "no leader"). Returns the leader that took it.
async fn remove_through_leader(cluster: &Cluster, index: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let leader = wait_leader(cluster, Duration::from_secs(10)).await;
        let peer_url = cluster.members[index.unwrap_or(leader)].peer_url();
        let mut client = connect(&[cluster.members[leader].endpoint()])
            .await
            .expect("client");
        let id = member_id(&mut client, &peer_url).await;
        match client.member_remove(id).await {
            Ok(_) => return leader,
            Err(e)
                if (e.to_string().contains("not leader")
                    || e.to_string().contains("no leader"))
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "member remove: {e}\n{}",
                cluster.members[leader].output().join("\n")
            ),
        }
    }
}

/// Waits (15 s at most) until `member` serves `key` from its own state.
async fn serves(member: &support::Member, key: &str) {
    let reader = connect(&[member.endpoint()]).await.expect("client");
    let what = format!("{} serves {key}", member.name);
    support::eventually(&what, Duration::from_secs(15), || {
        let mut reader = reader.clone();
        async move {
            let got = reader
                .get(key, Some(GetOptions::new().with_serializable()))
                .await
                .ok()?;
            (got.count() == 1).then_some(())
        }
    })
    .await;
}

/// The id etcd's API gives the member whose peer URL is `peer_url`.
async fn member_id(client: &mut etcd_client::Client, peer_url: &str) -> u64 {
    let list = client.member_list().await.expect("member list");
    list.members()
        .iter()
        .find(|m| m.peer_urls().iter().any(|u| u == peer_url))
        .map(|m| m.id())
        .unwrap_or_else(|| panic!("no member has the peer URL {peer_url}: {list:?}"))
}

#[test]
fn a_learner_joins_from_a_snapshot_is_promoted_and_removed() {
    const SNAP_KEYS: usize = 1500;
    let mut cluster = Cluster::loopback(
        3,
        &["--snapshot-count", "50", "--snapshot-catchup-entries", "10"],
    );
    let rt = runtime();
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        // Enough that the log is purged from its start: openraft purges in batches of 256
        // entries behind a snapshot, and with all of history kept the state grows with the
        // log, so snapshots come at about 3×, 9×, 27× --snapshot-count (see `snapshots`).
        for i in 0..SNAP_KEYS {
            client
                .put(format!("/snap/{i:04}"), "v", None)
                .await
                .expect("put");
        }
    });
    // The fourth member: added as a learner, started with an empty data directory.
    let joiner = cluster.push_joiner();
    let peer_url = cluster.members[joiner].peer_url();
    let data_dir = cluster.members[joiner].data_dir.clone();
    let added = rt.block_on(async {
        let mut leader_client = {
            let leader = wait_leader(&cluster, Duration::from_secs(5)).await;
            connect(&[cluster.members[leader].endpoint()])
                .await
                .expect("client")
        };
        leader_client
            .member_add([peer_url], Some(MemberAddOptions::new().with_is_learner()))
            .await
            .expect("member add --learner")
            .member()
            .map(|m| m.id())
            .expect("the added member")
    });
    cluster.members[joiner].start();
    rt.block_on(async {
        let mut learner = connect(&[cluster.members[joiner].endpoint()])
            .await
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = learner
                .get(
                    "/snap/",
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_serializable()
                            .with_count_only(),
                    ),
                )
                .await;
            if got.map(|g| g.count()).unwrap_or(0) == SNAP_KEYS as i64 {
                break;
            }
            assert!(Instant::now() < deadline, "the learner did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            data_dir.join("snapshots/snapshot").exists(),
            "the learner caught up without installing a snapshot"
        );
        let leader = wait_leader(&cluster, Duration::from_secs(5)).await;
        let mut leader_client = connect(&[cluster.members[leader].endpoint()])
            .await
            .expect("client");
        leader_client
            .member_promote(added)
            .await
            .expect("member promote");
        let list = leader_client.member_list().await.expect("member list");
        assert_eq!(list.members().len(), 4);
        assert!(
            list.members().iter().all(|m| !m.is_learner()),
            "still a learner after promote"
        );
        // The member that joined (with no initial cluster to derive it from) answers with the
        // cluster's id, as every member does.
        let cluster_id = list.header().map(|h| h.cluster_id()).expect("a header");
        support::eventually(
            "the joined member's headers name the cluster's id",
            Duration::from_secs(10),
            || {
                let mut learner = learner.clone();
                async move {
                    let got = learner.get("/snap/0000", None).await.ok()?;
                    (got.header()?.cluster_id() == cluster_id).then_some(())
                }
            },
        )
        .await;
        leader_client
            .member_remove(added)
            .await
            .expect("member remove");
        let list = leader_client.member_list().await.expect("member list");
        assert_eq!(list.members().len(), 3);
    });
    expect_stopped_as_removed(&mut cluster.members[joiner]);
}

/// A member that has received no log yet (it joins and nobody added it) knows no members:
/// it says there is no leader rather than list none, and lists them once it is added.
#[test]
fn a_member_that_knows_no_members_yet_answers_no_leader_not_an_empty_list() {
    let mut cluster = Cluster::loopback(1, &[]);
    let rt = runtime();
    rt.block_on(wait_leader(&cluster, Duration::from_secs(10)));
    let new = cluster.push_joiner();
    cluster.members[new].start();
    let peer_url = cluster.members[new].peer_url();
    rt.block_on(async {
        let mut joiner = connect(&[cluster.members[new].endpoint()])
            .await
            .expect("client");
        // Serializable reads work on any member; the member list needs someone who knows.
        match joiner.member_list().await {
            Err(etcd_client::Error::GRpcStatus(status)) => {
                // etcd's error, which clientv3 recognises by its message.
                assert_eq!(status.message(), "etcdserver: no leader", "{status:?}");
            }
            other => panic!("a member with no log listed {other:?}"),
        }
        let mut first = connect(&[cluster.members[0].endpoint()])
            .await
            .expect("client");
        let added = first
            .member_add([peer_url], Some(MemberAddOptions::new().with_is_learner()))
            .await
            .expect("member add --learner")
            .member()
            .map(|m| m.id())
            .expect("the added member");
        let list = support::eventually(
            "the joiner lists both members",
            Duration::from_secs(15),
            || {
                let mut joiner = joiner.clone();
                async move {
                    joiner
                        .member_list()
                        .await
                        .ok()
                        .filter(|l| l.members().len() == 2)
                }
            },
        )
        .await;
        assert!(
            list.members()
                .iter()
                .any(|m| m.id() == added && m.is_learner()),
            "{:?}",
            list.members()
        );
    });
}

/// A voter removed from the cluster while it was down is not told by raft when it comes back
/// (the leader no longer replicates to it), and would serve a state that never changes again:
/// the leader tells it, as etcd's peers do, and it stops with status 0. Started again on that
/// data directory it refuses, naming what to do. The others carry on.
#[test]
fn a_member_removed_while_down_stops_when_it_starts_and_then_refuses_to_start() {
    let mut cluster = Cluster::loopback(3, &[]);
    let rt = runtime();
    let leader = rt.block_on(wait_leader(&cluster, Duration::from_secs(10)));
    let removed = (leader + 1) % cluster.members.len();
    cluster.members[removed].stop();
    rt.block_on(async {
        let leader = remove_through_leader(&cluster, Some(removed)).await;
        let mut client = connect(&[cluster.members[leader].endpoint()])
            .await
            .expect("client");
        client
            .put("/after", "v", None)
            .await
            .expect("a put after the removal");
        let list = client.member_list().await.expect("member list");
        assert_eq!(list.members().len(), 2, "{list:?}");
    });
    cluster.members[removed].start();
    expect_stopped_as_removed(&mut cluster.members[removed]);
    let (code, output) = cluster.members[removed].start_refused(Duration::from_secs(15));
    let output = output.join("\n");
    assert!(
        code.is_some_and(|c| c != 0),
        "a removed member's data directory started ({code:?}):\n{output}"
    );
    assert!(
        output.contains(REMOVED) && output.contains("remove its data directory"),
        "the refusal does not say why and what to do:\n{output}"
    );
}

/// A leader that removes itself applies its own removal, which no replication brings a removed
/// follower; it names the last membership that included it, the new leader tells it, and it
/// stops. The other two elect that leader and take writes.
#[test]
fn a_leader_that_removes_itself_stops_and_the_others_carry_on() {
    let mut cluster = Cluster::loopback(3, &[]);
    let rt = runtime();
    let leader = rt.block_on(remove_through_leader(&cluster, None));
    let (code, output) = cluster.members[leader].wait_exit(Duration::from_secs(15));
    let output = output.join("\n");
    assert_eq!(code, Some(0), "the removed leader did not stop:\n{output}");
    assert!(output.contains(REMOVED), "{output}");
    let others: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| cluster.members[i].endpoint())
        .collect();
    rt.block_on(async {
        let client = connect(&others).await.expect("client");
        support::eventually(
            "a put through the other two",
            Duration::from_secs(15),
            || {
                let mut client = client.clone();
                async move { client.put("/after", "v", None).await.ok() }
            },
        )
        .await;
    });
}

/// A learner never campaigns, so it would never find out by an election either: the leader
/// tells it as it tells a voter. Added back on an empty data directory, it has its old id (a
/// member's id is its peer URL's) and replays the log, its removal included, from the start:
/// it must not take that for a removal now, and stays.
#[test]
fn a_removed_learner_stops_and_added_back_on_an_empty_directory_stays() {
    let mut cluster = Cluster::loopback(1, &[]);
    let rt = runtime();
    rt.block_on(wait_leader(&cluster, Duration::from_secs(10)));
    let learner = cluster.push_joiner();
    let peer_url = cluster.members[learner].peer_url();
    let mut client = rt.block_on(async {
        connect(&[cluster.members[0].endpoint()])
            .await
            .expect("client")
    });
    let add_and_catch_up = |cluster: &mut Cluster, client: &mut etcd_client::Client, key: &str| {
        rt.block_on(async {
            client
                .member_add(
                    [peer_url.clone()],
                    Some(MemberAddOptions::new().with_is_learner()),
                )
                .await
                .expect("member add --learner");
            client.put(key, "v", None).await.expect("put");
        });
        cluster.members[learner].start();
        // It has applied the membership that includes it once it serves the key.
        rt.block_on(serves(&cluster.members[learner], key));
    };
    add_and_catch_up(&mut cluster, &mut client, "/first");
    rt.block_on(async {
        let id = member_id(&mut client, &peer_url).await;
        client.member_remove(id).await.expect("member remove");
    });
    expect_stopped_as_removed(&mut cluster.members[learner]);

    std::fs::remove_dir_all(&cluster.members[learner].data_dir).expect("wipe the data directory");
    add_and_catch_up(&mut cluster, &mut client, "/second");
    // Three probe intervals and more after it caught up.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        cluster.members[learner].has_not_exited(),
        "the member added back stopped:\n{}",
        cluster.members[learner].output().join("\n")
    );
}

/// etcd's members take a membership change on any member; a follower forwards it to the
/// leader and answers once it applied it, so its answer lists the change.
#[test]
fn membership_changes_sent_to_a_follower_are_made_and_answered() {
    let mut cluster = Cluster::loopback(3, &[]);
    let rt = runtime();
    rt.block_on(async {
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        client.put("/settled", "v", None).await.expect("put");
    });
    // Each change goes to a member that is a follower just then (an election on a busy
    // machine may move the leadership between changes).
    let follower = |cluster: &Cluster| {
        rt.block_on(async {
            let leader = wait_leader(cluster, Duration::from_secs(10)).await;
            let follower = (leader + 1) % 3;
            let client = connect(&[cluster.members[follower].endpoint()])
                .await
                .expect("client");
            (follower, client)
        })
    };
    let joiner = cluster.push_joiner();
    let peer_url = cluster.members[joiner].peer_url();
    let (_, mut client) = follower(&cluster);
    let added = rt.block_on(async {
        let answer = client
            .member_add(
                [peer_url.clone()],
                Some(MemberAddOptions::new().with_is_learner()),
            )
            .await
            .expect("member add --learner through a follower");
        let added = answer.member().expect("the answer names the added member");
        assert!(added.is_learner());
        assert_eq!(answer.member_list().len(), 4, "{answer:?}");
        // The same URL again, as a voter this time: refused as etcd refuses it, not taken
        // for a promotion of the learner before it caught up.
        match client.member_add([peer_url.clone()], None).await {
            Err(etcd_client::Error::GRpcStatus(status)) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                assert!(
                    status.message().contains("Peer URLs already exists"),
                    "{status:?}"
                );
            }
            other => panic!("a second add of {peer_url} was not refused: {other:?}"),
        }
        added.id()
    });
    cluster.members[joiner].start();
    rt.block_on(serves(&cluster.members[joiner], "/settled"));
    let (_, mut client) = follower(&cluster);
    rt.block_on(async {
        let promoted = client
            .member_promote(added)
            .await
            .expect("member promote through a follower");
        assert!(
            promoted
                .members()
                .iter()
                .any(|m| m.id() == added && !m.is_learner()),
            "{promoted:?}"
        );
    });
    let (_, mut client) = follower(&cluster);
    rt.block_on(async {
        let removed = client
            .member_remove(added)
            .await
            .expect("member remove through a follower");
        assert!(
            removed.members().iter().all(|m| m.id() != added),
            "{removed:?}"
        );
    });
    expect_stopped_as_removed(&mut cluster.members[joiner]);
    let forwarded: usize = (0..3)
        .map(|i| {
            cluster.members[i]
                .output()
                .iter()
                .filter(|l| l.contains("forwarding a membership change to the leader"))
                .count()
        })
        .sum();
    // Three when the leadership held still; one at least even if an election on a busy
    // machine made the member picked as a follower the leader by the time it was asked.
    assert!(
        forwarded >= 1,
        "no change was forwarded by a follower ({forwarded})"
    );
    // A follower that removes itself through itself hears OK (the leader no longer replicates
    // to it, so it never applies the removal to wait for), and then stops.
    let (follower, mut client) = follower(&cluster);
    rt.block_on(async {
        let own = member_id(&mut client, &cluster.members[follower].peer_url()).await;
        let removed = client
            .member_remove(own)
            .await
            .expect("a follower's own removal through itself");
        assert!(
            removed.members().iter().all(|m| m.id() != own),
            "{removed:?}"
        );
    });
    expect_stopped_as_removed(&mut cluster.members[follower]);
}

/// Data directories of an older keel have no `cluster-id`, and the flags the members start
/// with now may differ from those the cluster formed with (here each names only itself, so
/// each derives another id): the first leader acknowledged by a quorum keeps its own, the
/// others learn it, and every member keeps and answers that one; a later leader with a
/// provisional id takes the one a peer kept instead of keeping its own.
#[test]
fn a_cluster_of_older_data_directories_settles_on_one_cluster_id() {
    let mut cluster = Cluster::loopback(3, &[]);
    let rt = runtime();
    rt.block_on(async {
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        client.put("/settled", "v", None).await.expect("put");
    });
    for member in &mut cluster.members {
        member.kill();
        std::fs::remove_file(member.data_dir.join("cluster-id")).expect("an older directory");
        let own = format!("{}={}", member.name, member.peer_url());
        let at = member
            .args
            .iter()
            .position(|a| a == "--initial-cluster")
            .expect("the flag");
        member.args[at + 1] = own;
    }
    cluster.start_all();
    let kept = |member: &support::Member| {
        std::fs::read_to_string(member.data_dir.join("cluster-id"))
            .ok()
            .and_then(|text| u64::from_str_radix(text.trim(), 16).ok())
    };
    let settled = rt.block_on(support::eventually(
        "every member keeps one cluster id",
        Duration::from_secs(20),
        || async {
            let ids: Vec<Option<u64>> = cluster.members.iter().map(kept).collect();
            let first = ids[0]?;
            ids.iter().all(|id| *id == Some(first)).then_some(first)
        },
    ));
    assert!(
        cluster.members.iter().any(|m| m
            .output()
            .iter()
            .any(|l| l.contains("kept this leader's cluster id as the cluster's"))),
        "no leader kept its provisional id"
    );
    let answers_kept_id = |cluster: &Cluster, settled: u64| {
        rt.block_on(async {
            for member in &cluster.members {
                let mut client = connect(&[member.endpoint()]).await.expect("client");
                let got = client.get("/settled", None).await.expect("get");
                assert_eq!(got.kvs().len(), 1, "{} lost the key", member.name);
                assert_eq!(
                    got.header().map(|h| h.cluster_id()),
                    Some(settled),
                    "{} answers another cluster id than it kept",
                    member.name
                );
            }
        })
    };
    answers_kept_id(&cluster, settled);
    // A leader with a provisional id takes the one a peer kept: two members lose theirs and
    // start first, so one of them leads while the member that kept it is down; it keeps
    // nothing until every peer answered, and then takes that member's.
    for member in &mut cluster.members {
        member.kill();
    }
    for member in &cluster.members[1..] {
        std::fs::remove_file(member.data_dir.join("cluster-id")).expect("an older directory");
    }
    for member in &mut cluster.members[1..] {
        member.start();
    }
    rt.block_on(async {
        let endpoints = cluster.running_endpoints();
        support::eventually(
            "the two members elect a leader",
            Duration::from_secs(15),
            || async {
                let mut client = connect(&endpoints).await.ok()?;
                client.get("/settled", None).await.ok().map(|_| ())
            },
        )
        .await;
    });
    // Beyond a probe round with the leader's peer down: nothing kept yet.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        cluster.members[1..].iter().all(|m| kept(m).is_none()),
        "a leader kept an id while a peer could not say which it kept"
    );
    cluster.members[0].start();
    rt.block_on(support::eventually(
        "the provisional members take the kept id",
        Duration::from_secs(20),
        || async {
            cluster
                .members
                .iter()
                .all(|m| kept(m) == Some(settled))
                .then_some(())
        },
    ));
    answers_kept_id(&cluster, settled);
}
