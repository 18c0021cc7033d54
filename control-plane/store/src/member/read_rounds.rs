//! The read indexes a follower asks the leader for, in rounds: one call out at a time, and
//! every linearizable read that arrives while it is out waits for the next call, which they
//! all share (etcd's `linearizableReadLoop` does the same with its ReadIndex messages).
//!
//! A call per read cost the leader a unary call to answer and a heartbeat round to wait for,
//! for each of the two reads in three that a load spread over three members sends to
//! followers; under load most of those calls asked the same question at the same moment.
//!
//! A read shares only a call that starts after it arrived: the leader then confirms its
//! leadership, and takes its commit index, after the read began, which is what makes the read
//! linearizable. A call already out may have been answered before the read arrived, so a
//! read never joins one.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

/// A round's outcome, shared by every read in it.
pub type RoundOutcome<T> = Shared<BoxFuture<'static, T>>;

struct Round<T> {
    /// Set when the round's call starts; from then on a read starts the next round.
    started: Arc<AtomicBool>,
    outcome: RoundOutcome<T>,
}

/// The rounds of one member; `T` is what a call answers (cloned for each read).
pub struct ReadRounds<T> {
    /// The newest round: not started yet (reads join it), or started (a read makes the next).
    newest: Mutex<Option<Round<T>>>,
}

impl<T> Default for ReadRounds<T> {
    fn default() -> Self {
        Self {
            newest: Mutex::new(None),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> ReadRounds<T> {
    /// The outcome of the first round that starts from now on: the one waiting to start, or a
    /// new one that starts when the round before it ends and then calls `ask`. The round runs
    /// while any read in it awaits it; a read that gives up leaves it to the others.
    pub fn join<F, Fut>(&self, ask: F) -> RoundOutcome<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(round) = newest.as_ref() {
            if !round.started.load(Ordering::SeqCst) {
                return round.outcome.clone();
            }
        }
        let before = newest.as_ref().map(|round| round.outcome.clone());
        let started = Arc::new(AtomicBool::new(false));
        let starting = started.clone();
        let outcome = async move {
            if let Some(before) = before {
                before.await;
            }
            starting.store(true, Ordering::SeqCst);
            ask().await
        }
        .boxed()
        .shared();
        *newest = Some(Round {
            started,
            outcome: outcome.clone(),
        });
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;
    use tokio::sync::Notify;

    /// A stand-in leader: each call takes a number (the calls made so far) and waits to be
    /// let go.
    #[derive(Clone, Default)]
    struct Leader {
        calls: Arc<AtomicU64>,
        go: Arc<Notify>,
    }

    impl Leader {
        fn ask(&self) -> impl FnOnce() -> BoxFuture<'static, u64> + Send + 'static {
            let leader = self.clone();
            move || {
                async move {
                    let call = leader.calls.fetch_add(1, Ordering::SeqCst) + 1;
                    leader.go.notified().await;
                    call
                }
                .boxed()
            }
        }
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn reads_during_a_call_share_the_next_one_and_never_the_one_out() {
        let rounds = ReadRounds::default();
        let leader = Leader::default();
        // The first read starts call 1.
        let first = tokio::spawn(rounds.join(leader.ask()));
        settle().await;
        assert_eq!(leader.calls.load(Ordering::SeqCst), 1);
        // Ten reads while it is out: none joins it, and none calls yet.
        let during: Vec<_> = (0..10)
            .map(|_| tokio::spawn(rounds.join(leader.ask())))
            .collect();
        settle().await;
        assert_eq!(leader.calls.load(Ordering::SeqCst), 1);
        leader.go.notify_one();
        assert_eq!(first.await.expect("first"), 1);
        settle().await;
        // Call 2 started when call 1 ended, for all ten.
        assert_eq!(leader.calls.load(Ordering::SeqCst), 2);
        leader.go.notify_one();
        for read in during {
            assert_eq!(read.await.expect("read"), 2);
        }
        // With nothing out, a read calls at once.
        let later = tokio::spawn(rounds.join(leader.ask()));
        settle().await;
        assert_eq!(leader.calls.load(Ordering::SeqCst), 3);
        leader.go.notify_one();
        assert_eq!(later.await.expect("later"), 3);
    }

    #[tokio::test]
    async fn a_round_whose_first_read_gave_up_still_answers_the_others() {
        let rounds = ReadRounds::default();
        let leader = Leader::default();
        let first = rounds.join(leader.ask());
        let second = rounds.join(leader.ask());
        // The first read gives up before its round is polled at all.
        drop(first);
        let second = tokio::spawn(second);
        settle().await;
        assert_eq!(leader.calls.load(Ordering::SeqCst), 1);
        leader.go.notify_one();
        assert_eq!(second.await.expect("second"), 1);
    }

    #[tokio::test]
    async fn a_read_that_gives_up_mid_call_leaves_the_next_round_to_start() {
        let rounds = ReadRounds::default();
        let leader = Leader::default();
        let out = tokio::spawn(rounds.join(leader.ask()));
        settle().await;
        // Its only reader gives up while call 1 is out (a timeout).
        out.abort();
        let _ = out.await;
        // The next read waits for the abandoned call: it is not polled, so it never ends
        // unless someone polls it, and the next round polls it before starting.
        let next = tokio::spawn(rounds.join(leader.ask()));
        settle().await;
        leader.go.notify_one();
        settle().await;
        assert_eq!(leader.calls.load(Ordering::SeqCst), 2);
        leader.go.notify_one();
        assert_eq!(next.await.expect("next"), 2);
    }
}
