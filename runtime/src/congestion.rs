//! quinn's BBR with its initial window as the least window on short paths.
//!
//! quinn's BBR (marked experimental by quinn) enters PROBE_RTT at the first acknowledgement
//! that is not application-limited, because it has never probed before, and again every
//! 10 s: its window then drops to three quarters of its bandwidth-delay estimate for at least
//! 200 ms. On a low-latency path (loopback, a datacentre) that estimate is tiny, since the
//! round trip it is multiplied by is a fraction of a millisecond and quinn's bandwidth
//! estimate on such a path lags far behind the real rate: the window falls to its minimum,
//! four datagrams, and every call on the connection crawls for those 200 ms. Measured
//! (docs/benchmarks.md, "Priority under load", the agents workload on loopback): the first
//! burst of uploads on a connection took 100-200 ms instead of 10-20, and every method's p99
//! carried it.
//!
//! So on a short path, one whose quietest round trip is at most [`SHORT_PATH`], quicrpc's
//! BBR never lets its window fall below BBR's own initial window (240 KB with quinn's
//! defaults). 240 KB a round trip of 1 ms is about 2 Gbit/s: a short path that carries less
//! (a 100 Mbit/s LAN) gets a standing queue of up to 240 KB at its bottleneck where BBR would
//! keep less, which CUBIC (`CongestionControl::Cubic`) avoids no better, since it fills the
//! queue until it loses. On longer paths, and in everything else (pacing, startup, loss), it
//! is quinn's BBR as it is.
//!
//! Two simpler rules were dropped. A floor on every path would keep 240 KB in flight on a
//! 20 Mbit/s, 10 ms link, ten times its bandwidth-delay product of 25 kB (reasoned, not
//! measured). A floor lifted for a second after any loss was measured: it was off in two
//! runs out of three on loopback, where the receiver's socket drops a few datagrams under
//! load.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};
use quinn_proto::RttEstimator;

/// A path whose quietest round trip is at most this is short: the floor applies.
const SHORT_PATH: Duration = Duration::from_millis(1);

/// Builds [`Floored`] BBR controllers.
#[derive(Debug, Default)]
pub(crate) struct FlooredBbrConfig {
    bbr: Arc<quinn::congestion::BbrConfig>,
}

impl ControllerFactory for FlooredBbrConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Floored {
            inner: self.bbr.clone().build(now, current_mtu),
            short_path: false,
        })
    }
}

/// A controller whose window is never below its initial window on a short path.
struct Floored {
    inner: Box<dyn Controller>,
    /// Whether the quietest round trip seen so far is at most [`SHORT_PATH`].
    short_path: bool,
}

impl Controller for Floored {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.short_path = rtt.min() <= SHORT_PATH;
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        let window = self.inner.window();
        match self.short_path {
            true => window.max(self.inner.initial_window()),
            false => window,
        }
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = self.inner.metrics();
        metrics.congestion_window = self.window();
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            inner: self.inner.clone_box(),
            short_path: self.short_path,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller whose window the test sets.
    #[derive(Clone)]
    struct Fixed(u64);

    impl Controller for Fixed {
        fn on_congestion_event(&mut self, _: Instant, _: Instant, _: bool, _: u64) {}
        fn on_mtu_update(&mut self, _: u16) {}
        fn window(&self) -> u64 {
            self.0
        }
        fn clone_box(&self) -> Box<dyn Controller> {
            Box::new(self.clone())
        }
        fn initial_window(&self) -> u64 {
            100_000
        }
        fn into_any(self: Box<Self>) -> Box<dyn Any> {
            self
        }
    }

    fn floored(window: u64, short_path: bool) -> Floored {
        Floored {
            inner: Box::new(Fixed(window)),
            short_path,
        }
    }

    #[test]
    fn on_a_short_path_the_window_is_never_below_the_initial_window() {
        let small = floored(6_000, true);
        assert_eq!(small.window(), 100_000);
        assert_eq!(small.metrics().congestion_window, 100_000);
        assert_eq!(small.clone_box().window(), 100_000);
        assert_eq!(floored(5_000_000, true).window(), 5_000_000);
    }

    #[test]
    fn on_a_longer_path_the_window_is_bbr_s_own() {
        assert_eq!(floored(6_000, false).window(), 6_000);
    }

    #[test]
    fn quinn_s_bbr_starts_at_its_initial_window() {
        let bbr = Arc::new(FlooredBbrConfig::default()).build(Instant::now(), 1200);
        assert!(bbr.initial_window() > 0);
        assert_eq!(bbr.window(), bbr.initial_window());
    }
}
