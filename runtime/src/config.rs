//! Connection settings shared by the client and the server, with their defaults.

use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// Default limit on a received message: 4 MiB, as in gRPC.
pub(crate) const DEFAULT_MAX_RECEIVE_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Default limit on an encoded head or trailers: 16 KiB, as hyper/h2's header list limit.
pub(crate) const DEFAULT_MAX_HEADER_LIST_SIZE: usize = 16 * 1024;
/// Default limit on concurrent calls per connection. quinn's own default is 100.
pub(crate) const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Streams a new QUIC connection may open at first. quinn sets up the state of every stream
/// the peer may open when the connection starts (about 86 bytes each), so the server starts
/// each connection with this much credit and doubles it, up to the configured limit, as the
/// connection gets busy ([`StreamCredit`]).
pub(crate) const INITIAL_STREAM_CREDIT: u32 = 128;
/// Default idle timeout: 30 s, quinn's.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default client keep-alive: 10 s, well inside the idle timeout.
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Default handshake limit on the client.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection-wide receive window: bounds what one peer can make us buffer across all of
/// its streams (quinn's default is unbounded).
pub(crate) const DEFAULT_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// The congestion controller a QUIC connection uses for what it sends.
///
/// The TCP fallback uses whatever the operating system's TCP stack is set to.
///
/// The default is BBR, chosen by measurement (docs/benchmarks.md, "Congestion control
/// under loss"): with 32 calls in flight over a 50 ms RTT link, BBR carried 3.3x plain
/// tonic's calls per second at 1 % loss and 4.1x at 3 %, at one round trip's p50, where
/// CUBIC managed 1.2x and 0.9x (losing to TCP) and NewReno 1.1x and about the same as CUBIC.
/// Random loss is read by CUBIC and NewReno as congestion and cuts their window; BBR paces at
/// its estimate of the path's rate instead. Without loss all three were equal. Choose CUBIC
/// where QUIC shares a congested bottleneck with many loss-based TCP flows and fairness to
/// them matters more than speed: BBRv1 can take more than its share there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CongestionControl {
    /// CUBIC (RFC 9438), quinn's own default.
    Cubic,
    /// NewReno (RFC 9002's reference controller).
    NewReno,
    /// BBR (quinn's BBRv1), the default here. Model-based, so random loss does not cut its
    /// rate the way it cuts CUBIC's.
    #[default]
    Bbr,
}

/// Settings every connection has, on either side.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionConfig {
    pub(crate) idle_timeout: Duration,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) max_receive_message_size: usize,
    pub(crate) max_header_list_size: usize,
    pub(crate) max_concurrent_streams: u32,
    pub(crate) congestion_control: CongestionControl,
    pub(crate) send_fairness: bool,
    /// Where to write a qlog trace per connection.
    #[cfg(feature = "qlog")]
    pub(crate) qlog_dir: Option<std::path::PathBuf>,
}

impl ConnectionConfig {
    pub(crate) fn client_default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keep_alive_interval: Some(DEFAULT_KEEP_ALIVE),
            max_receive_message_size: DEFAULT_MAX_RECEIVE_MESSAGE_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            // The server opens no calls towards the client.
            max_concurrent_streams: 0,
            congestion_control: CongestionControl::default(),
            send_fairness: true,
            #[cfg(feature = "qlog")]
            qlog_dir: None,
        }
    }

    pub(crate) fn server_default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keep_alive_interval: None,
            max_receive_message_size: DEFAULT_MAX_RECEIVE_MESSAGE_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            congestion_control: CongestionControl::default(),
            send_fairness: true,
            #[cfg(feature = "qlog")]
            qlog_dir: None,
        }
    }

    fn transport(
        &self,
        incoming_bidi: u32,
        incoming_uni: u32,
    ) -> Result<quinn::TransportConfig, Error> {
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout).map_err(|_| {
            Error::Config(format!("idle timeout {:?} is too large", self.idle_timeout))
        })?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(self.keep_alive_interval)
            .max_concurrent_bidi_streams(incoming_bidi.into())
            .max_concurrent_uni_streams(incoming_uni.into())
            .receive_window(DEFAULT_CONNECTION_WINDOW.into())
            .send_fairness(self.send_fairness);
        match self.congestion_control {
            CongestionControl::Cubic => transport
                .congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default())),
            CongestionControl::NewReno => transport.congestion_controller_factory(Arc::new(
                quinn::congestion::NewRenoConfig::default(),
            )),
            CongestionControl::Bbr => transport
                .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default())),
        };
        Ok(transport)
    }

    /// The client accepts the server's control stream (and a spare).
    pub(crate) fn client_transport(&self) -> Result<quinn::TransportConfig, Error> {
        self.transport(self.max_concurrent_streams, 2)
    }

    /// The server accepts calls only.
    /// (At first: [`StreamCredit`] raises the stream limit as a connection gets busy.)
    pub(crate) fn server_transport(&self) -> Result<quinn::TransportConfig, Error> {
        self.transport(StreamCredit::new(self.max_concurrent_streams).limit, 0)
    }

    /// A transport config for one new connection that writes its qlog trace, if one is asked
    /// for; `None` when the shared config will do.
    #[cfg(feature = "qlog")]
    pub(crate) fn qlog_transport(
        &self,
        side: &str,
    ) -> Result<Option<quinn::TransportConfig>, Error> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);

        let Some(dir) = &self.qlog_dir else {
            return Ok(None);
        };
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{side}-{millis}-{}-{n}.qlog", std::process::id()));
        let file = std::fs::File::create(&path)
            .map_err(|e| Error::Config(format!("qlog file {}: {e}", path.display())))?;
        let mut qlog = quinn::QlogConfig::default();
        // Unbuffered: the trace is complete on disk at every event, even if the connection
        // outlives the process's interest in it. Debugging only, so the cost is fine.
        qlog.writer(Box::new(file))
            .title(Some(format!("quicrpc {side}")));
        let mut transport = if side == "client" {
            self.client_transport()?
        } else {
            self.server_transport()?
        };
        transport.qlog_stream(qlog.into_stream());
        Ok(Some(transport))
    }
}

/// How many calls one QUIC connection may have open: [`INITIAL_STREAM_CREDIT`] at first,
/// doubled whenever more than half of it is in use, up to the configured maximum. Growing
/// costs the client a round trip when a burst outruns the credit; starting at the maximum
/// costs every connection, idle or not, the memory of all its streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamCredit {
    /// The limit the peer has been given.
    pub(crate) limit: u32,
    max: u32,
}

impl StreamCredit {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            limit: max.min(INITIAL_STREAM_CREDIT),
            max,
        }
    }

    /// With `open` calls in progress: the new limit to give the peer, if it should grow.
    pub(crate) fn grow(&mut self, open: usize) -> Option<u32> {
        if self.limit >= self.max || open.saturating_mul(2) <= self.limit as usize {
            return None;
        }
        self.limit = self.limit.saturating_mul(2).min(self.max);
        Some(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::StreamCredit;

    #[test]
    fn stream_credit_doubles_past_half_up_to_the_maximum() {
        let mut credit = StreamCredit::new(1024);
        assert_eq!(credit.limit, 128);
        assert_eq!(credit.grow(64), None);
        assert_eq!(credit.grow(65), Some(256));
        assert_eq!(credit.grow(100), None);
        assert_eq!(credit.grow(129), Some(512));
        assert_eq!(credit.grow(257), Some(1024));
        assert_eq!(credit.grow(1024), None);
    }

    #[test]
    fn a_small_maximum_is_given_at_once() {
        let mut credit = StreamCredit::new(10);
        assert_eq!(credit.limit, 10);
        assert_eq!(credit.grow(10), None);
        let mut credit = StreamCredit::new(200);
        assert_eq!(credit.limit, 128);
        assert_eq!(credit.grow(100), Some(200));
    }
}
