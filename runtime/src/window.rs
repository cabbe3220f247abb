//! The send window, kept near what the path needs.
//!
//! quinn lets a connection hold up to its send window of data written and not yet
//! acknowledged. A window far larger than the path needs is a queue: on a fast path whose
//! receiver is busy (loopback, a datacentre), bulk calls fill it, their data waits in the
//! receiver's socket and in both sides' buffers, and an urgent call's bytes wait behind it
//! whatever its priority. A window far smaller than the path's bandwidth-delay product caps
//! throughput. So, unless the application fixes the window, quicrpc sets it every
//! [`BUSY_INTERVAL`] while the connection sends to four bandwidth-delay products of its path:
//! the rate it sent at over the last interval times the quietest round trip seen lately,
//! within [[`MIN`], 16 MiB]. On loopback that is the minimum; on a 200 Mbit/s, 50 ms path,
//! about 5 MB.
//!
//! Measured (docs/benchmarks.md, scenario `mixed`, loopback): with 32 BULK uploads beside
//! CRITICAL and HIGH calls on one connection, CRITICAL p99 fell from 14 ms with quinn's fixed
//! 10 MB window to 0.8 ms (tonic: 2.6 ms), with 128 uploads from 62 ms to 1.1 ms (tonic:
//! 8.3 ms); bulk throughput was unchanged on loopback and on a 200 Mbit/s, 50 ms link.

use std::time::Duration;

use tokio::time::Instant;

/// How often the window follows the path while the connection sends, and while it does not.
const BUSY_INTERVAL: Duration = Duration::from_millis(50);
const IDLE_INTERVAL: Duration = Duration::from_millis(500);
/// Fewer bytes sent than this in an interval (acknowledgements, keep-alives) is idle.
const IDLE_BYTES: u64 = 16 * 1024;
/// How long the quietest round trip seen is trusted; then the current one replaces it, so a
/// path that changed (migration) is followed.
const MIN_RTT_MEMORY: Duration = Duration::from_secs(10);
/// The smallest window: enough for a few 64 KiB writes of every busy call.
pub(crate) const MIN: u64 = 1024 * 1024;

/// Keeps `conn`'s send window sized to its path until the connection closes, unless `fixed`
/// (the application's choice); then it returns at once. Cancel-safe.
pub(crate) async fn size_send_window(conn: quinn::Connection, fixed: Option<u64>) {
    if fixed.is_none() {
        follow_path(conn, crate::config::MAX_AUTO_SEND_WINDOW).await;
    }
}

/// The window for a path that carries `rate` bytes a second with a round trip of `rtt` at
/// its quietest: four bandwidth-delay products, at most `max`.
fn target(rate: f64, rtt: Duration, max: u64) -> u64 {
    let bdp = rate * rtt.as_secs_f64();
    ((4.0 * bdp) as u64).clamp(MIN.min(max), max)
}

/// Keeps `conn`'s send window at [`target`] until the connection closes.
async fn follow_path(conn: quinn::Connection, max: u64) {
    let mut current = None;
    let mut last_sent = conn.stats().udp_tx.bytes;
    let mut last_at = Instant::now();
    let mut min_rtt = conn.rtt();
    let mut min_rtt_since = last_at;
    let mut interval = BUSY_INTERVAL;
    loop {
        tokio::select! {
            _ = conn.closed() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = Instant::now();
        let sent = conn.stats().udp_tx.bytes;
        let delta = sent.saturating_sub(last_sent);
        let rate = delta as f64 / (now - last_at).as_secs_f64().max(1e-3);
        (last_sent, last_at) = (sent, now);
        let rtt = conn.rtt();
        if rtt < min_rtt || now - min_rtt_since > MIN_RTT_MEMORY {
            (min_rtt, min_rtt_since) = (rtt, now);
        }
        // An idle connection keeps its window for when it sends again, and is looked at less
        // often: each of a server's idle connections costs a timer.
        if delta < IDLE_BYTES {
            interval = IDLE_INTERVAL;
            continue;
        }
        interval = BUSY_INTERVAL;
        let window = target(rate, min_rtt, max);
        if current != Some(window) {
            conn.set_send_window(window);
            current = Some(window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bandwidth_delay_products_within_bounds() {
        const MAX: u64 = 16 << 20;
        let ms = Duration::from_millis;
        // Loopback: 1 GB/s at 100 µs is 100 kB: the minimum.
        assert_eq!(target(1e9, Duration::from_micros(100), MAX), MIN);
        // 100 Mbit/s at 50 ms: 625 kB a round trip.
        assert_eq!(target(12.5e6, ms(50), MAX), 2_500_000);
        assert_eq!(target(1e9, ms(50), MAX), MAX);
        // A maximum below the minimum wins.
        assert_eq!(target(0.0, ms(1), 4096), 4096);
    }
}
