//! Finding out that a server has died without a word: a process killed abruptly, or a
//! machine gone, sends neither CONNECTION_CLOSE nor anything else, and over UDP no reset
//! tells the client either. QUIC's idle timeout (30 s by default) is far too slow for calls
//! waiting on such a connection, so the client watches for something more direct: packets
//! it sent that a live peer must acknowledge (anything but acknowledgements themselves),
//! and nothing at all coming back for longer than [`limit`]. A live peer acknowledges within
//! a round trip and its acknowledgement delay, and QUIC probes (PTO) when it does not, so
//! silence across many probe timeouts while ack-eliciting data waits means the peer is gone.
//!
//! A call waiting for a response sends nothing, so while calls are under way and the server
//! has been quiet for a quarter of the limit, the client sends a probe: a one-byte QUIC
//! DATAGRAM, ack-eliciting and without stream state, which a quicrpc server takes into a
//! tiny buffer it never reads ([`crate::config::PROBE_DATAGRAMS`]). A connection speaking
//! HTTP/3 is not probed (an HTTP/3 server would take a DATAGRAM for an HTTP datagram, RFC
//! 9297): there, a dead server is found when the client next sends. A connection with no
//! call under way is never judged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::debug;

/// The application close code a client uses when it gives up on an unresponsive server:
/// quicrpc/1's NO_ERROR, as nothing was wrong with what either side said.
const CLOSE_CODE: u32 = 0;

/// How long a server may stay silent while ack-eliciting packets wait for it: eight probe
/// timeouts of the path (a PTO estimated as three smoothed round trips plus quinn's default
/// 25 ms acknowledgement delay), and never less than `floor`. With QUIC's exponential probe
/// backoff, eight PTOs is about three unanswered probes. On loopback the floor decides (1 s
/// by default); at 100 ms RTT it is 2.6 s.
pub(super) fn limit(rtt: Duration, floor: Duration) -> Duration {
    let pto = rtt * 3 + Duration::from_millis(25);
    (pto * 8).max(floor)
}

/// Packets sent so far that a live peer must acknowledge: all but those that carry only
/// acknowledgements (ACK-only packets elicit nothing, so silence after them means nothing).
fn ack_eliciting(stats: &quinn::ConnectionStats) -> u64 {
    let f = &stats.frame_tx;
    f.stream
        + f.ping
        + f.reset_stream
        + f.stop_sending
        + f.max_data
        + f.max_stream_data
        + f.max_streams_bidi
        + f.max_streams_uni
        + f.data_blocked
        + f.stream_data_blocked
        + f.streams_blocked_bidi
        + f.streams_blocked_uni
        + f.new_connection_id
        + f.retire_connection_id
        + f.path_challenge
        + f.path_response
        + f.crypto
        + f.datagram
}

/// Watches `conn` until it closes, and closes it locally when the server has been silent
/// for longer than [`limit`] while ack-eliciting packets waited for it. With `probes` (the
/// count of calls under way), it probes a quiet server while calls wait. Calls on it then end
/// with UNAVAILABLE (a balanced channel sends replay-safe ones to another server), and the
/// channel's next call connects anew.
pub(super) async fn watch(
    conn: quinn::Connection,
    floor: Duration,
    probes: Option<Arc<AtomicUsize>>,
) {
    let stats = conn.stats();
    let mut heard = stats.udp_rx.datagrams;
    let mut heard_at = Instant::now();
    let mut sent = ack_eliciting(&stats);
    // When something ack-eliciting was first seen going out since the peer was last heard.
    let mut waiting_since: Option<Instant> = None;
    loop {
        let limit = limit(conn.rtt(), floor);
        let tick = (limit / 8).max(Duration::from_millis(20));
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = conn.closed() => return,
        }
        let stats = conn.stats();
        let now = Instant::now();
        if stats.udp_rx.datagrams != heard {
            heard = stats.udp_rx.datagrams;
            heard_at = now;
            sent = ack_eliciting(&stats);
            waiting_since = None;
            continue;
        }
        if ack_eliciting(&stats) != sent {
            waiting_since.get_or_insert(now);
        } else if probes
            .as_ref()
            .is_some_and(|in_flight| in_flight.load(Ordering::Relaxed) > 0)
            && now - heard_at > limit / 4
        {
            // Calls wait and the server is quiet: ask it for an acknowledgement. Fails only
            // where the server takes no datagrams, or the connection is gone.
            let _ = conn.send_datagram(Bytes::from_static(b"?"));
        }
        if let Some(since) = waiting_since
            && now - since > limit
        {
            debug!(
                remote = %conn.remote_address(),
                silent_for = ?(now - since),
                "server unresponsive: closing the connection"
            );
            metrics::counter!("quicrpc_client_unresponsive_closes_total").increment(1);
            conn.close(CLOSE_CODE.into(), b"server unresponsive");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_eight_probe_timeouts_above_a_floor() {
        let ms = Duration::from_millis;
        assert_eq!(limit(ms(0), ms(1000)), ms(1000));
        assert_eq!(limit(ms(1), ms(1000)), ms(1000));
        assert_eq!(limit(ms(100), ms(1000)), ms(2600));
        assert_eq!(limit(ms(100), ms(5000)), ms(5000));
    }
}
