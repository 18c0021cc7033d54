//! Commit notices folded into the next append on a replication stream.
//!
//! When the leader commits, openraft tells every follower at once with an AppendEntries that
//! carries no entries, only the new `leader_commit`. With one client that is a second round trip
//! to each follower for every write (the follower wakes, records the commit, applies, answers;
//! the leader reads the answer), and it runs on the same two cores at the moment the leader is
//! applying the write and answering the client. The client's next write follows within a few
//! hundred microseconds and its append carries the same commit index, so this stream holds a
//! notice back for [`HOLD`] and drops it when the next request subsumes it: same vote, same
//! `prev_log_id`, a `leader_commit` at least as high. The follower then learns the commit with
//! the next entries, as a raft follower may. A notice that nothing follows within the hold is
//! sent as it was, so a follower learns of every commit within about a millisecond (its
//! serializable reads, and the wait of a linearizable read for its applied index, stay that
//! fresh).
//!
//! Openraft tolerates the missing answer: it matches answers to requests by log position
//! (`drain_acked` takes every request the answer's matching log id covers), so the answer to
//! the request that subsumed a notice acknowledges the notice too, and that follower answered
//! after the notice was made, so the leader's lease reckoning from its send time stays honest.
//! The first request of a stream is never held: it may be the probe a session starts with.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use openraft::raft::AppendEntriesRequest;
use tokio::time::{sleep, Instant, Sleep};

use crate::types::TypeConfig;

/// How long a commit notice waits for a request to fold into.
pub const HOLD: Duration = Duration::from_millis(1);

type Request = AppendEntriesRequest<TypeConfig>;

/// A stream of append requests with commit-only requests folded into the next one.
pub struct FoldCommitNotices<S> {
    input: S,
    input_done: bool,
    /// A commit-only request waiting for the next request or the deadline.
    held: Option<Request>,
    deadline: Pin<Box<Sleep>>,
    /// A request that arrived while one was held and did not subsume it: it goes out right
    /// after the held one.
    queued: Option<Request>,
    sent_any: bool,
    /// Notices dropped because a later request carried them (what the tests look at).
    folded: u64,
}

impl<S> FoldCommitNotices<S> {
    pub fn new(input: S) -> Self {
        Self {
            input,
            input_done: false,
            held: None,
            deadline: Box::pin(sleep(HOLD)),
            queued: None,
            sent_any: false,
            folded: 0,
        }
    }

    /// How many commit notices a later request carried instead.
    pub fn folded(&self) -> u64 {
        self.folded
    }
}

/// A request that only moves the follower's commit index.
fn is_commit_notice(req: &Request) -> bool {
    req.entries.is_empty()
}

/// Whether sending `next` tells the follower everything `held` would have.
fn subsumes(next: &Request, held: &Request) -> bool {
    next.vote == held.vote
        && next.prev_log_id == held.prev_log_id
        && next.leader_commit >= held.leader_commit
}

impl<S: Stream<Item = Request> + Unpin> Stream for FoldCommitNotices<S> {
    type Item = Request;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Request>> {
        let this = self.get_mut();
        if let Some(req) = this.queued.take() {
            return Poll::Ready(Some(this.emit(req)));
        }
        while !this.input_done {
            match Pin::new(&mut this.input).poll_next(cx) {
                Poll::Ready(Some(req)) => {
                    if let Some(held) = this.held.take() {
                        if subsumes(&req, &held) {
                            this.folded += 1;
                        } else {
                            this.queued = Some(req);
                            return Poll::Ready(Some(this.emit(held)));
                        }
                    }
                    if this.sent_any && is_commit_notice(&req) {
                        this.held = Some(req);
                        this.deadline.as_mut().reset(Instant::now() + HOLD);
                        continue;
                    }
                    return Poll::Ready(Some(this.emit(req)));
                }
                Poll::Ready(None) => this.input_done = true,
                Poll::Pending => {
                    if this.held.is_some() && this.deadline.as_mut().poll(cx).is_ready() {
                        let held = this.held.take();
                        return Poll::Ready(held.map(|h| this.emit(h)));
                    }
                    return Poll::Pending;
                }
            }
        }
        // The input ended: what is held still goes out.
        Poll::Ready(this.held.take().map(|h| this.emit(h)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (low, high) = self.input.size_hint();
        let extra = usize::from(self.held.is_some()) + usize::from(self.queued.is_some());
        (
            low.min(1).max(extra.min(1)),
            high.and_then(|h| h.checked_add(extra)),
        )
    }
}

impl<S> FoldCommitNotices<S> {
    fn emit(&mut self, req: Request) -> Request {
        self.sent_any = true;
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, LogId, Vote};
    use futures::StreamExt;
    use openraft::alias::LeaderIdOf;
    use openraft::vote::RaftLeaderId;
    use openraft::EntryPayload;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    fn log_id(index: u64) -> LogId {
        LogId::new(
            <LeaderIdOf<TypeConfig> as RaftLeaderId>::new(1, 0).to_committed(),
            index,
        )
    }

    fn request(term: u64, prev: u64, commit: u64, entries: u64) -> Request {
        Request {
            vote: Vote::new_committed(term, 0),
            prev_log_id: Some(log_id(prev)),
            leader_commit: Some(log_id(commit)),
            entries: (prev + 1..=prev + entries)
                .map(|i| Entry {
                    log_id: log_id(i),
                    payload: EntryPayload::Blank,
                })
                .collect(),
        }
    }

    fn shape(r: &Request) -> (u64, u64, usize) {
        (
            r.prev_log_id.map_or(0, |l| l.index),
            r.leader_commit.map_or(0, |l| l.index),
            r.entries.len(),
        )
    }

    fn fold() -> (
        mpsc::UnboundedSender<Request>,
        FoldCommitNotices<UnboundedReceiverStream<Request>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, FoldCommitNotices::new(UnboundedReceiverStream::new(rx)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_notice_followed_by_an_append_is_carried_by_it() {
        let (tx, mut out) = fold();
        tx.send(request(1, 0, 0, 1)).unwrap();
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((0, 0, 1)));
        tx.send(request(1, 1, 1, 0)).unwrap(); // commit notice
        tx.send(request(1, 1, 1, 1)).unwrap(); // the next write
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((1, 1, 1)));
        assert_eq!(out.folded(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_notice_nothing_follows_goes_out_after_the_hold() {
        let (tx, mut out) = fold();
        tx.send(request(1, 0, 0, 1)).unwrap();
        out.next().await;
        tx.send(request(1, 1, 1, 0)).unwrap();
        let started = Instant::now();
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((1, 1, 0)));
        assert!(started.elapsed() >= HOLD, "sent before the hold ended");
        assert!(
            started.elapsed() < HOLD * 3,
            "held too long: {:?}",
            started.elapsed()
        );
        assert_eq!(out.folded(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_notice_replaces_an_earlier_one() {
        let (tx, mut out) = fold();
        tx.send(request(1, 0, 0, 2)).unwrap();
        out.next().await;
        tx.send(request(1, 2, 1, 0)).unwrap();
        tx.send(request(1, 2, 2, 0)).unwrap();
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((2, 2, 0)));
        assert_eq!(out.folded(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_does_not_subsume_the_notice_follows_it() {
        let (tx, mut out) = fold();
        tx.send(request(1, 0, 0, 1)).unwrap();
        out.next().await;
        tx.send(request(1, 1, 1, 0)).unwrap();
        // A lower commit index (cannot happen from one leader, but must not lose the notice).
        tx.send(request(1, 1, 0, 1)).unwrap();
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((1, 1, 0)));
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((1, 0, 1)));
        // Another vote never folds either.
        tx.send(request(1, 2, 1, 0)).unwrap();
        tx.send(request(2, 2, 1, 1)).unwrap();
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((2, 1, 0)));
        let next = out.next().await.expect("the request after the notice");
        assert_eq!(next.vote, Vote::new_committed(2, 0));
        assert_eq!(out.folded(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_is_never_held_and_the_end_flushes() {
        let (tx, mut out) = fold();
        tx.send(request(1, 3, 3, 0)).unwrap(); // a probe opening the stream
        let started = Instant::now();
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((3, 3, 0)));
        assert_eq!(started.elapsed(), Duration::ZERO);
        tx.send(request(1, 3, 4, 0)).unwrap();
        drop(tx);
        assert_eq!(out.next().await.map(|r| shape(&r)), Some((3, 4, 0)));
        assert!(out.next().await.is_none());
    }
}
