//! Exponential backoff, the one keel uses everywhere: a failed sync retried (1 s doubling to
//! 30 s), a pod sandbox that could not be made, a crashed container restarted (the kubelet's
//! 10 s doubling to 300 s, forgotten after 10 minutes of running).

use std::time::Duration;

/// How waits grow: `initial`, doubling per failure up to `max`, back to `initial` once the
/// thing retried has run for `reset_after` without failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl BackoffPolicy {
    /// The kubelet's container restart back-off.
    pub const KUBELET_RESTARTS: Self = Self {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(300),
        reset_after: Duration::from_secs(600),
    };

    /// A policy that never resets by itself (call [`Backoff::reset`] after a success).
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            reset_after: Duration::MAX,
        }
    }

    /// The wait after a failure of something that ran for `ran_for` and whose previous wait
    /// was `previous`: the initial delay after a good run (or the first failure), else
    /// double, up to the max. A pure function, so a wait can be kept in a status record and
    /// continued by the next daemon.
    pub fn next_delay(&self, previous: Option<Duration>, ran_for: Duration) -> Duration {
        match previous {
            Some(previous) if ran_for < self.reset_after => {
                previous.saturating_mul(2).min(self.max)
            }
            _ => self.initial.min(self.max),
        }
    }
}

/// A policy with its last wait: for loops that retry in place.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    last: Option<Duration>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            policy: BackoffPolicy::new(initial, max),
            last: None,
        }
    }

    /// The delay before the next attempt; each call doubles the following one, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.policy.next_delay(self.last, Duration::ZERO);
        self.last = Some(delay);
        delay
    }

    /// After a success: start again from the initial delay.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn restarts_double_to_the_cap_and_reset_after_a_good_run() {
        let policy = BackoffPolicy::KUBELET_RESTARTS;
        let short = Duration::from_secs(1);
        let mut delays = Vec::new();
        let mut previous = None;
        for _ in 0..7 {
            let delay = policy.next_delay(previous, short);
            delays.push(delay.as_secs());
            previous = Some(delay);
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        let after_good_run = policy.next_delay(previous, Duration::from_secs(600));
        assert_eq!(after_good_run, Duration::from_secs(10));
    }
}
