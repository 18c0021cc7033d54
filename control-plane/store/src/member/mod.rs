//! One member of the store: raft assembled from the log store, the state machine and the peer
//! network, plus what a member does besides raft — forwarding a follower's writes and reads to
//! the leader, the leader's lease clock, periodic compaction, publishing its client URLs, and
//! mirroring raft's state into metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::SnapshotPolicy;
use tokio::task::JoinHandle;

mod background;
mod cluster_id;
mod leases;
mod membership;
pub use membership::{
    check_peer_url, BAD_PEER_URL, CHANGE_REFUSED, MEMBER_NOT_FOUND, ONLY_LEARNERS_PROMOTE,
    PEER_URL_EXISTS,
};
pub mod read_rounds;
mod reads;
pub mod removal;
pub mod snapshots;
mod transfer;

pub use transfer::TransferError;

use crate::log_store::LogStore;
use crate::metrics::{PendingGuard, StoreMetrics};
use crate::network::{ForwardError, Peer, PeerNetwork};
use crate::state_machine::StateMachine;
use crate::types::{member_id, Command, CommandResult, Member as MemberNode, NodeId, TypeConfig};

/// Who leads, and in which term, as openraft's log ids name it.
type LeaderId = openraft::alias::CommittedLeaderIdOf<TypeConfig>;

/// keel's raft: the type configuration and the state machine it applies to.
pub type Raft = openraft::Raft<TypeConfig, Arc<StateMachine>>;

/// How long a client request may wait for a leader, a commit or a read index.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`Member::fatal`] looks at raft's running state.
const FATAL_POLL: Duration = Duration::from_millis(100);

/// What a member needs to know to start.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// The URL peers dial for raft (`http://host:port`).
    pub peer_url: String,
    /// The URLs clients dial, as published in `member list`.
    pub client_urls: Vec<String>,
    /// `(name, peer URL)` of every initial member, this one included. Empty: join an existing
    /// cluster (the leader adds this member).
    pub initial_cluster: Vec<(String, String)>,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    /// Applied entries between snapshots, at least; a large state also waits for as many
    /// bytes of log as its last snapshot took (see [`snapshots`]).
    pub snapshot_count: u64,
    /// Entries kept behind a snapshot for slow followers; one further behind gets the
    /// snapshot (etcd's `--experimental-snapshot-catchup-entries`).
    pub snapshot_catchup_entries: u64,
    /// History kept: compaction never drops revisions younger than this...
    pub compaction_retention: Duration,
    /// ...nor more recent than the last this many revisions.
    pub compaction_revisions: i64,
    /// How often a watch that asked for progress notifications gets one.
    pub progress_notify_interval: Duration,
}

impl MemberConfig {
    pub fn new(name: &str, data_dir: PathBuf, peer_url: &str, client_url: &str) -> Self {
        Self {
            name: name.to_owned(),
            data_dir,
            peer_url: peer_url.to_owned(),
            client_urls: vec![client_url.to_owned()],
            initial_cluster: vec![(name.to_owned(), peer_url.to_owned())],
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5_000,
            compaction_retention: Duration::from_secs(300),
            compaction_revisions: 100_000,
            // etcd's default.
            progress_notify_interval: Duration::from_secs(600),
        }
    }
}

/// Why a client's request failed; each maps to the etcd error clients know.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    LeaderFailed,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: {0}")]
    Internal(String),
}

/// What a leader sends back for a forwarded request it could not serve: the follower answers
/// with the same meaning (and, for an unknown outcome, never retries).
impl From<RequestError> for ForwardError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotLeader => ForwardError::NotLeader,
            RequestError::NoLeader => ForwardError::NoLeader,
            RequestError::Timeout | RequestError::LeaderFailed => ForwardError::Timeout,
            RequestError::Internal(text) => ForwardError::Other(text),
        }
    }
}

impl From<ForwardError> for RequestError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::NotLeader => RequestError::NotLeader,
            ForwardError::NoLeader => RequestError::NoLeader,
            ForwardError::Timeout => RequestError::Timeout,
            ForwardError::Other(s) => RequestError::Internal(s),
        }
    }
}

enum Local<T> {
    Done(T),
    /// Not the leader; the leader if one is known.
    Forward(Option<MemberNode>),
    Failed(RequestError),
}

/// What raft's refusal of a proposal means: send it to the leader, or answer the client.
fn refused_proposal<T>(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Local<T> {
    match e {
        // Refused before anything was appended: safe to send to the leader.
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            Local::Forward(forward.leader_node)
        }
        // Appended, then replaced by another leader's log: it may have committed (a snapshot
        // that covers it discards it too), so it is never sent again, though openraft's
        // `forward_to_leader()` offers it for a resend; etcd answers such a write so.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            Local::Failed(RequestError::LeaderFailed)
        }
        other => Local::Failed(RequestError::Internal(other.to_string())),
    }
}

/// What the outcome of a request forwarded to the leader means for the member that forwarded
/// it.
enum Forwarded<T> {
    Answer(T),
    /// The leader certainly did not take it (it was not leading, or never got it): try again.
    Retry(RequestError),
    /// It failed, or may or may not have happened (a transport failure after sending is
    /// reported as a timeout): the client hears it.
    Failed(RequestError),
}

fn forwarded<T>(outcome: Result<Result<T, ForwardError>, tonic::Status>) -> Forwarded<T> {
    match outcome {
        Ok(Ok(answer)) => Forwarded::Answer(answer),
        Ok(Err(ForwardError::NotLeader | ForwardError::NoLeader)) => {
            Forwarded::Retry(RequestError::NoLeader)
        }
        Ok(Err(e)) => Forwarded::Failed(e.into()),
        // Not connected at all: the leader never saw it.
        Err(status) if status.code() == tonic::Code::Unavailable => {
            Forwarded::Retry(RequestError::NoLeader)
        }
        Err(_) => Forwarded::Failed(RequestError::Timeout),
    }
}

pub struct Member {
    pub id: NodeId,
    /// The cluster id in every response header; 0 until a member that joined learns it, and
    /// whether it is provisional (see [`cluster_id`]).
    cluster_id: AtomicU64,
    cluster_id_provisional: AtomicBool,
    pub config: MemberConfig,
    pub raft: Raft,
    pub sm: Arc<StateMachine>,
    pub log: LogStore,
    pub metrics: StoreMetrics,
    /// The leader's lease deadlines; empty on followers (a new leader restarts every clock,
    /// as etcd's lessor does on promotion).
    pub(crate) lessor: Mutex<HashMap<i64, Instant>>,
    /// The leadership this member last served a read index for, and the last index of its log
    /// then: no read index of that leadership is below it (see [`Member::read_floor`]).
    read_floor: Mutex<Option<(LeaderId, u64)>>,
    /// A follower's read-index calls to the leader, one out at a time (see [`read_rounds`]).
    read_rounds: read_rounds::ReadRounds<Result<Result<u64, ForwardError>, tonic::Status>>,
    /// The newest revision this member has told a client a write took: nothing it serves
    /// from its own state is older (see [`Member::caught_up`]).
    acknowledged: AtomicI64,
    peers: Mutex<HashMap<String, Peer>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set, with how it learnt it, once this member knows it was removed from the cluster
    /// (see [`removal`]).
    removed: tokio::sync::watch::Sender<Option<String>>,
}

/// What [`Member::db_size`] answers, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSize {
    pub total: u64,
    pub in_use: u64,
}

impl Member {
    /// Opens the data directory, starts raft, and forms the initial cluster on first start.
    pub async fn start(config: MemberConfig) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let metrics = StoreMetrics::default();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        removal::refuse_if_removed(&config.data_dir)?;
        let cluster_id = cluster_id::at_start(&config)?;
        let id = member_id(&config.peer_url);
        let log = LogStore::open(&config.data_dir.join("raft-log"), id, metrics.clone())?;
        let sm = StateMachine::open(&config.data_dir.join("snapshots"), metrics.clone())?;
        sm.track_member(id);
        let heartbeat = config.heartbeat.as_millis() as u64;
        let election = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "keel".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            // A narrow window: openraft's voters honour the old leader's lease until
            // `election_timeout_max` has passed, so a wide one mostly adds a failed first round.
            election_timeout_max: election + election / 4,
            install_snapshot_timeout: 10_000,
            // keel's own policy decides (see `snapshots`), and asks openraft to build one.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
            purge_batch_size: 256,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .context("raft configuration")?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            PeerNetwork {
                metrics: metrics.peers.clone(),
            },
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("raft did not start: {e}"))?;
        let member = Arc::new(Self {
            id,
            cluster_id: AtomicU64::new(cluster_id.id),
            cluster_id_provisional: AtomicBool::new(cluster_id.provisional),
            config,
            raft,
            sm,
            log,
            metrics,
            lessor: Mutex::new(HashMap::new()),
            read_floor: Mutex::new(None),
            read_rounds: Default::default(),
            acknowledged: AtomicI64::new(0),
            peers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            removed: tokio::sync::watch::Sender::new(None),
        });
        member.form_cluster().await?;
        member.spawn_background();
        Ok(member)
    }

    /// On a pristine data directory, every initial member writes the same first membership;
    /// a member that already has a log (a restart) or joins later skips this.
    async fn form_cluster(&self) -> anyhow::Result<()> {
        if self.config.initial_cluster.is_empty() {
            return Ok(());
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| anyhow::anyhow!("raft: {e}"))?;
        if initialized {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, MemberNode> = self
            .config
            .initial_cluster
            .iter()
            .map(|(name, url)| {
                (
                    member_id(url),
                    MemberNode {
                        name: name.clone(),
                        peer_url: url.clone(),
                    },
                )
            })
            .collect();
        if !nodes.contains_key(&self.id) {
            anyhow::bail!(
                "--initial-cluster does not name this member's peer URL {}",
                self.config.peer_url
            );
        }
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            // Another member's first membership reached us first: the cluster is formed.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("forming the cluster: {e}")),
        }
    }

    fn spawn_background(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(tokio::spawn(background::mirror_metrics(self.clone())));
        tasks.push(tokio::spawn(background::lease_clock(self.clone())));
        tasks.push(tokio::spawn(background::compactor(self.clone())));
        tasks.push(tokio::spawn(background::publish(self.clone())));
        tasks.push(tokio::spawn(snapshots::snapshotter(self.clone())));
        tasks.push(tokio::spawn(background::probe_peers(self.clone())));
    }

    pub async fn shutdown(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let _ = self.raft.shutdown().await;
    }

    /// Resolves when raft stopped on a fatal error (a storage write failed: a full disk, an
    /// I/O error), with the reason. Nothing is acknowledged after that point; the process
    /// should exit so that its supervisor restarts it once the cause is fixed, as etcd does.
    ///
    /// It looks every `FATAL_POLL` (100 ms) rather than waiting on raft's metrics channel: openraft
    /// sends on that channel at every turn of its core loop, thousands of times a second under
    /// load, and each send would wake the waiter (on the binary's main thread, a futex wake and
    /// a context switch per turn, on two cores that the raft path itself needs).
    pub async fn fatal(&self) -> String {
        use futures::FutureExt;
        let mut rx = self.raft.metrics();
        loop {
            if let Err(fatal) = &rx.borrow_watched().running_state {
                return fatal.to_string();
            }
            if let Some(Err(_)) = rx.changed().now_or_never() {
                return "raft stopped".into();
            }
            tokio::time::sleep(FATAL_POLL).await;
        }
    }

    /// Brings the gauges that follow every commit up to date, for a scrape.
    pub fn refresh_metrics(&self) {
        let data = self.raft.data_metrics();
        let committed = data.borrow_watched().cluster_committed.map(|c| c.index);
        if let Some(index) = committed {
            self.metrics.committed_index.set(index as i64);
        }
        let size = self.db_size();
        self.metrics.db_total_size.set(size.total as i64);
        self.metrics.db_total_size_in_use.set(size.in_use as i64);
    }

    /// etcd's `dbSize` and `dbSizeInUse`: the raft log on disk plus the keyspace and its
    /// history, and the keyspace part alone (kept by the keyspace as it changes, so a scrape
    /// or `etcdctl endpoint status` does not hold applies up).
    pub fn db_size(&self) -> DbSize {
        let in_use = self.sm.lock().state.kv.approximate_size() as u64;
        DbSize {
            total: self.log.disk_space() + in_use,
            in_use,
        }
    }

    pub fn raft_metrics(&self) -> openraft::RaftMetrics<crate::types::TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Read off raft's metrics in place: cloning them (maps of replication progress, the
    /// membership) on every response showed in profiles.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.id)
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The leader's peer client, if a leader is known and it is not this member.
    /// The client of a peer, kept for the member's life: one HTTP/2 connection per peer for
    /// forwarded proposals, read indexes and keep-alives (a new one per request cost a TCP
    /// and HTTP/2 handshake on two thirds of a 3-member cluster's writes).
    fn peer(&self, node: &MemberNode) -> Peer {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .entry(node.peer_url.clone())
            .or_insert_with(|| {
                Peer::new(
                    member_id(&node.peer_url),
                    &node.peer_url,
                    self.metrics.peers.clone(),
                )
            })
            .clone()
    }

    async fn propose_local(&self, cmd: Command) -> Local<CommandResult> {
        let pending = PendingGuard::count(&self.metrics.proposals_pending);
        let started = Instant::now();
        // An isolated leader would wait forever for a quorum: answer "request timed out" as
        // etcd does (the command may still commit later, which the client must assume).
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.raft.client_write(cmd)).await;
        drop(pending);
        let Ok(result) = result else {
            self.metrics.proposals_failed.inc();
            return Local::Failed(RequestError::Timeout);
        };
        match result {
            Ok(resp) => {
                self.metrics
                    .proposal_duration
                    .observe(started.elapsed().as_secs_f64());
                Local::Done(resp.data)
            }
            Err(e) => {
                let refused = refused_proposal(e);
                if matches!(refused, Local::Failed(_)) {
                    self.metrics.proposals_failed.inc();
                }
                refused
            }
        }
    }

    /// What a forwarded proposal gets on the leader: no second hop.
    pub async fn propose_as_leader(&self, cmd: Command) -> Result<CommandResult, ForwardError> {
        match self.propose_local(cmd).await {
            Local::Done(r) => Ok(r),
            Local::Forward(_) => Err(ForwardError::NotLeader),
            Local::Failed(e) => Err(e.into()),
        }
    }

    /// Proposes a command through raft, forwarding it to the leader from a follower, and
    /// answers once it is applied. Retries only when the command certainly did not happen
    /// (no leader yet, or the member asked was no longer leader); a transport failure after
    /// sending is reported as a timeout, since the command may or may not have committed.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, RequestError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            // A follower that knows the leader forwards at once: asking its own raft first
            // costs a round trip through raft's core only to hear the same.
            let attempt = match self.leader_elsewhere() {
                Some(leader) => Local::Forward(Some(leader)),
                None => self.propose_local(cmd.clone()).await,
            };
            let retry = match attempt {
                Local::Done(r) => return Ok(r),
                Local::Failed(e) => return Err(e),
                Local::Forward(None) => RequestError::NoLeader,
                Local::Forward(Some(leader)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match forwarded(self.peer(&leader).propose(cmd.clone(), left).await) {
                        Forwarded::Answer(r) => {
                            // The leader answers after its own apply; this member's may come
                            // later. Its local reads wait for it ([`Member::caught_up`]).
                            self.acknowledged.fetch_max(r.revision, Ordering::AcqRel);
                            return Ok(r);
                        }
                        Forwarded::Retry(why) => why,
                        Forwarded::Failed(e) => return Err(e),
                    }
                }
            };
            if Instant::now() >= deadline {
                return Err(retry);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader, when raft's metrics name one other than this member (read in place).
    fn leader_elsewhere(&self) -> Option<MemberNode> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader = metrics.current_leader.filter(|leader| *leader != self.id)?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
    }

    /// The leader's peer client, when a leader other than this member is known.
    fn leader_peer(&self) -> Option<Peer> {
        Some(self.peer(&self.leader_elsewhere()?))
    }

    /// Runs `local` if this member leads, else `remote` on the leader, retrying while there is
    /// no leader (the questions it serves — keep-alive, time-to-live — change nothing that a
    /// retry could apply twice).
    async fn on_leader<T, Fut>(
        &self,
        local: impl Fn(&Self) -> Result<T, ForwardError>,
        remote: impl Fn(Peer, Duration) -> Fut,
    ) -> Result<T, RequestError>
    where
        Fut: std::future::Future<Output = Result<Result<T, ForwardError>, tonic::Status>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let retry = match local(self) {
                Ok(answer) => return Ok(answer),
                Err(ForwardError::NotLeader) => match self.leader_peer() {
                    None => RequestError::NoLeader,
                    Some(peer) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match remote(peer, left).await {
                            Ok(Ok(answer)) => return Ok(answer),
                            Ok(Err(e)) => e.into(),
                            Err(_) => RequestError::NoLeader,
                        }
                    }
                },
                Err(e) => return Err(e.into()),
            };
            if Instant::now() >= deadline {
                return Err(retry);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Replaces `name` in `dir` with `contents` as the snapshots are replaced: a whole new file,
/// synced, renamed over the old one, the directory synced, so that a crash leaves the old
/// file or the new one, never a torn one and never none that was written.
fn replace_file(dir: &std::path::Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut out = std::fs::File::create(&tmp)?;
    out.write_all(contents)?;
    out.sync_data()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use openraft::error::ForwardToLeader;

    use super::*;

    /// Only a proposal raft refused before appending it goes to the leader; one appended and
    /// then discarded may have committed, and sent again it could be applied twice.
    #[test]
    fn a_discarded_proposal_is_not_sent_again() {
        let moved = ForwardToLeader::<TypeConfig>::empty();
        assert!(matches!(
            refused_proposal::<()>(RaftError::APIError(ClientWriteError::ForwardToLeader(
                moved.clone()
            ))),
            Local::Forward(None)
        ));
        assert!(matches!(
            refused_proposal::<()>(RaftError::APIError(ClientWriteError::LogEntryDiscarded(
                moved
            ))),
            Local::Failed(RequestError::LeaderFailed)
        ));
    }

    /// A forwarded request's failure keeps its meaning on the follower: an unknown outcome
    /// stays one (never retried), a refusal keeps its words without a second "etcdserver:".
    #[test]
    fn a_leaders_failure_reaches_the_follower_with_its_meaning() {
        let unknown: RequestError = ForwardError::from(RequestError::LeaderFailed).into();
        assert!(matches!(unknown, RequestError::Timeout));
        let refused: RequestError =
            ForwardError::from(RequestError::Internal("member not found".into())).into();
        assert_eq!(refused.to_string(), "etcdserver: member not found");
    }
}
