//! How the node daemon's watches retry while the API server is away.
//!
//! kube-rs' default backoff is client-go's (800 ms doubling to 30 s, with as much jitter
//! again): through a control-plane restart of half a minute the waits reach the 30 s step,
//! and the first answer after the return is usually a 410 (the watch resumes from a revision
//! the restarted watch cache no longer holds), which costs one more full step before the
//! relist. A proxy that learns of new endpoints a minute after the API server is back serves
//! stale backends for that minute. Here the waits stop at [`WAIT_MAX`], and a 410 is not a
//! failure to wait out: the watcher relists at once on its next poll, as it must.

use std::time::Duration;

use futures::{Stream, StreamExt};
use keel_host::backoff::Backoff;
use kube::runtime::watcher::{self, Event};
use tokio::time::Instant;

/// The first wait after a failed list or watch.
pub const WAIT_INITIAL: Duration = Duration::from_millis(250);
/// The longest: a node resyncs within this (and its jitter) of the API server answering.
pub const WAIT_MAX: Duration = Duration::from_secs(8);
/// Each wait is stretched or shrunk by up to this share, so that the nodes of a cluster do
/// not retry, and then relist, in step after an outage.
const JITTER: f64 = 0.2;

/// `events` (a kube-rs watcher) with waits between failures. The waits grow until the
/// server answers with an object (the watcher's `Init`, which precedes every list attempt,
/// is no answer); a 410 is relisted without one, unless the previous free relist was less
/// than [`WAIT_MAX`] ago (a server that answers every watch 410 would otherwise be listed in
/// a loop); any other error is handed on, then waited out before `events` is polled again.
/// The errors still reach the caller (to log them).
pub fn paced<K, S>(events: S) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + Unpin,
    K: Send,
{
    let pacing = Pacing {
        backoff: Backoff::new(WAIT_INITIAL, WAIT_MAX),
        last_free_relist: None,
    };
    futures::stream::unfold(
        (events, pacing, None::<Duration>),
        |(mut events, mut pacing, wait)| async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            let item = events.next().await?;
            let wait = pacing.after(&item).map(jittered);
            Some((item, (events, pacing, wait)))
        },
    )
}

struct Pacing {
    backoff: Backoff,
    last_free_relist: Option<Instant>,
}

impl Pacing {
    /// The wait (before jitter) due after `item`.
    fn after<K>(&mut self, item: &Result<Event<K>, watcher::Error>) -> Option<Duration> {
        match item {
            Ok(Event::Init) => None,
            Ok(_) => {
                self.backoff.reset();
                None
            }
            Err(error) if is_gone(error) => {
                let now = Instant::now();
                let recent = self
                    .last_free_relist
                    .is_some_and(|at| now.duration_since(at) < WAIT_MAX);
                if recent {
                    Some(self.backoff.next_delay())
                } else {
                    self.last_free_relist = Some(now);
                    None
                }
            }
            Err(_) => Some(self.backoff.next_delay()),
        }
    }
}

fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(1.0 + JITTER * (2.0 * fastrand::f64() - 1.0))
}

/// A watch answered 410 Gone: its resource version is older than the server keeps.
fn is_gone(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    type Item = Result<Event<u32>, watcher::Error>;

    fn failed(code: u16) -> Item {
        Err(watcher::Error::WatchError(
            Status::failure("test", "Test").with_code(code).boxed(),
        ))
    }

    fn object(n: u32) -> Item {
        Ok(Event::Apply(n))
    }

    /// When each item reaches the caller, in (paused) milliseconds from the start.
    async fn arrivals(items: Vec<Item>) -> Vec<u128> {
        let start = Instant::now();
        let stream = paced(futures::stream::iter(items));
        futures::pin_mut!(stream);
        let mut seen = Vec::new();
        while stream.next().await.is_some() {
            seen.push(start.elapsed().as_millis());
        }
        seen
    }

    /// `expected` within the jitter of each step (and 1 ms of the clock's rounding).
    fn assert_near(got: &[u128], expected: &[u128]) {
        assert_eq!(got.len(), expected.len(), "{got:?} against {expected:?}");
        let mut previous = (0, 0);
        for (g, e) in got.iter().zip(expected) {
            let (step, wanted) = (g - previous.0, e - previous.1);
            let slack = (wanted as f64 * JITTER) as u128 + 1;
            assert!(
                step + slack >= wanted && step <= wanted + slack,
                "{got:?} against {expected:?}"
            );
            previous = (*g, *e);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_lists_are_waited_out_growing_to_the_cap_and_an_object_resets_the_waits() {
        // As kube-rs' watcher yields them: `Init` before each list attempt, the failure.
        let mut items = Vec::new();
        for _ in 0..8 {
            items.push(Ok(Event::Init));
            items.push(failed(503));
        }
        items.extend([Ok(Event::Init), object(1), failed(500), object(2)]);
        // Waits of 0.25, 0.5, 1, 2, 4, 8, 8 s between the eight failures, 8 s before the
        // relist; after an object, the first wait again.
        let mut expected = Vec::new();
        for at in [0, 250, 750, 1750, 3750, 7750, 15750, 23750] {
            expected.extend([at, at]);
        }
        expected.extend([31750, 31750, 31750, 32000]);
        assert_near(&arrivals(items).await, &expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_410_is_relisted_at_once_but_not_in_a_loop() {
        let got = arrivals(vec![
            failed(503),
            failed(410),
            Ok(Event::Init),
            object(7),
            failed(410),
            object(8),
        ])
        .await;
        // The first 410 is free; the second, right after, waits like a failure.
        assert_near(&got, &[0, 250, 250, 250, 250, 500]);
    }
}
