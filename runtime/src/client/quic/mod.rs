//! The QUIC side of the client: connecting, and what the client knows about a connection.
//! A call on a connection is [`Conn::call`] (`call.rs`, or `http3.rs` on a connection that
//! speaks gRPC over HTTP/3); the native wire's control stream is watched by `control.rs`.

mod call;
mod control;
mod http3;
mod liveness;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::future::select_ok;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub(super) use self::call::{CallError, buffer_request, full_body};
pub(super) use self::http3::H3Body;
use super::builder::Target;
use crate::config::ConnectionConfig;
use crate::stream::{Handles, WriteGate, close_quietly};
use crate::sync::lock;
use crate::telemetry::{Side, sample_connection};
use crate::tls::ClientTls;
use crate::{Error, Transport, wire};

/// Which wire a [`Channel`](crate::Channel) speaks over QUIC. Chosen with
/// [`ChannelBuilder::quic_wire`](crate::ChannelBuilder::quic_wire); the TCP fallback is the
/// same whichever it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuicWire {
    /// quicrpc's own wire (ALPN `quicrpc/1`): one QUIC stream per call, with 0-RTT for
    /// replay-safe calls. Only a quicrpc server speaks it. The default.
    #[default]
    Native,
    /// gRPC over HTTP/3 (gRFC G2, ALPN `h3`), which any gRPC-over-HTTP/3 server speaks
    /// (grpc-dotnet, connect-go on quic-go, a quicrpc server). Calls carry their priority as
    /// RFC 9218's `priority` header. Connections use a full handshake: no 0-RTT.
    Http3,
    /// Offers both and speaks the one the server chooses: the native wire with a quicrpc
    /// server (it prefers it), HTTP/3 with any other. Connections use a full handshake, since
    /// the wire is known only once it completes: no 0-RTT.
    Auto,
}

impl QuicWire {
    /// The ALPNs offered, in order of preference.
    fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Self::Native => &[wire::ALPN],
            Self::Http3 => &[crate::http3::ALPN],
            Self::Auto => &[wire::ALPN, crate::http3::ALPN],
        }
    }
}

/// Everything needed to open QUIC connections to one server.
pub(super) struct QuicConnector {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    /// For a server over loopback: larger datagrams searched for, unless the largest UDP
    /// payload is set (then the same as `client_config`).
    loopback_client_config: quinn::ClientConfig,
    host: String,
    port: u16,
    server_name: String,
    connect_timeout: Duration,
    /// The send window the application fixed, if it did.
    send_window: Option<u64>,
    wire: QuicWire,
    /// The largest response head accepted over HTTP/3.
    max_header_list_size: usize,
    /// The least silence after which a server is taken for dead (`None`: the idle timeout
    /// alone decides).
    unresponsive_after: Option<Duration>,
    /// For connections that need a config of their own (qlog).
    #[cfg(feature = "qlog")]
    config: ConnectionConfig,
}

/// One QUIC connection and what the client knows about it.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) quic: quinn::Connection,
    /// Set when the server said GOAWAY: no new calls go on this connection.
    draining: Arc<AtomicBool>,
    /// `false` while a resumed connection's handshake is under way (0-RTT early data is
    /// possible), `true` once it has completed or failed.
    handshake_over: watch::Receiver<bool>,
    /// Priority at admission into quinn's send buffer, for this connection's calls.
    gate: Arc<WriteGate>,
    /// Set when the connection speaks gRPC over HTTP/3: what opens its requests.
    h3: Option<http3::SendRequest>,
    /// Calls under way on it: while there are any, a silent server is probed.
    in_flight: Arc<AtomicUsize>,
    /// The handles of the streams opened in 0-RTT early data.
    early_handles: Arc<Handles>,
    /// Set when the server rejected the early data: new streams wait for `early_handles`
    /// to be gone (see [`crate::stream::Handles`]).
    early_rejected: Arc<AtomicBool>,
}

/// Counts a call as under way on its connection until dropped (with its response body).
pub(in crate::client) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Conn {
    /// Whether new calls may use this connection.
    pub(super) fn usable(&self) -> bool {
        // Over HTTP/3, a GOAWAY shows when a call finds the connection closing, which
        // retires it (`h3` keeps the GOAWAY to itself).
        self.quic.close_reason().is_none() && !self.draining.load(Ordering::Acquire)
    }

    /// The wire this connection's calls take.
    pub(super) fn transport(&self) -> Transport {
        match self.h3 {
            Some(_) => Transport::Http3,
            None => Transport::Quic,
        }
    }

    /// Whether a stream opened now would carry 0-RTT early data.
    pub(super) fn in_early_data(&self) -> bool {
        !*self.handshake_over.borrow()
    }

    /// Waits until the handshake has completed or failed, or the connection has closed.
    /// Costs nothing for a connection whose handshake is long over, as for most calls.
    ///
    /// Cancel-safe: it only waits.
    ///
    /// After the server rejected early data, it also waits until the handles of the streams
    /// opened in it are gone, so that a stream opened next cannot be hurt by their drop
    /// (quinn reuses their ids).
    pub(super) async fn handshake_over(&self) {
        if self.in_early_data() {
            let mut over = self.handshake_over.clone();
            tokio::select! {
                // An error means the watcher is gone, which it is only once the handshake is
                // over.
                _ = over.wait_for(|over| *over) => {}
                _ = self.quic.closed() => {}
            }
        }
        if self.early_rejected.load(Ordering::Acquire) {
            self.early_handles.none_left().await;
        }
    }

    /// Waits for the handshake as [`handshake_over`](Self::handshake_over) does, and says
    /// whether it completed: a resumed connection exists before its server has answered,
    /// and its handshake may still fail (the connect timeout closes it).
    pub(super) async fn handshake_completed(&self) -> Result<(), Error> {
        self.handshake_over().await;
        match self.quic.close_reason() {
            None => Ok(()),
            Some(reason) => Err(Error::Connect {
                addr: self.quic.remote_address(),
                source: reason,
            }),
        }
    }

    /// A token that counts a stream handle opened in early data.
    pub(super) fn early_handle(&self) -> crate::stream::HandleToken {
        self.early_handles.token()
    }

    /// Counts a call as under way on this connection.
    pub(in crate::client) fn in_flight(&self) -> InFlight {
        InFlight::new(&self.in_flight)
    }

    /// Stops new calls from using this connection.
    pub(super) fn retire(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

impl QuicConnector {
    /// A connector to `target` with these TLS and connection settings.
    pub(super) fn new(
        target: &Target,
        tls: &ClientTls,
        config: &ConnectionConfig,
        connect_timeout: Duration,
        wire: QuicWire,
        unresponsive_after: Option<Duration>,
    ) -> Result<Self, Error> {
        let tls = match wire {
            QuicWire::Native => tls.clone(),
            // Early data would have to be sent before the wire is known (Auto), or be
            // checked for replay safety by HTTP/3's rules (425): neither is built.
            QuicWire::Http3 | QuicWire::Auto => ClientTls {
                early_data: false,
                ..tls.clone()
            },
        };
        let http3 = wire != QuicWire::Native;
        let mut client_config = quinn::ClientConfig::new(shared_tls(&tls, wire)?);
        client_config.transport_config(Arc::new(config.client_transport(http3)?));
        let mut loopback_client_config = client_config.clone();
        loopback_client_config.transport_config(Arc::new(
            config.over_loopback(config.client_transport(http3)?),
        ));
        Ok(Self {
            endpoint: bind_client_endpoint(config)?,
            client_config,
            loopback_client_config,
            host: target.host.clone(),
            port: target.port,
            server_name: target.server_name.clone(),
            connect_timeout,
            send_window: config.send_window,
            wire,
            max_header_list_size: config.max_header_list_size,
            unresponsive_after,
            #[cfg(feature = "qlog")]
            config: config.clone(),
        })
    }

    /// The client config for a new connection: the shared one, or, when a qlog trace is
    /// asked for, one of its own that writes it.
    fn client_config_now(&self, addr: SocketAddr) -> Result<quinn::ClientConfig, Error> {
        let loopback = crate::config::is_loopback(addr);
        #[cfg(feature = "qlog")]
        if let Some(dir) = &self.config.qlog_dir {
            let mut transport = self
                .config
                .client_transport(self.wire != QuicWire::Native)?;
            if loopback {
                transport = self.config.over_loopback(transport);
            }
            let transport = crate::qlog::traced(transport, dir, Side::Client)?;
            let mut config = self.client_config.clone();
            config.transport_config(Arc::new(transport));
            return Ok(config);
        }
        Ok(match loopback {
            true => self.loopback_client_config.clone(),
            false => self.client_config.clone(),
        })
    }

    /// Resolves the host and races a handshake to each of its addresses. The connection's
    /// control stream is watched until it closes or `dropped` is cancelled.
    ///
    /// With a session ticket for the server, the connection is returned at once, its
    /// handshake still under way ([`Conn::in_early_data`]): calls that may go as 0-RTT early
    /// data go now, others wait for [`Conn::handshake_over`].
    ///
    /// Not cancel-safe: cancelling it abandons the attempt (what the race does to the loser).
    pub(super) async fn connect(&self, dropped: CancellationToken) -> Result<Conn, Error> {
        let resolve_err = |source| Error::Resolve {
            host: self.host.clone(),
            source,
        };
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(resolve_err)?
            .collect();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(resolve_err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no addresses",
            )));
        }
        let attempts = addrs.iter().map(|&addr| Box::pin(self.handshake(addr)));
        let ((quic, early), _) = select_ok(attempts).await?;
        let (over_tx, handshake_over) = watch::channel(early.is_none());
        let early_rejected = Arc::new(AtomicBool::new(false));
        match early {
            Some(accepted) => {
                debug!(remote = %quic.remote_address(), "QUIC connection resumed: 0-RTT");
                tokio::spawn(confirm_handshake(
                    quic.clone(),
                    accepted,
                    self.connect_timeout,
                    over_tx,
                    early_rejected.clone(),
                ));
            }
            None => debug!(remote = %quic.remote_address(), "QUIC connection established"),
        }
        let draining = Arc::new(AtomicBool::new(false));
        let speaks_http3 = match self.wire {
            QuicWire::Native => false,
            QuicWire::Http3 => true,
            QuicWire::Auto => negotiated_alpn(&quic).as_deref() == Some(crate::http3::ALPN),
        };
        let (h3, watch): (_, Pin<Box<dyn Future<Output = ()> + Send>>) = if speaks_http3 {
            let setup = http3::start(&quic, self.max_header_list_size);
            let (send_request, driver) = tokio::time::timeout(self.connect_timeout, setup)
                .await
                .map_err(|_| Error::Http3 {
                addr: quic.remote_address(),
                reason: "no room to open the control stream in time".into(),
            })??;
            let draining = draining.clone();
            let driver = async move {
                driver.await;
                draining.store(true, Ordering::Release);
            };
            (Some(send_request), Box::pin(driver))
        } else {
            let watch = control::watch(quic.clone(), draining.clone());
            (None, Box::pin(watch))
        };
        let in_flight = Arc::new(AtomicUsize::new(0));
        // Probes only on the native wire: an HTTP/3 server would read a QUIC DATAGRAM as an
        // HTTP datagram (RFC 9297), which it may refuse.
        let probes = (!speaks_http3).then(|| in_flight.clone());
        let (floor, send_window, conn) = (self.unresponsive_after, self.send_window, quic.clone());
        // The connection's helpers are made inside the task: futures made outside and moved
        // in would keep their room in the task twice over (once as captured, once joined),
        // about 4 KiB more for every connection.
        tokio::spawn(async move {
            let stats = sample_connection(conn.clone(), Side::Client);
            let window = crate::window::size_send_window(conn.clone(), send_window);
            let liveness = async move {
                if let Some(floor) = floor {
                    liveness::watch(conn, floor, probes).await;
                }
            };
            tokio::select! {
                () = dropped.cancelled() => {}
                ((), (), (), ()) = futures_util::future::join4(watch, stats, window, liveness) => {}
            }
        });
        Ok(Conn {
            gate: WriteGate::new(&quic, Side::Client),
            quic,
            draining,
            handshake_over,
            h3,
            in_flight,
            early_handles: Arc::default(),
            early_rejected,
        })
    }

    /// The wire a new connection will speak, as far as is known before it connects.
    pub(super) fn transport(&self) -> Transport {
        match self.wire {
            QuicWire::Http3 => Transport::Http3,
            QuicWire::Native | QuicWire::Auto => Transport::Quic,
        }
    }

    /// The local address of the QUIC socket.
    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Moves every connection of this endpoint to a new local UDP socket (same address
    /// family, new port). QUIC carries the connections over: the server validates the new
    /// path and calls in flight continue.
    pub(super) fn rebind(&self) -> Result<SocketAddr, Error> {
        let current = self.endpoint.local_addr().map_err(|source| Error::Bind {
            addr: "QUIC socket".into(),
            source,
        })?;
        let fresh: SocketAddr = match current {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let bind_err = |source| Error::Bind {
            addr: fresh.to_string(),
            source,
        };
        let socket = std::net::UdpSocket::bind(fresh).map_err(bind_err)?;
        self.endpoint.rebind(socket).map_err(bind_err)?;
        let now = self.endpoint.local_addr().map_err(bind_err)?;
        debug!(from = %current, to = %now, "rebound the QUIC socket");
        Ok(now)
    }

    /// A handshake to `addr`: the connection once it completes, or at once, with the future
    /// of its completion, when the handshake resumes a session and may send 0-RTT data.
    async fn handshake(
        &self,
        addr: SocketAddr,
    ) -> Result<(quinn::Connection, Option<quinn::ZeroRttAccepted>), Error> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config_now(addr)?, addr, &self.server_name)
            .map_err(|e| Error::Config {
                message: format!("cannot start a handshake with {addr}"),
                source: Some(e.into()),
            })?;
        let connecting = match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                metrics::counter!("quicrpc_client_zero_rtt_total", "outcome" => "offered")
                    .increment(1);
                return Ok((conn, Some(accepted)));
            }
            Err(connecting) => connecting,
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(conn)) => Ok((conn, None)),
            Ok(Err(source)) => Err(Error::Connect { addr, source }),
            Err(_) => Err(Error::ConnectTimeout {
                addr,
                timeout: self.connect_timeout,
            }),
        }
    }
}

/// Waits for a resumed connection's handshake (closing the connection if it takes longer
/// than `timeout`), counts whether the server accepted the early data, and tells the
/// connection's calls that the handshake is over.
async fn confirm_handshake(
    conn: quinn::Connection,
    accepted: quinn::ZeroRttAccepted,
    timeout: Duration,
    over: watch::Sender<bool>,
    rejected: Arc<AtomicBool>,
) {
    let outcome = match tokio::time::timeout(timeout, accepted).await {
        Ok(true) => "accepted",
        Ok(false) if conn.close_reason().is_none() => "rejected",
        Ok(false) => "failed",
        Err(_) => {
            close_quietly(&conn, "handshake timed out");
            "failed"
        }
    };
    debug!(remote = %conn.remote_address(), outcome, "0-RTT handshake over");
    // Before the calls waiting for the handshake hear of it (they wait for the early
    // streams' handles to go).
    rejected.store(outcome == "rejected", Ordering::Release);
    metrics::counter!("quicrpc_client_zero_rtt_total", "outcome" => outcome).increment(1);
    let _ = over.send(true);
    // The server sends its new session tickets once it has the client's Finished, about a
    // round trip from now. A channel dropped right after a call answered in 0-RTT would close
    // the connection before they arrive, and its next connection would find no ticket; this
    // handle keeps the connection open that long (at most a second) after the channel is gone.
    if conn.close_reason().is_none() {
        let linger = (conn.rtt() * 2).min(Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(linger) => {}
            _ = conn.closed() => {}
        }
    }
}

/// The ALPN the handshake settled on, once it has completed.
fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// Binds a dual-stack client socket where the host has IPv6, an IPv4 one otherwise.
fn bind_client_endpoint(config: &ConnectionConfig) -> Result<quinn::Endpoint, Error> {
    let v6: SocketAddr = (std::net::Ipv6Addr::UNSPECIFIED, 0).into();
    let v4: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
    let bind = |addr: SocketAddr| -> std::io::Result<quinn::Endpoint> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Dual-stack where the host allows it, as quinn's `Endpoint::client` makes it.
        if addr.is_ipv6()
            && let Err(e) = socket.set_only_v6(false)
        {
            debug!("IPv6 client socket without IPv4: {e}");
        }
        socket.bind(&addr.into())?;
        let runtime = Arc::new(quinn::TokioRuntime);
        quinn::Endpoint::new(config.endpoint_config(), None, socket.into(), runtime)
    };
    bind(v6)
        .or_else(|_| bind(v4))
        .map_err(|source| Error::Bind {
            addr: v4.to_string(),
            source,
        })
}

/// QUIC client configs, shared by every channel with the same TLS settings and wire: rustls
/// resumes a session only under the config that made it, so sharing is what lets a new
/// channel to a server resume an earlier channel's session (and send 0-RTT).
static SHARED_TLS: LazyLock<Mutex<HashMap<TlsKey, Arc<QuicClientConfig>>>> =
    LazyLock::new(Default::default);

type QuicClientConfig = quinn::crypto::rustls::QuicClientConfig;

/// What a shared QUIC client config is made from.
type TlsKey = (ClientTls, QuicWire);

/// How many QUIC client configs no channel uses any more are kept, for a later channel with
/// the same TLS settings to resume from. Each holds its TLS settings (a client's private key,
/// with mutual TLS) and its session tickets.
const SPARE_TLS_CONFIGS: usize = 64;

/// The shared QUIC config for `tls` and `wire`, made on first use.
fn shared_tls(tls: &ClientTls, wire: QuicWire) -> Result<Arc<QuicClientConfig>, Error> {
    let key = (tls.clone(), wire);
    let mut shared = lock(&SHARED_TLS);
    if let Some(config) = shared.get(&key) {
        return Ok(config.clone());
    }
    if shared.len() >= SPARE_TLS_CONFIGS {
        // Configs only this map holds go: no channel uses them.
        shared.retain(|_, config| Arc::strong_count(config) > 1);
    }
    let config = QuicClientConfig::try_from(tls.config(wire.alpn())?)
        .map_err(|e| Error::tls_caused("TLS config unusable for QUIC", e))?;
    let config = Arc::new(config);
    shared.insert(key, config.clone());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ServerVerification;

    fn tls(sessions: usize) -> ClientTls {
        ClientTls {
            roots: Vec::new(),
            identity: None,
            sessions,
            early_data: false,
            verify: ServerVerification::Verified,
        }
    }

    /// Configs no channel uses any more do not pile up: past the number of spares kept, they
    /// go, while one in use stays (and is shared).
    #[test]
    fn unused_tls_configs_do_not_pile_up() {
        // Sessions counts no other test uses, so that the map's other entries are theirs.
        let base = 1_000_000;
        let in_use = shared_tls(&tls(base), QuicWire::Native).unwrap();
        for n in 1..=SPARE_TLS_CONFIGS + 10 {
            drop(shared_tls(&tls(base + n), QuicWire::Native).unwrap());
        }
        let shared = lock(&SHARED_TLS);
        let ours = shared
            .keys()
            .filter(|(t, _)| t.sessions >= base && t.sessions <= base + SPARE_TLS_CONFIGS + 10)
            .count();
        assert!(ours <= SPARE_TLS_CONFIGS, "{ours} configs kept");
        assert!(
            shared.contains_key(&(tls(base), QuicWire::Native)),
            "the config in use went"
        );
        drop(shared);
        assert!(Arc::ptr_eq(
            &in_use,
            &shared_tls(&tls(base), QuicWire::Native).unwrap()
        ));
    }
}
