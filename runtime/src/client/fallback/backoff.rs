//! The reconnect backoff.

use std::time::Duration;

use tokio::time::Instant;

/// Reconnect backoff: after the first failure, no new attempt for [`Backoff::START`]; each
/// further failure doubles the wait, up to [`Backoff::MAX`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// The wait after the first failure.
    const START: Duration = Duration::from_millis(100);
    /// The longest wait.
    const MAX: Duration = Duration::from_secs(5);

    /// Records a failure at `now`; returns when the next attempt may be made.
    pub(super) fn failed(&mut self, now: Instant) -> Instant {
        let doublings = self.failures.min(6);
        self.failures = self.failures.saturating_add(1);
        let wait = Self::START.saturating_mul(1 << doublings).min(Self::MAX);
        let at = now + wait;
        self.retry_at = Some(at);
        at
    }

    /// When the next attempt may be made, if it is after `now`.
    pub(super) fn waiting(&self, now: Instant) -> Option<Instant> {
        self.retry_at.filter(|at| now < *at)
    }

    /// Whether the last attempt failed (no attempt has succeeded since).
    pub(super) fn failing(&self) -> bool {
        self.failures > 0
    }

    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_starts_at_100_ms_doubles_and_stops_at_5_s() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        assert_eq!(backoff.waiting(now), None);
        let waits: Vec<Duration> = (0..9).map(|_| backoff.failed(now) - now).collect();
        let want = [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000].map(ms);
        assert_eq!(waits, want);
        assert_eq!(backoff.waiting(now), Some(now + ms(5_000)));
        tokio::time::advance(ms(5_000)).await;
        assert_eq!(backoff.waiting(Instant::now()), None);
    }
}
