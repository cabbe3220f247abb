//! The client: [`Channel`], a tower service that tonic-generated clients run on, with the
//! automatic fallback from QUIC to gRPC over TCP.

mod body;
mod quic;
mod tcp;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tower::ServiceExt;
use tracing::{debug, info};

pub use self::body::ResponseBody;
use self::quic::{CallFailure, Conn, QuicConnector, QuicRequest};
use self::tcp::TcpConnector;
use crate::config::{ConnectionConfig, DEFAULT_CONNECT_TIMEOUT};
use crate::telemetry::{CallTelemetry, Side, method_label, status_code, transport_switch};
use crate::tls::{Certificate, Identity};
use crate::wire::fields;
use crate::zero_rtt::client_may_send;
use crate::{Error, NoZeroRtt, Priority, ZeroRtt, method_info, timeout};

/// Default head start QUIC gets before TCP is tried too.
const DEFAULT_FALLBACK_DELAY: Duration = Duration::from_millis(250);
/// Default time a fallback to TCP is remembered per server.
const DEFAULT_FALLBACK_MEMORY: Duration = Duration::from_secs(300);
/// Default interval between background QUIC probes while on TCP.
const DEFAULT_QUIC_PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// Reconnect backoff: first delay, and the cap.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default number of servers whose TLS session tickets are kept, per set of trust roots.
const DEFAULT_SESSION_CACHE: usize = 256;

/// The transport under a [`Channel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// quicrpc's native wire: one QUIC stream per call.
    Quic,
    /// Plain gRPC over HTTP/2 over TCP, with TLS (tonic): the fallback.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quic => "QUIC",
            Self::Tcp => "TCP",
        })
    }
}

/// Which transports a [`Channel`] may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// QUIC when it works, gRPC over TCP when it does not (the default). The two are raced
    /// happy-eyeballs style: QUIC starts first, TCP after a head start
    /// ([`ChannelBuilder::fallback_delay`]) or as soon as QUIC fails; the first to connect is
    /// used, QUIC if both do. While on TCP, QUIC is probed in the background and new calls
    /// move back to it once it works.
    #[default]
    Auto,
    /// QUIC only; calls fail with UNAVAILABLE when QUIC cannot connect.
    QuicOnly,
    /// gRPC over TCP only.
    TcpOnly,
}

/// A connection to one server, shared by every clone: the transport under tonic-generated
/// clients.
///
/// ```no_run
/// # async fn run(ca: quicrpc::tls::Certificate) -> Result<(), quicrpc::Error> {
/// let channel = quicrpc::Channel::builder("https://localhost:50051")
///     .ca_certificate(ca)
///     .connect()
///     .await?;
/// // let mut client = GreeterClient::new(channel);
/// # Ok(()) }
/// ```
///
/// Each call over QUIC is one bidirectional stream; over TCP it is an HTTP/2 stream. Clones
/// share the connection; cloning is cheap. When the connection is lost, the next call
/// reconnects, with the same fallback policy.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

struct Inner {
    quic: Option<QuicConnector>,
    tcp: Option<TcpConnector>,
    authority: String,
    config: ConnectionConfig,
    policy: Fallback,
    fallback_delay: Duration,
    fallback_memory: Duration,
    probe_interval: Duration,
    state: Mutex<State>,
    connecting: tokio::sync::Mutex<()>,
    /// Cancelled when the last clone of the channel is dropped, so background tasks let go
    /// of the connection and it closes once no call uses it.
    dropped: CancellationToken,
}

#[derive(Default)]
struct State {
    quic: Option<Conn>,
    tcp: Option<tonic::transport::Channel>,
    probing: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

/// Where a call goes.
enum Route {
    Quic(Conn),
    Tcp(tonic::transport::Channel),
}

/// No route now, and when the next connection attempt may be made.
struct Unreachable {
    status: Status,
    retry_at: Instant,
}

/// Servers recently reached only over TCP, by authority, until when.
static TCP_ONLY_UNTIL: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("authority", &self.inner.authority)
            .field("policy", &self.inner.policy)
            .field("transport", &self.transport())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Channel`]. Created by [`Channel::builder`].
#[derive(Clone, Debug)]
pub struct ChannelBuilder {
    uri: String,
    roots: Vec<Certificate>,
    domain_name: Option<String>,
    connect_timeout: Duration,
    config: ConnectionConfig,
    policy: Fallback,
    fallback_delay: Duration,
    fallback_memory: Duration,
    probe_interval: Duration,
    session_cache: usize,
    zero_rtt: bool,
    identity: Option<Identity>,
    accept_invalid_certificates: bool,
}

impl Channel {
    /// Starts configuring a channel to `uri`, of the form `https://host[:port]` (port 443 by
    /// default).
    pub fn builder(uri: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder {
            uri: uri.into(),
            roots: Vec::new(),
            domain_name: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            config: ConnectionConfig::client_default(),
            policy: Fallback::Auto,
            fallback_delay: DEFAULT_FALLBACK_DELAY,
            fallback_memory: DEFAULT_FALLBACK_MEMORY,
            probe_interval: DEFAULT_QUIC_PROBE_INTERVAL,
            session_cache: DEFAULT_SESSION_CACHE,
            zero_rtt: true,
            identity: None,
            accept_invalid_certificates: false,
        }
    }

    /// The transport new calls use: the one connected now, or, when nothing is connected,
    /// the one the policy tries first.
    pub fn transport(&self) -> Transport {
        self.inner.transport()
    }

    /// The local address of the channel's QUIC socket (`None` with
    /// [`Fallback::TcpOnly`]).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.quic.as_ref().and_then(QuicConnector::local_addr)
    }

    /// Moves the channel's QUIC connection to a new local UDP socket, as when a device
    /// changes networks (connection migration). Calls in flight, streams included, continue
    /// on the new path without loss; the server follows once it has validated the path.
    /// Returns the new local address.
    pub fn rebind(&self) -> Result<std::net::SocketAddr, Error> {
        match &self.inner.quic {
            Some(quic) => quic.rebind(),
            None => Err(Error::Config(
                "rebind needs QUIC; this channel is TCP-only".into(),
            )),
        }
    }

    /// The address of the server over QUIC, if a QUIC connection is up.
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        lock(&self.inner.state)
            .quic
            .as_ref()
            .map(|c| c.quic.remote_address())
    }
}

impl ChannelBuilder {
    /// Trusts `cert` as a root for the server's certificate. Without any, the Mozilla roots
    /// (webpki-roots) are trusted.
    pub fn ca_certificate(mut self, cert: Certificate) -> Self {
        self.roots.push(cert);
        self
    }

    /// Presents `identity` (a client certificate chain and key) to servers that ask for one:
    /// mutual TLS, on QUIC and on TCP.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// **Dangerous**: with `true`, the server's certificate is not verified at all: any
    /// certificate, from any issuer, for any name, expired or not, is accepted. Default:
    /// `false`.
    ///
    /// The connection is still encrypted, and the handshake signature is still checked
    /// against the certificate's key, but nothing ties that key to the server you meant to
    /// reach: anyone who can intercept the traffic can impersonate it and read or change
    /// every call. For development against a server whose CA you do not have, never in
    /// production; prefer [`ca_certificate`](Self::ca_certificate) with the server's CA.
    ///
    /// It applies to both transports: on TCP, quicrpc then makes the TLS connection itself
    /// (tonic's TLS cannot skip verification) and hands it to tonic. A client certificate
    /// ([`identity`](Self::identity)) is still presented.
    pub fn danger_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.accept_invalid_certificates = accept;
        self
    }

    /// The name checked against the server's certificate. Default: the URI's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// Which transports to use. Default: [`Fallback::Auto`].
    pub fn fallback(mut self, policy: Fallback) -> Self {
        self.policy = policy;
        self
    }

    /// How long QUIC may try alone before TCP is tried too ([`Fallback::Auto`]). When UDP is
    /// silently dropped, the first call waits about this long plus a TCP+TLS handshake.
    /// Default: 250 ms.
    pub fn fallback_delay(mut self, delay: Duration) -> Self {
        self.fallback_delay = delay;
        self
    }

    /// How long a fallback to TCP is remembered for this server (by authority, across
    /// channels in this process): new channels go straight to TCP meanwhile, and probe QUIC in
    /// the background. Default: 5 minutes.
    pub fn fallback_memory(mut self, memory: Duration) -> Self {
        self.fallback_memory = memory;
        self
    }

    /// While on TCP, how often to try QUIC again in the background. Default: 30 s.
    pub fn quic_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// How long a QUIC handshake (or TCP connect and TLS handshake) may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a QUIC connection may sit without any packet from the server before it is
    /// considered dead. Default: 30 s. (TCP connections rely on keep-alives instead.)
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How often to send a keep-alive on an otherwise quiet connection (QUIC PING; HTTP/2
    /// PING on TCP), so idle channels stay connected and NAT bindings open. `None` turns
    /// keep-alives off. Default: 10 s.
    pub fn keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.keep_alive_interval = interval;
        self
    }

    /// The largest response message accepted over QUIC, in bytes; a larger one ends the call
    /// with RESOURCE_EXHAUSTED. Default: 4 MiB. The tonic client has its own limit
    /// (`max_decoding_message_size`, also 4 MiB by default), which applies on both
    /// transports: raise both.
    pub fn max_receive_message_size(mut self, bytes: usize) -> Self {
        self.config.max_receive_message_size = bytes;
        self
    }

    /// The largest response head or trailers accepted over QUIC, in encoded bytes.
    /// Default: 16 KiB.
    pub fn max_header_list_size(mut self, bytes: usize) -> Self {
        self.config.max_header_list_size = bytes;
        self
    }

    /// The congestion controller for what this side sends over QUIC. Default:
    /// [`CongestionControl::Bbr`](crate::CongestionControl::Bbr), for its speed under random
    /// loss; see [`CongestionControl`](crate::CongestionControl) for the measurements.
    pub fn congestion_control(mut self, controller: crate::CongestionControl) -> Self {
        self.config.congestion_control = controller;
        self
    }

    /// Whether calls share the connection round-robin within each priority level (`true`,
    /// the default), or each partly-sent call's data goes out whole before anything else
    /// (`false`: less interleaving, so the first call finishes sooner).
    ///
    /// Turning fairness off weakens priorities: quinn then finishes a partly-sent stream
    /// before it starts any other, even one of higher priority, so a CRITICAL call can wait
    /// behind a BULK transfer. Keep it on where priorities matter.
    pub fn send_fairness(mut self, fair: bool) -> Self {
        self.config.send_fairness = fair;
        self
    }

    /// Writes a qlog trace of every QUIC connection into `dir` (one file per connection,
    /// named `<side>-<unix ms>-<pid>-<n>.qlog`), for qvis and similar tools. Costs a file
    /// write per packet event: for debugging, not production. Feature `qlog`.
    #[cfg(feature = "qlog")]
    pub fn qlog_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.qlog_dir = Some(dir.into());
        self
    }

    /// Whether resumed QUIC connections send calls as 0-RTT early data. Default: `true`.
    ///
    /// Only calls to methods declared `NO_SIDE_EFFECTS` or `IDEMPOTENT` (the standard
    /// `idempotency_level` option) with a single request message (unary and server-streaming)
    /// go as early data, which saves a round trip on a resumed connection; other calls wait
    /// for the handshake. A call the server does not run from early data is sent again after
    /// the handshake. [`NoZeroRtt`] opts one call out. See [`ZeroRtt`].
    pub fn zero_rtt(mut self, enabled: bool) -> Self {
        self.zero_rtt = enabled;
        self
    }

    /// How many servers' TLS session tickets are kept in memory, for resumption and 0-RTT.
    /// `0` turns resumption off. Default: 256.
    ///
    /// Channels with the same trust roots and session settings share one ticket cache in the
    /// process, so a new channel to a server resumes an earlier channel's session. The cache
    /// lives in memory only: rustls offers no way to serialise its session values, so tickets
    /// do not outlive the process.
    pub fn session_cache(mut self, servers: usize) -> Self {
        self.session_cache = servers;
        self
    }

    /// Connects now, failing if the server cannot be reached by the policy's transports.
    pub async fn connect(self) -> Result<Channel, Error> {
        let channel = self.build()?;
        {
            let _one_at_a_time = channel.inner.connecting.lock().await;
            channel.inner.establish().await?;
        }
        Ok(channel)
    }

    /// Builds the channel without connecting; the first call connects. Must be called
    /// inside a Tokio runtime.
    pub fn connect_lazy(self) -> Result<Channel, Error> {
        self.build()
    }

    fn build(self) -> Result<Channel, Error> {
        let invalid = |reason: &str| Error::InvalidUri {
            uri: self.uri.clone(),
            reason: reason.to_owned(),
        };
        let uri: Uri = self
            .uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid(
                "the scheme must be https (quicrpc always uses TLS)",
            ));
        }
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        let server_name = self.domain_name.clone().unwrap_or_else(|| host.clone());

        let quic = match self.policy {
            Fallback::TcpOnly => None,
            _ => Some(QuicConnector::new(
                &self,
                host.clone(),
                port,
                server_name.clone(),
            )?),
        };
        let tcp = match self.policy {
            Fallback::QuicOnly => None,
            _ => Some(TcpConnector::new(&self, &authority, &server_name)?),
        };
        Ok(Channel {
            inner: Arc::new(Inner {
                quic,
                tcp,
                authority,
                config: self.config,
                policy: self.policy,
                fallback_delay: self.fallback_delay,
                fallback_memory: self.fallback_memory,
                probe_interval: self.probe_interval,
                state: Mutex::new(State::default()),
                connecting: tokio::sync::Mutex::new(()),
                dropped: CancellationToken::new(),
            }),
        })
    }
}

impl Inner {
    /// See [`Channel::transport`].
    fn transport(&self) -> Transport {
        let state = lock(&self.state);
        match (&state.quic, &state.tcp, self.policy) {
            (Some(conn), _, _) if conn.usable() => Transport::Quic,
            (_, Some(_), _) | (_, _, Fallback::TcpOnly) => Transport::Tcp,
            _ => Transport::Quic,
        }
    }

    /// The route new calls take now, if one is up. QUIC wins whenever it is up.
    fn current_route(&self) -> Option<Route> {
        let state = lock(&self.state);
        match (&state.quic, &state.tcp) {
            (Some(conn), _) if conn.usable() => Some(Route::Quic(conn.clone())),
            (_, Some(tcp)) => Some(Route::Tcp(tcp.clone())),
            _ => None,
        }
    }

    /// A route for a call: the current one, or a new connection by the policy. While a
    /// reconnect is backing off, calls fail fast with UNAVAILABLE rather than queue.
    async fn route(self: &Arc<Self>) -> Result<Route, Unreachable> {
        if let Some(route) = self.current_route() {
            return Ok(route);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(route) = self.current_route() {
            return Ok(route);
        }
        if let Some(retry_at) = lock(&self.state).retry_at
            && Instant::now() < retry_at
        {
            let status = Status::unavailable("server unreachable: waiting to reconnect");
            return Err(Unreachable { status, retry_at });
        }
        self.establish().await.map_err(|e| Unreachable {
            status: Status::unavailable(format!("cannot reach server: {e}")),
            retry_at: lock(&self.state).retry_at.unwrap_or_else(Instant::now),
        })
    }

    /// Connects by the policy (the caller holds `connecting`) and installs the result.
    async fn establish(self: &Arc<Self>) -> Result<Route, Error> {
        let result = match (self.policy, &self.quic, &self.tcp) {
            (Fallback::QuicOnly, Some(quic), _) => {
                quic.connect(self.dropped.clone()).await.map(Route::Quic)
            }
            (Fallback::TcpOnly, _, Some(tcp)) => {
                tcp.connect().await.map(Route::Tcp).map_err(tcp_error)
            }
            (Fallback::Auto, Some(quic), Some(tcp)) => self.race(quic, tcp).await,
            _ => Err(Error::Config("no transport for this policy".into())),
        };
        let mut state = lock(&self.state);
        match &result {
            Ok(Route::Quic(conn)) => {
                state.quic = Some(conn.clone());
                state.tcp = None;
            }
            Ok(Route::Tcp(tcp)) => state.tcp = Some(tcp.clone()),
            Err(e) => {
                state.failures += 1;
                let backoff = BACKOFF_START
                    .saturating_mul(1 << state.failures.min(6))
                    .min(BACKOFF_MAX);
                state.retry_at = Some(Instant::now() + backoff);
                debug!(authority = %self.authority, ?backoff, "connecting failed: {e}");
            }
        }
        if result.is_ok() {
            state.failures = 0;
            state.retry_at = None;
        }
        result
    }

    /// Happy eyeballs between QUIC and TCP.
    async fn race(
        self: &Arc<Self>,
        quic: &QuicConnector,
        tcp: &TcpConnector,
    ) -> Result<Route, Error> {
        if self.remembered_tcp() {
            let channel = tcp.connect().await.map_err(tcp_error)?;
            info!(authority = %self.authority, "using gRPC over TCP: QUIC failed recently for this server");
            transport_switch(Transport::Tcp, "remembered");
            self.start_probe(None);
            return Ok(Route::Tcp(channel));
        }
        let mut quic_attempt = Box::pin(quic.connect(self.dropped.clone()));
        let quic_failed = tokio::select! {
            result = &mut quic_attempt => match result {
                Ok(conn) => {
                    if conn.in_early_data() {
                        self.watch_early_handshake(conn.clone(), tcp.clone());
                    }
                    return Ok(Route::Quic(conn));
                }
                Err(e) => Some(e),
            },
            () = tokio::time::sleep(self.fallback_delay) => None,
        };
        let mut tcp_attempt = Box::pin(tcp.connect());
        let reason = match quic_failed {
            Some(quic_err) => match tcp_attempt.await {
                Ok(channel) => {
                    self.fell_back(&quic_err.to_string(), false);
                    return Ok(Route::Tcp(channel));
                }
                Err(tcp_err) => return Err(both_failed(&quic_err, &tcp_error(tcp_err))),
            },
            None => tokio::select! {
                biased;
                result = &mut quic_attempt => match result {
                    Ok(conn) => return Ok(Route::Quic(conn)),
                    Err(quic_err) => match tcp_attempt.await {
                        Ok(channel) => {
                            self.fell_back(&quic_err.to_string(), false);
                            return Ok(Route::Tcp(channel));
                        }
                        Err(tcp_err) => return Err(both_failed(&quic_err, &tcp_error(tcp_err))),
                    },
                },
                result = &mut tcp_attempt => match result {
                    Ok(channel) => Ok(channel),
                    Err(tcp_err) => {
                        return match quic_attempt.await {
                            Ok(conn) => Ok(Route::Quic(conn)),
                            Err(quic_err) => Err(both_failed(&quic_err, &tcp_error(tcp_err))),
                        };
                    }
                },
            },
        };
        // TCP connected while QUIC was still trying: use TCP now, and probe QUIC again in the
        // background right away; once it connects, new calls move to QUIC.
        let channel = reason?;
        drop(quic_attempt);
        let delay = self.fallback_delay;
        self.fell_back(&format!("no QUIC handshake within {delay:?}"), true);
        Ok(Route::Tcp(channel))
    }

    /// A resumed QUIC connection is used before its handshake completes, so the race above
    /// cannot judge it. If its handshake has not completed after the fallback delay (UDP
    /// blocked since the session began, say), TCP is tried too; if TCP connects first, new
    /// calls go over TCP and the QUIC connection is closed. Calls on it start again over TCP:
    /// those that went out as early data are replay-safe, and the others had not started.
    fn watch_early_handshake(self: &Arc<Self>, conn: Conn, tcp: TcpConnector) {
        let weak = Arc::downgrade(self);
        let dropped = self.dropped.clone();
        let delay = self.fallback_delay;
        tokio::spawn(async move {
            let over = conn.handshake_over();
            tokio::pin!(over);
            tokio::select! {
                () = &mut over => return,
                () = dropped.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            let channel = tokio::select! {
                () = &mut over => return,
                () = dropped.cancelled() => return,
                result = tcp.connect() => match result {
                    Ok(channel) => channel,
                    Err(e) => {
                        debug!("TCP failed too while a QUIC handshake was slow: {}", tcp_error(e));
                        return;
                    }
                },
            };
            let Some(inner) = weak.upgrade() else { return };
            if !conn.in_early_data() {
                return;
            }
            conn.retire();
            lock(&inner.state).tcp = Some(channel);
            conn.quic.close(
                quinn::VarInt::from_u32(crate::wire::code::ErrorCode::NoError.to_u32()),
                b"handshake too slow: using TCP",
            );
            inner.fell_back(&format!("no QUIC handshake within {delay:?}"), true);
        });
    }

    fn remembered_tcp(&self) -> bool {
        let mut remembered = lock(&TCP_ONLY_UNTIL);
        match remembered.get(&self.authority) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                remembered.remove(&self.authority);
                false
            }
            None => false,
        }
    }

    /// Records a fallback to TCP and starts probing QUIC: right away if QUIC was merely slow,
    /// after an interval if it failed.
    fn fell_back(self: &Arc<Self>, reason: &str, probe_now: bool) {
        info!(authority = %self.authority, reason, "falling back to gRPC over TCP");
        transport_switch(
            Transport::Tcp,
            if probe_now {
                "quic_slow"
            } else {
                "quic_failed"
            },
        );
        lock(&TCP_ONLY_UNTIL).insert(
            self.authority.clone(),
            Instant::now() + self.fallback_memory,
        );
        self.start_probe(probe_now.then_some(Duration::ZERO));
    }

    /// Probes QUIC in the background until it connects, then moves new calls to it.
    fn start_probe(self: &Arc<Self>, first_delay: Option<Duration>) {
        {
            let mut state = lock(&self.state);
            if state.probing {
                return;
            }
            state.probing = true;
        }
        let weak = Arc::downgrade(self);
        let dropped = self.dropped.clone();
        let first_delay = first_delay.unwrap_or(self.probe_interval);
        tokio::spawn(async move {
            tokio::select! {
                () = dropped.cancelled() => {}
                () = probe_quic(weak, first_delay) => {}
            }
        });
    }
}

async fn probe_quic(weak: Weak<Inner>, first_delay: Duration) {
    let mut delay = first_delay;
    loop {
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else { return };
        delay = inner.probe_interval;
        let Some(quic) = &inner.quic else { return };
        let attempt = async {
            let conn = quic.connect(inner.dropped.clone()).await?;
            // A resumed connection comes back before its handshake is done: a probe counts
            // only a completed one.
            conn.handshake_over().await;
            match conn.quic.close_reason() {
                None => Ok(conn),
                Some(reason) => Err(Error::Connect {
                    addr: conn.quic.remote_address(),
                    source: reason,
                }),
            }
        };
        match attempt.await {
            Ok(conn) => {
                let mut state = lock(&inner.state);
                state.quic = Some(conn);
                // Calls in flight on TCP keep their own handle and finish there.
                state.tcp = None;
                state.probing = false;
                drop(state);
                lock(&TCP_ONLY_UNTIL).remove(&inner.authority);
                info!(authority = %inner.authority, "QUIC works again: new calls use QUIC");
                transport_switch(Transport::Quic, "probe_succeeded");
                return;
            }
            Err(e) => debug!(authority = %inner.authority, "QUIC probe failed: {e}"),
        }
    }
}

fn tcp_error(err: tonic::transport::Error) -> Error {
    Error::TcpConnect(error_chain(&err))
}

/// An error's message followed by its causes', which is where tonic keeps the detail.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Some errors repeat their cause in their own message.
        let cause_message = cause.to_string();
        if !message.ends_with(&cause_message) {
            message.push_str(": ");
            message.push_str(&cause_message);
        }
        source = cause.source();
    }
    message
}

fn both_failed(quic: &Error, tcp: &Error) -> Error {
    Error::TcpConnect(format!("QUIC: {quic}; TCP: {tcp}"))
}

impl Inner {
    async fn call(
        self: Arc<Self>,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<ResponseBody>, Status> {
        let deadline = match request.headers().get("grpc-timeout") {
            Some(value) => match timeout::parse(value) {
                Some(t) => Some(Instant::now() + t),
                None => return Err(Status::internal("malformed grpc-timeout")),
            },
            None => None,
        };
        let info = method_info(request.uri().path());
        let method = method_label(request.uri().path(), info);
        let priority = request
            .extensions()
            .get::<Priority>()
            .copied()
            .or_else(|| info.map(|m| m.priority()))
            .unwrap_or_default();
        // Set once the call has a transport; outlives the call future, so that a deadline
        // that cuts the call short is still recorded.
        let mut telemetry: Option<CallTelemetry> = None;
        let call = async {
            // A call that has not started is retried transparently: on a new connection if
            // its connection went away before its stream opened, and, if it has a deadline,
            // through reconnect attempts until the deadline. Without a deadline it fails fast
            // with UNAVAILABLE rather than wait for ever. Once started, the deadline gives
            // DEADLINE_EXCEEDED.
            let mut lost_connection = false;
            let mut request = request;
            // How the call has used 0-RTT so far, and its buffered request while it is out
            // as early data.
            let mut zero_rtt = ZeroRtt::NotUsed;
            let mut replay: Option<http::Request<bytes::Bytes>> = None;
            loop {
                // Waiting for a connection is bounded by the deadline too; a call whose
                // deadline passes before it has one never started: UNAVAILABLE.
                let route = match deadline {
                    Some(deadline) => match tokio::time::timeout_at(deadline, self.route()).await {
                        Ok(route) => route,
                        Err(_) => {
                            return Err(Status::unavailable("deadline passed while connecting"));
                        }
                    },
                    None => self.route().await,
                };
                let route = match route {
                    Ok(route) => route,
                    Err(Unreachable { status, retry_at }) => match deadline {
                        Some(deadline) if retry_at < deadline => {
                            debug!(
                                "{}: retrying at the next reconnect attempt",
                                status.message()
                            );
                            tokio::time::sleep_until(retry_at).await;
                            continue;
                        }
                        _ => return Err(status),
                    },
                };
                match route {
                    Route::Tcp(channel) => {
                        telemetry = Some(CallTelemetry::start(
                            Side::Client,
                            method.clone(),
                            Transport::Tcp,
                            None,
                            None,
                        ));
                        let limit = self.config.max_receive_message_size;
                        return call_tcp(channel, request, limit, deadline).await;
                    }
                    Route::Quic(conn) => {
                        // A replay-safe call goes out as early data on a resumed connection
                        // whose handshake is under way; any other call waits for the end of
                        // the handshake (at once, usually).
                        let early = conn.in_early_data()
                            && zero_rtt == ZeroRtt::NotUsed
                            && client_may_send(info)
                            && request.extensions().get::<NoZeroRtt>().is_none();
                        if early {
                            let buffered = buffer_request(request).await?;
                            request = buffered.clone().map(full_body);
                            replay = Some(buffered);
                        } else {
                            conn.handshake_over().await;
                        }
                        let (send, recv) = match conn.quic.open_bi().await {
                            Ok(stream) => stream,
                            Err(e) if !lost_connection => {
                                debug!("connection lost before the call started ({e}): retrying");
                                lost_connection = true;
                                continue;
                            }
                            Err(e) => return Err(crate::stream::connection_status(&e)),
                        };
                        let id = quinn::VarInt::from(send.id()).into_inner();
                        telemetry.get_or_insert_with(|| {
                            CallTelemetry::start(
                                Side::Client,
                                method.clone(),
                                Transport::Quic,
                                Some(priority),
                                Some(id),
                            )
                        });
                        let sent_early = recv.is_0rtt();
                        match self
                            .call_quic(send, recv, request, priority, deadline)
                            .await
                        {
                            Ok(mut response) => {
                                let used = match (sent_early, zero_rtt) {
                                    (true, _) => ZeroRtt::Accepted,
                                    (false, used) => used,
                                };
                                response.extensions_mut().insert(used);
                                return Ok(response);
                            }
                            Err(CallFailure::Status(status)) => return Err(status),
                            Err(CallFailure::Early(reason)) => match replay.take() {
                                Some(copy) => {
                                    debug!(%method, "sending the call again after the handshake: {reason}");
                                    zero_rtt = ZeroRtt::Retried;
                                    request = copy.map(full_body);
                                    conn.handshake_over().await;
                                }
                                None => return Err(Status::unavailable(reason)),
                            },
                        }
                    }
                }
            }
        };
        let result = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("deadline exceeded"))),
            None => call.await,
        };
        match result {
            Ok(mut response) => {
                if let Some(mut telemetry) = telemetry {
                    match status_code(response.headers()) {
                        // Trailers-only: the call is over.
                        Some(code) => telemetry.finish(code),
                        None => response.body_mut().attach(telemetry),
                    }
                }
                Ok(response)
            }
            Err(status) => {
                let transport = self.transport();
                telemetry
                    .get_or_insert_with(|| {
                        CallTelemetry::start(Side::Client, method, transport, None, None)
                    })
                    .finish(status.code());
                Err(status)
            }
        }
    }

    async fn call_quic(
        &self,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        request: http::Request<tonic::body::Body>,
        priority: Priority,
        deadline: Option<Instant>,
    ) -> Result<http::Response<ResponseBody>, CallFailure> {
        let (parts, body) = request.into_parts();
        let head = fields::encode_request_head(
            parts.uri.path(),
            Some(&self.authority),
            Some(priority),
            &parts.headers,
        );
        let request = QuicRequest {
            head,
            body,
            priority,
            max_header_list_size: self.config.max_header_list_size,
            max_receive_message_size: self.config.max_receive_message_size,
        };
        let mut response = quic::call(send, recv, request)
            .await?
            .map(|b| ResponseBody::quic(b, deadline));
        response.extensions_mut().insert(priority);
        response.extensions_mut().insert(Transport::Quic);
        Ok(response)
    }
}

/// Reads a request's whole body into memory, so that it can be sent twice.
async fn buffer_request(
    request: http::Request<tonic::body::Body>,
) -> Result<http::Request<bytes::Bytes>, Status> {
    let (parts, body) = request.into_parts();
    let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
    Ok(http::Request::from_parts(parts, body))
}

fn full_body(bytes: bytes::Bytes) -> tonic::body::Body {
    tonic::body::Body::new(http_body_util::Full::new(bytes))
}

async fn call_tcp(
    channel: tonic::transport::Channel,
    request: http::Request<tonic::body::Body>,
    max_receive_message_size: usize,
    deadline: Option<Instant>,
) -> Result<http::Response<ResponseBody>, Status> {
    let (request, request_failure) = body::watch_request(request);
    let result = channel.oneshot(request).await;
    let mut response = match result {
        Ok(mut response) => {
            // A trailers-only response carries its status in the head.
            crate::stream::deadline_status(response.headers_mut(), deadline);
            response.map(|b| ResponseBody::tcp(b, max_receive_message_size, deadline))
        }
        // tonic's own deadline layer reports an expired deadline as CANCELLED; a status must
        // mean the same on both transports.
        Err(e) if deadline.is_some_and(|d| Instant::now() >= d) => {
            debug!("TCP call ended at its deadline: {e}");
            return Err(Status::deadline_exceeded("deadline exceeded"));
        }
        // A failed connection or TLS handshake (a refused client certificate, say): gRPC's
        // code for transport failures, with the whole chain of causes.
        Err(e) => {
            // The request body failed (a cancelled call, say) and hyper reports the reset that
            // caused: the caller gets the body's status, as over QUIC.
            if let Some(status) = lock(&request_failure).take() {
                debug!("TCP request body failed: {e}");
                return Err(status);
            }
            return Err(Status::unavailable(error_chain(&e)));
        }
    };
    response.extensions_mut().insert(Transport::Tcp);
    Ok(response)
}

/// The future of a call on a [`Channel`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, Status>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<ResponseBody>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Calls wait for a connection and for stream credit inside the call, bounded by their
        // deadline.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        ResponseFuture {
            inner: Box::pin(self.inner.clone().call(request)),
        }
    }
}
