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
/// Default idle timeout: 30 s, quinn's.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default client keep-alive: 10 s, well inside the idle timeout.
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Default handshake limit on the client.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection-wide receive window: bounds what one peer can make us buffer across all of
/// its streams (quinn's default is unbounded).
pub(crate) const DEFAULT_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Per-stream receive window: quinn's default, 1.25 MB (100 Mbit/s over 100 ms).
pub(crate) const DEFAULT_STREAM_WINDOW: u32 = 1_250_000;
/// The most bytes written and not yet acknowledged, all streams together, while quicrpc sizes
/// the send window itself ([`crate::window`]).
pub(crate) const MAX_AUTO_SEND_WINDOW: u64 = 16 * 1024 * 1024;

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
    /// rate the way it cuts CUBIC's. On a path whose quietest round trip is at most 1 ms its
    /// window never falls below its initial window (240 KB): quinn's PROBE_RTT would
    /// otherwise shrink it to four datagrams for 200 ms on such paths (docs/tuning.md).
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
    pub(crate) stream_receive_window: u32,
    pub(crate) connection_receive_window: u32,
    /// `None`: sized by quicrpc to the path ([`crate::window`]), up to
    /// [`MAX_AUTO_SEND_WINDOW`].
    pub(crate) send_window: Option<u64>,
    /// The largest UDP payload this side sends or takes; `None`: [`LOOPBACK_UDP_PAYLOAD`]
    /// over loopback, quinn's defaults elsewhere.
    pub(crate) max_udp_payload_size: Option<u16>,
    /// The TCP side's congestion controller (Linux `TCP_CONGESTION`); the host's if `None`.
    pub(crate) tcp_congestion_control: Option<String>,
    /// Where to write a qlog trace per connection.
    #[cfg(feature = "qlog")]
    pub(crate) qlog_dir: Option<std::path::PathBuf>,
}

/// Bytes of QUIC DATAGRAM frames either side buffers (and never reads): room for a client's
/// liveness probes, one byte each, and no more.
pub(crate) const PROBE_DATAGRAMS: usize = 64;

/// The largest UDP payload a connection over loopback sends, unless set: loopback carries
/// 64 KiB datagrams, and each QUIC packet costs work (encryption set-up, header protection,
/// acknowledgement) whatever its size, so larger ones carry more bytes per unit of CPU.
/// Streaming measured 1.5–1.7x the MB/s of 1,452-byte packets at 4,000 (docs/benchmarks.md).
pub(crate) const LOOPBACK_UDP_PAYLOAD: u16 = 4_000;

/// The largest UDP payload quicrpc lets quinn send. quinn 0.11 puts up to ten datagrams in
/// one segmentation-offload send; Linux refuses a send of more than 64 KiB, and quinn-udp
/// drops a refused send silently (as it would an MTU probe), so ten must fit in 64 KiB.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 6_500;

/// The smallest UDP payload QUIC allows.
const MIN_UDP_PAYLOAD: u16 = 1_200;

/// Unidirectional streams an HTTP/3 peer may open towards the other: its control
/// stream, QPACK's encoder and decoder streams, and room for reserved ("grease") streams.
const HTTP3_UNI_STREAMS: u32 = 5;

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
            stream_receive_window: DEFAULT_STREAM_WINDOW,
            connection_receive_window: DEFAULT_CONNECTION_WINDOW,
            send_window: None,
            max_udp_payload_size: None,
            tcp_congestion_control: None,
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
            stream_receive_window: DEFAULT_STREAM_WINDOW,
            connection_receive_window: DEFAULT_CONNECTION_WINDOW,
            send_window: None,
            max_udp_payload_size: None,
            tcp_congestion_control: None,
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
            Error::config(format!("idle timeout {:?} is too large", self.idle_timeout))
        })?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(self.keep_alive_interval)
            .max_concurrent_bidi_streams(incoming_bidi.into())
            .max_concurrent_uni_streams(incoming_uni.into())
            .stream_receive_window(self.stream_receive_window.into())
            .receive_window(self.connection_receive_window.into())
            .send_window(self.send_window.unwrap_or(crate::window::MIN))
            .send_fairness(self.send_fairness)
            // quicrpc carries no data in QUIC DATAGRAM frames, only a client's liveness
            // probes (an ack-eliciting packet without stream state), which nothing reads:
            // quinn keeps at most `PROBE_DATAGRAMS` bytes of them. quinn sends datagrams only
            // where it takes them too, so both sides take these few bytes.
            .datagram_receive_buffer_size(Some(PROBE_DATAGRAMS));
        if let Some(bytes) = self.max_udp_payload_size {
            transport.mtu_discovery_config(Some(mtu_discovery(clamp_udp_payload(bytes))));
        }
        match self.congestion_control {
            CongestionControl::Cubic => transport
                .congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default())),
            CongestionControl::NewReno => transport.congestion_controller_factory(Arc::new(
                quinn::congestion::NewRenoConfig::default(),
            )),
            CongestionControl::Bbr => transport.congestion_controller_factory(Arc::new(
                crate::congestion::FlooredBbrConfig::default(),
            )),
        };
        Ok(transport)
    }

    /// The client accepts the server's control stream (and a spare) on the native wire, and,
    /// where it may speak HTTP/3 (`http3`), the server's HTTP/3 control and QPACK streams.
    pub(crate) fn client_transport(&self, http3: bool) -> Result<quinn::TransportConfig, Error> {
        let uni = if http3 { HTTP3_UNI_STREAMS } else { 2 };
        self.transport(self.max_concurrent_streams, uni)
    }

    /// The server accepts calls, `streams` of them at a time to begin with (it raises the
    /// limit as a connection gets busy), and the few unidirectional streams an HTTP/3 client
    /// opens at once after its handshake (control and QPACK; quicrpc/1 connections stop any
    /// they are sent). Transport parameters go out before ALPN is settled, so both get them.
    pub(crate) fn server_transport(&self, streams: u32) -> Result<quinn::TransportConfig, Error> {
        self.transport(streams, HTTP3_UNI_STREAMS)
    }

    /// The endpoint's settings: the largest UDP payload it takes (its `max_udp_payload_size`
    /// transport parameter, which bounds what the peer sends). Unless set, enough for
    /// loopback's larger datagrams: a peer elsewhere sends no more than its own path MTU
    /// discovery finds, so taking more changes nothing for it.
    pub(crate) fn endpoint_config(&self) -> quinn::EndpointConfig {
        let takes = self
            .max_udp_payload_size
            .map_or(LOOPBACK_UDP_PAYLOAD, clamp_udp_payload);
        let mut config = quinn::EndpointConfig::default();
        config
            .max_udp_payload_size(takes)
            .expect("clamped to QUIC's range");
        config
    }

    /// `transport` for a connection over loopback, unless the largest UDP payload is set
    /// (then `transport` already has it): path MTU discovery searches up to
    /// [`LOOPBACK_UDP_PAYLOAD`] rather than quinn's 1,452 bytes.
    pub(crate) fn over_loopback(
        &self,
        mut transport: quinn::TransportConfig,
    ) -> quinn::TransportConfig {
        if self.max_udp_payload_size.is_none() {
            transport.mtu_discovery_config(Some(mtu_discovery(LOOPBACK_UDP_PAYLOAD)));
        }
        transport
    }
}

/// Path MTU discovery that searches up to `upper` bytes of UDP payload.
fn mtu_discovery(upper: u16) -> quinn::MtuDiscoveryConfig {
    let mut config = quinn::MtuDiscoveryConfig::default();
    config.upper_bound(upper);
    config
}

fn clamp_udp_payload(bytes: u16) -> u16 {
    bytes.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
}

/// Whether `addr` is a loopback address, IPv4-mapped ones included (a dual-stack socket
/// sees 127.0.0.1 as ::ffff:127.0.0.1).
pub(crate) fn is_loopback(addr: std::net::SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// The setters of the [`ConnectionConfig`] settings that both builders offer, written once so
/// that their docs cannot drift apart. Used inside `impl ChannelBuilder` and
/// `impl ServerBuilder`, whose `config` field they set; the arguments fill in what differs.
macro_rules! connection_setters {
    (
        peer: $peer:literal,
        incoming: $incoming:literal,
        keep_alive: $keep_alive:literal,
        tonic_limit: $tonic_limit:literal $(,)?
    ) => {
        #[doc = concat!(
            "How long a QUIC connection may sit without any packet from the ", $peer,
            " before it is closed as dead and its state freed. Default: 30 s. Over TCP, ",
            "HTTP/2 keep-alive pings find dead peers instead."
        )]
        #[must_use]
        pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.config.idle_timeout = timeout;
            self
        }

        #[doc = concat!(
            "How often to ping an otherwise quiet connection: a QUIC PING, and an HTTP/2 ",
            "PING over TCP, which keeps idle connections and NAT bindings alive and, over ",
            "TCP, finds dead peers. `None` turns them off. ", $keep_alive
        )]
        #[must_use]
        pub fn keep_alive_interval(mut self, interval: Option<std::time::Duration>) -> Self {
            self.config.keep_alive_interval = interval;
            self
        }

        #[doc = concat!(
            "The largest ", $incoming, " message accepted, in bytes, on both transports; a ",
            "larger one ends the call with RESOURCE_EXHAUSTED, checked from the message's ",
            "length prefix before it is buffered. Default: 4 MiB. ", $tonic_limit
        )]
        #[must_use]
        pub fn max_receive_message_size(mut self, bytes: usize) -> Self {
            self.config.max_receive_message_size = bytes;
            self
        }

        #[doc = concat!(
            "The largest ", $incoming, " head or trailers accepted, in encoded bytes, on both ",
            "transports; larger ones end the call with RESOURCE_EXHAUSTED. Default: 16 KiB."
        )]
        #[must_use]
        pub fn max_header_list_size(mut self, bytes: usize) -> Self {
            self.config.max_header_list_size = bytes;
            self
        }

        /// The congestion controller for what this side sends over QUIC. Default:
        /// [`CongestionControl::Bbr`](crate::CongestionControl::Bbr), for its speed under
        /// random loss; see [`CongestionControl`](crate::CongestionControl) for the
        /// measurements.
        #[must_use]
        pub fn congestion_control(mut self, controller: crate::CongestionControl) -> Self {
            self.config.congestion_control = controller;
            self
        }

        /// Whether calls share the connection round-robin within each priority level
        /// (`true`, the default), or each partly-sent call's data goes out whole before
        /// anything else (`false`: less interleaving, so the first call finishes sooner).
        ///
        /// Turning fairness off weakens priorities: quinn then finishes a partly-sent stream
        /// before it starts any other, even one of higher priority, so a CRITICAL call can
        /// wait behind a BULK transfer. Keep it on where priorities matter.
        #[must_use]
        pub fn send_fairness(mut self, fair: bool) -> Self {
            self.config.send_fairness = fair;
            self
        }

        #[doc = concat!(
            "The largest UDP payload (one QUIC datagram) this side sends or takes, in bytes. ",
            "QUIC's path MTU discovery probes up to it, so a path that carries less costs a ",
            "few lost probes, not lost data. Default: this side takes up to 4,000 bytes, and ",
            "sends that much to a ", $peer, " over loopback, where larger datagrams carry more ",
            "bytes per unit of CPU; to anyone else it sends no more than quinn's default ",
            "(1,452 bytes, which Ethernet's 1,500-byte frames carry). Raise it where the ",
            "network carries jumbo frames. Kept within [1,200, 6,500]: quinn 0.11 sends up to ",
            "ten datagrams per segmentation-offload call, and Linux refuses more than 64 KiB ",
            "in one. QUIC only."
        )]
        #[must_use]
        pub fn max_udp_payload_size(mut self, bytes: u16) -> Self {
            self.config.max_udp_payload_size = Some(bytes);
            self
        }

        #[doc = concat!(
            "How many bytes of one call's incoming data QUIC buffers before the ", $peer,
            " must wait for this side to read them (stream flow control). Default: 1.25 MB, ",
            "quinn's. The throughput of one call is at most this window per round trip. ",
            "QUIC only."
        )]
        #[must_use]
        pub fn stream_receive_window(mut self, bytes: u32) -> Self {
            self.config.stream_receive_window = bytes;
            self
        }

        #[doc = concat!(
            "How many bytes of incoming data QUIC buffers for all of a connection's calls ",
            "together before the ", $peer, " must wait (connection flow control): what one ",
            "peer can make this side hold in QUIC's buffers. Default: 16 MiB. QUIC only."
        )]
        #[must_use]
        pub fn connection_receive_window(mut self, bytes: u32) -> Self {
            self.config.connection_receive_window = bytes;
            self
        }

        /// Fixes how many bytes this side lets QUIC hold that are written and not yet
        /// acknowledged, all of a connection's calls together: a write waits while the window
        /// is full. QUIC only.
        ///
        /// Default: sized to the path, four times its bandwidth-delay product (the rate it
        /// carries times its quietest round trip), between 1 MiB and 16 MiB, updated every
        /// 50 ms. A window much larger than the path needs is a queue that urgent calls wait
        /// behind whatever their priority; a smaller one caps throughput (docs/tuning.md).
        #[must_use]
        pub fn send_window(mut self, bytes: u64) -> Self {
            self.config.send_window = Some(bytes);
            self
        }

        /// The congestion controller of this side's TCP connections (the fallback), by its
        /// Linux name (`TCP_CONGESTION`): "cubic", "bbr", "reno" or any other the kernel
        /// has. A name the kernel does not know, or does not allow this process
        /// (`net.ipv4.tcp_allowed_congestion_control`, unless it has `CAP_NET_ADMIN`), is
        /// logged and the host's default kept; other systems keep theirs. Default: the
        /// host's (`net.ipv4.tcp_congestion_control`).
        ///
        /// Why it matters: with the host's BBR, many small calls in flight over a long path
        /// take two round trips each, because BBR paces each round trip's burst at the rate
        /// it measured, which that pacing itself held down; CUBIC takes one. Under random
        /// loss BBR carries more (docs/tuning.md has both measurements).
        #[must_use]
        pub fn tcp_congestion_control(mut self, name: impl Into<String>) -> Self {
            self.config.tcp_congestion_control = Some(name.into());
            self
        }

        /// Writes a qlog trace of every QUIC connection into `dir` (one file per connection,
        /// named `<side>-<unix ms>-<pid>-<n>.qlog`), for qvis and similar tools. Costs a
        /// file write per packet event: for debugging, not production. Feature `qlog`.
        #[cfg(feature = "qlog")]
        #[must_use]
        pub fn qlog_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.config.qlog_dir = Some(dir.into());
            self
        }
    };
}

pub(crate) use connection_setters;

/// Sets the TCP congestion controller `name` on `socket` (a listener's is inherited by the
/// connections it accepts), if one is configured; a failure is logged, and the host's default
/// stays.
pub(crate) fn set_tcp_congestion(socket: socket2::SockRef<'_>, name: Option<&str>) {
    let Some(name) = name else { return };
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    let result = socket.set_tcp_congestion(name.as_bytes());
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    let result: std::io::Result<()> = {
        let _ = socket;
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    };
    if let Err(e) = result {
        tracing::warn!("TCP congestion control {name:?} not set, the host's default stays: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_taken_only_as_probes() {
        let client = format!(
            "{:?}",
            ConnectionConfig::client_default().client_transport(false)
        );
        let server = format!(
            "{:?}",
            ConnectionConfig::server_default().server_transport(128)
        );
        for shown in [client, server] {
            assert!(
                shown.contains("datagram_receive_buffer_size: Some(64)"),
                "{shown}"
            );
        }
    }

    #[test]
    fn windows_reach_quinn() {
        let mut config = ConnectionConfig::client_default();
        config.stream_receive_window = 123_457;
        config.connection_receive_window = 7_654_321;
        config.send_window = Some(98_765_432);
        // quinn's TransportConfig shows its settings only through Debug.
        let shown = format!("{:?}", config.client_transport(false).unwrap());
        for want in [
            "stream_receive_window: 123457",
            "receive_window: 7654321",
            "send_window: 98765432",
        ] {
            assert!(shown.contains(want), "{want} not in {shown}");
        }
    }
}
