//! A token bucket for syncs, as kube-proxy's bounded-frequency runner: an isolated change is
//! synced at once, a burst of changes gets `burst` immediate syncs, and after that at most one
//! sync per `interval` — the changes that arrive meanwhile are folded into the next one.
//!
//! Only a sync that wrote to the kernel spends a token. The daemon wakes for every change it
//! watches (a pod's status, a Node, an EndpointSlice that leaves the table as it was), and if
//! those spent tokens, a real Service change arriving after them would wait for nothing.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct SyncLimiter {
    interval: Duration,
    burst: u32,
    tokens: u32,
    /// When the last token was added (or the bucket last found full).
    refilled: Instant,
}

impl SyncLimiter {
    pub fn new(interval: Duration, burst: u32, now: Instant) -> Self {
        let burst = burst.max(1);
        Self {
            interval,
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    /// Whether a sync may run now; otherwise when one may.
    pub fn check(&mut self, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        if self.tokens > 0 {
            return Ok(());
        }
        Err(self.refilled + self.interval)
    }

    /// Spends a token for a sync that ran (none left: nothing to spend; `check` said so).
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = self.tokens.saturating_sub(1);
    }

    /// Takes a token if there is one; otherwise says when there will be.
    #[cfg(test)]
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        self.check(now)?;
        self.take(now);
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        if self.interval.is_zero() {
            self.tokens = self.burst;
            return;
        }
        if self.tokens >= self.burst {
            self.refilled = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned =
            (elapsed.as_nanos() / self.interval.as_nanos()).min(u128::from(self.burst)) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            // A full bucket earns nothing more: its clock restarts now, not in the past.
            self.refilled = if self.tokens == self.burst {
                now
            } else {
                self.refilled + self.interval * earned
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut limiter = SyncLimiter::new(ms(100), 2, start);
        assert!(limiter.try_take(start).is_ok());
        assert!(limiter.try_take(start).is_ok());
        assert_eq!(limiter.try_take(start), Err(start + ms(100)));
        assert_eq!(limiter.try_take(start + ms(50)), Err(start + ms(100)));
        assert!(limiter.try_take(start + ms(100)).is_ok());
        assert!(limiter.try_take(start + ms(150)).is_err());
        // A long quiet period refills the whole burst, no more.
        let later = start + Duration::from_secs(10);
        assert!(limiter.try_take(later).is_ok() && limiter.try_take(later).is_ok());
        assert!(limiter.try_take(later).is_err());
    }

    #[test]
    fn checking_spends_nothing() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut limiter = SyncLimiter::new(ms(200), 2, start);
        // Wake-ups that synced nothing: as many as they come.
        assert!((0..50).all(|_| limiter.check(start).is_ok()));
        limiter.take(start);
        limiter.take(start);
        assert_eq!(limiter.check(start + ms(10)), Err(start + ms(200)));
        // Taking with nothing left stays at nothing (no wrap to u32::MAX).
        limiter.take(start + ms(10));
        assert_eq!(limiter.check(start + ms(199)), Err(start + ms(200)));
        assert!(limiter.check(start + ms(200)).is_ok());
    }

    #[test]
    fn zero_interval_never_limits() {
        let now = Instant::now();
        let mut limiter = SyncLimiter::new(Duration::ZERO, 1, now);
        assert!((0..100).all(|_| limiter.try_take(now).is_ok()));
    }
}
