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
use kube::runtime::watcher;

/// The first wait after a failed list or watch.
pub const WAIT_INITIAL: Duration = Duration::from_millis(250);
/// The longest: a node resyncs within this of the API server answering again.
pub const WAIT_MAX: Duration = Duration::from_secs(8);

/// `events` (a kube-rs watcher) with waits between failures: an item that is not an error
/// resets them; a 410 passes without one; any other error is handed on, then waited out
/// before `events` is polled again. The errors still reach the caller (to log them).
pub fn paced<T, S>(events: S) -> impl Stream<Item = Result<T, watcher::Error>> + Send
where
    S: Stream<Item = Result<T, watcher::Error>> + Send + Unpin,
    T: Send,
{
    let backoff = Backoff::new(WAIT_INITIAL, WAIT_MAX);
    futures::stream::unfold(
        (events, backoff, None::<Duration>),
        |(mut events, mut backoff, wait)| async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            let item = events.next().await?;
            let wait = match &item {
                Ok(_) => {
                    backoff.reset();
                    None
                }
                Err(error) if is_gone(error) => None,
                Err(_) => Some(backoff.next_delay()),
            };
            Some((item, (events, backoff, wait)))
        },
    )
}

/// A watch answered 410 Gone: its resource version is older than the server keeps.
fn is_gone(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use tokio::time::Instant;

    use super::*;

    fn failed(code: u16) -> Result<u32, watcher::Error> {
        Err(watcher::Error::WatchError(
            Status::failure("test", "Test").with_code(code).boxed(),
        ))
    }

    /// When each item reaches the caller, in (paused) milliseconds from the start.
    async fn arrivals(items: Vec<Result<u32, watcher::Error>>) -> Vec<(u128, Option<u32>)> {
        let start = Instant::now();
        let stream = paced(futures::stream::iter(items));
        futures::pin_mut!(stream);
        let mut seen = Vec::new();
        while let Some(item) = stream.next().await {
            seen.push((start.elapsed().as_millis(), item.ok()));
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_waited_out_growing_to_the_cap_and_an_event_resets_the_waits() {
        let mut items: Vec<_> = (0..8).map(|_| failed(503)).collect();
        items.push(Ok(1));
        items.push(failed(500));
        items.push(Ok(2));
        let got = arrivals(items).await;
        let times: Vec<u128> = got.iter().map(|(t, _)| *t).collect();
        // Waits of 0.25, 0.5, 1, 2, 4, 8, 8 s between the eight failures, 8 s before the
        // event; after it, the first wait again.
        assert_eq!(
            times,
            [0, 250, 750, 1750, 3750, 7750, 15750, 23750, 31750, 31750, 32000]
        );
        assert_eq!(got[8].1, Some(1));
        assert_eq!(got[10].1, Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_410_is_relisted_at_once() {
        let got = arrivals(vec![failed(503), failed(410), Ok(7), failed(410), Ok(8)]).await;
        let times: Vec<u128> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [0, 250, 250, 250, 250]);
        assert_eq!(got[4].1, Some(8));
    }
}
