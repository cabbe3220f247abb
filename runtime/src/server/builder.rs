//! [`ServerBuilder`]: everything a [`Server`] is configured with, and binding it.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tonic::body::Body as TonicBody;
use tonic::server::NamedService;
use tracing::debug;

use super::budget;
use super::credit::StreamCredit;
use super::dispatch::Services;
use super::layers::{self, HttpRequest, LayerFn, LayeredService};
use super::{AddressValidation, QuicLbConfig, Server, ServerStats, Shared};
use crate::config::{ConnectionConfig, connection_setters};
use crate::tls::{self, Certificate, Identity};
use crate::{Error, Transport, wire};

/// Configures a [`Server`]. Created by [`Server::builder`].
pub struct ServerBuilder {
    identity: Option<Identity>,
    services: Services,
    config: ConnectionConfig,
    quic: bool,
    tcp: bool,
    zero_rtt: bool,
    client_roots: Vec<Certificate>,
    layers: Vec<LayerFn>,
    max_connections: usize,
    max_connections_per_address: Option<usize>,
    request_buffer_per_connection: usize,
    request_buffer_total: usize,
    handshake_timeout: Duration,
    drain_timeout: Duration,
    max_connection_age: Option<Duration>,
    address_validation: AddressValidation,
    quic_lb: Option<QuicLbConfig>,
}

/// Default limit on open connections, QUIC and TCP together.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default memory for incomplete request messages, per connection: eight messages at the
/// default receive limit.
const DEFAULT_REQUEST_BUFFER_PER_CONNECTION: usize = 32 << 20;
/// Default memory for incomplete request messages, all connections together.
const DEFAULT_REQUEST_BUFFER_TOTAL: usize = 512 << 20;

/// Default time a client has to complete its TLS handshake.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful shutdown waits for calls under way before it closes what is left.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("identity", &self.identity)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    pub(super) fn new() -> Self {
        Self {
            identity: None,
            services: Services::default(),
            config: ConnectionConfig::server_default(),
            quic: true,
            tcp: true,
            zero_rtt: true,
            client_roots: Vec::new(),
            layers: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: None,
            request_buffer_per_connection: DEFAULT_REQUEST_BUFFER_PER_CONNECTION,
            request_buffer_total: DEFAULT_REQUEST_BUFFER_TOTAL,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_connection_age: None,
            address_validation: AddressValidation::default(),
            quic_lb: None,
        }
    }

    /// The certificate chain and key the server presents, on QUIC and on TCP. Required: a
    /// server without one fails to bind with [`Error::MissingIdentity`].
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The old name of [`identity`](Self::identity).
    #[deprecated(
        since = "0.1.0",
        note = "renamed to `identity`, as on `ChannelBuilder`"
    )]
    #[must_use]
    pub fn tls(self, identity: Identity) -> Self {
        self.identity(identity)
    }

    /// Which transports to serve. Default: both QUIC (on UDP) and gRPC over HTTP/2 (on TCP),
    /// on the same port number. The QUIC endpoint speaks quicrpc's native wire and gRPC over
    /// HTTP/3 alike, so [`Transport::Http3`] also serves QUIC.
    #[must_use]
    pub fn transports(mut self, transports: impl IntoIterator<Item = Transport>) -> Self {
        self.quic = false;
        self.tcp = false;
        for transport in transports {
            match transport {
                Transport::Quic | Transport::Http3 => self.quic = true,
                Transport::Tcp => self.tcp = true,
            }
        }
        self
    }

    /// Adds a tonic service, such as a generated `FooServer`. Calls reach it by the service
    /// name in their path, `/package.Service/Method`; a path that names no added service is
    /// UNIMPLEMENTED, on both transports.
    ///
    /// # Panics
    ///
    /// If a service of the same name was added already (as tonic's `Server` does).
    #[must_use]
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower_service::Service<Request<TonicBody>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        self.services.add(service);
        self
    }

    /// The most calls one connection may have in flight; a client that wants more waits
    /// for a call to end. Default: 1024 (quinn's own default is 100).
    ///
    /// Memory: quinn sets up every stream a QUIC connection allows when it allows it (about
    /// 86 bytes each), so a connection starts with credit for 128 calls, doubled whenever
    /// more than half is in use, up to this limit; a burst beyond the credit waits a round
    /// trip for more (docs/tuning.md).
    #[must_use]
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.config.max_concurrent_streams = streams;
        self
    }

    connection_setters! {
        peer: "client",
        incoming: "request",
        keep_alive: "Default: none (clients send keep-alives every 10 s).",
        tonic_limit: "Generated `FooServer`s have their own limit (`max_decoding_message_size`, \
            also 4 MiB by default): raise both.",
    }

    /// The most connections the server keeps open, QUIC and TCP together. Default: 10,000.
    /// Past it, a new QUIC connection attempt is refused at once (the client sees its
    /// connection refused: UNAVAILABLE) and a new TCP connection is closed once its TLS
    /// handshake completes (TCP connections count from then). Either transport may hold at
    /// most nine tenths of them, so that the other always has room. See [`Server::stats`]
    /// for the counts.
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// The most connections the server keeps open from one IP address, QUIC and TCP
    /// together, so that one client cannot take the whole of
    /// [`max_connections`](Self::max_connections). Past it, that address's new connections
    /// are refused as those past `max_connections` are. Default: none. Clients behind one
    /// NAT share an address: leave room for them.
    #[must_use]
    pub fn max_connections_per_address(mut self, connections: usize) -> Self {
        self.max_connections_per_address = Some(connections);
        self
    }

    /// How much memory incomplete request messages may hold on one connection. A request
    /// message is buffered whole before its handler sees it, and room for it is taken when
    /// its 5-byte prefix declares its length; from then until its last byte has come it
    /// counts at that length against this budget and against
    /// [`request_buffer_total`](Self::request_buffer_total). A call whose message does not
    /// fit ends with RESOURCE_EXHAUSTED; the others go on. Messages that arrive in one piece
    /// never count. Default: 32 MiB; never less than one message at the receive limit.
    #[must_use]
    pub fn request_buffer_per_connection(mut self, bytes: usize) -> Self {
        self.request_buffer_per_connection = bytes;
        self
    }

    /// How much memory incomplete request messages may hold on all connections together,
    /// on both transports, as [`request_buffer_per_connection`](Self::request_buffer_per_connection)
    /// counts it. Default: 512 MiB; never less than the per-connection budget.
    #[must_use]
    pub fn request_buffer_total(mut self, bytes: usize) -> Self {
        self.request_buffer_total = bytes;
        self
    }

    /// How long a graceful shutdown ([`Server::serve_with_shutdown`]) waits for calls under
    /// way to finish, on both transports. After it, the calls left are reset and their
    /// connections closed, so that shutdown ends even if a client keeps a stream open.
    /// Default: 30 s.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Ends every connection once it is this old, on both transports: the server says
    /// GOAWAY (clients move new calls to a new connection), lets the calls under way finish
    /// for up to the drain timeout ([`drain_timeout`](Self::drain_timeout)), then closes it.
    /// For spreading clients over servers behind a load balancer, and bounding how long a
    /// connection keeps what it holds. Default: none, connections live as long as they are
    /// used.
    #[must_use]
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// How long a client may take to complete its TLS handshake, on QUIC and TCP; a
    /// connection still handshaking after that is closed. Also how long a QUIC call's
    /// stream may take to bring its whole head; a stream without one by then is reset with
    /// DEADLINE_EXCEEDED. Default: 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// When QUIC clients must prove their address with a Retry round trip before the server
    /// works on their handshake. Default: while 64 or more handshakes are under way
    /// ([`AddressValidation::UnderLoad`]), so that a flood of spoofed connection attempts
    /// cannot use the server to amplify traffic. [`ServerStats::retries_sent`] counts them.
    #[must_use]
    pub fn address_validation(mut self, policy: AddressValidation) -> Self {
        self.address_validation = policy;
        self
    }

    /// Puts a server ID in every QUIC connection ID the server issues, in QUIC-LB's plaintext
    /// format (draft-ietf-quic-load-balancers), so that a UDP load balancer that reads it can
    /// route a client's packets here after the client's address changes (NAT rebinding,
    /// migration), where routing by address would send them to another server. This covers
    /// the connection ID of the handshake and of a Retry and those sent later in
    /// NEW_CONNECTION_ID frames. Default: none, quinn's own connection IDs (8
    /// random-looking bytes). A configuration outside the draft's limits fails
    /// [`bind`](Self::bind) with [`Error::Config`]. See docs/deployment.md.
    #[must_use]
    pub fn quic_lb(mut self, config: QuicLbConfig) -> Self {
        self.quic_lb = Some(config);
        self
    }

    /// Wraps every service, on both transports, in a tower `layer`: a timeout, a concurrency
    /// limit, authentication from metadata, anything written for tonic's `Server::layer`.
    /// The first layer added is the outermost. A layer sees each call as an
    /// `http::Request<tonic::body::Body>`; an error it returns reaches the client as a gRPC
    /// status (a `tonic::Status` as it is, anything else as UNKNOWN with its message), the
    /// same on QUIC and TCP.
    ///
    /// A layer that wraps the response body must forward `is_end_stream`: over HTTP/2, a
    /// body that does not say it is empty turns a trailers-only response (an error status)
    /// into a head, an empty DATA frame and trailers, which tonic accepts and grpcio refuses
    /// ("Stream removed").
    ///
    /// ```
    /// # fn run(identity: quicrpc::tls::Identity) {
    /// let builder = quicrpc::Server::builder()
    ///     .identity(identity)
    ///     .layer(tower::limit::ConcurrencyLimitLayer::new(64));
    /// # }
    /// ```
    #[must_use]
    pub fn layer<L, B>(mut self, layer: L) -> Self
    where
        L: tower::Layer<LayeredService> + Send + Sync + 'static,
        L::Service: tower_service::Service<HttpRequest, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower_service::Service<HttpRequest>>::Future: Send + 'static,
        <L::Service as tower_service::Service<HttpRequest>>::Error:
            Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.layers.push(layers::boxed(layer));
        self
    }

    /// Requires every client to present a certificate that chains to `ca` (mutual TLS), on
    /// QUIC and on TCP; may be called more than once to trust several CAs. A client without
    /// a valid certificate fails its TLS handshake. Handlers find the verified chain in each
    /// request's extensions as [`PeerCertificates`](crate::tls::PeerCertificates).
    ///
    /// QUIC calls then wait for the handshake to complete (client authentication is part of
    /// it), so there is no 0-RTT or 0.5-RTT with mutual TLS.
    #[must_use]
    pub fn client_ca_certificate(mut self, ca: Certificate) -> Self {
        self.client_roots.push(ca);
        self
    }

    /// Whether resumed QUIC clients may send calls as 0-RTT early data. Default: `true`.
    ///
    /// Early data can be replayed by an attacker, so the server runs a call from it only if
    /// its method is declared `NO_SIDE_EFFECTS` or `IDEMPOTENT` (the standard
    /// `idempotency_level` option); any other call that arrives as early data is refused with
    /// TOO_EARLY, before its handler runs, and the client sends it again after the handshake.
    /// Handlers see [`ZeroRtt::Accepted`](crate::ZeroRtt::Accepted) in a request's
    /// extensions when it came as early data. With `false`, sessions still resume (saving the
    /// certificate exchange) but every call waits for the handshake.
    #[must_use]
    pub fn zero_rtt(mut self, enabled: bool) -> Self {
        self.zero_rtt = enabled;
        self
    }

    /// Binds the server: QUIC on UDP and gRPC over TCP on the same port number (or only the
    /// transports chosen with [`transports`](Self::transports)). `addr` may name port 0; the
    /// port picked is free on both protocols. A port taken on either protocol is an error, and
    /// nothing stays bound.
    pub async fn bind(
        self,
        addr: impl tokio::net::ToSocketAddrs + fmt::Debug,
    ) -> Result<Server, Error> {
        let shown = format!("{addr:?}");
        let addr = tokio::net::lookup_host(addr)
            .await
            .map_err(|source| Error::Resolve {
                host: shown.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| Error::Resolve {
                host: shown.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
            })?;
        if !self.quic && !self.tcp {
            return Err(Error::config("no transport enabled"));
        }
        // With port 0, the port the UDP socket got may be taken on TCP: try a few.
        let mut tries_left = 16;
        loop {
            let bind_err = |proto: &str, source| Error::Bind {
                addr: format!("{addr} ({proto})"),
                source,
            };
            let udp = match self.quic {
                true => Some(std::net::UdpSocket::bind(addr).map_err(|e| bind_err("UDP", e))?),
                false => None,
            };
            let port = match &udp {
                Some(udp) => udp.local_addr().map_err(|e| bind_err("UDP", e))?.port(),
                None => addr.port(),
            };
            let tcp = match self.tcp {
                true => match std::net::TcpListener::bind((addr.ip(), port)) {
                    Ok(listener) => Some(listener),
                    Err(e) if udp.is_some() && addr.port() == 0 && tries_left > 0 => {
                        debug!("port {port} is free on UDP but not on TCP ({e}): trying another");
                        tries_left -= 1;
                        continue;
                    }
                    Err(e) => return Err(bind_err("TCP", e)),
                },
                false => None,
            };
            return self.bind_sockets(udp, tcp);
        }
    }

    /// Serves on sockets bound elsewhere (another network namespace, socket activation): a
    /// UDP socket for QUIC, a TCP listener for gRPC over HTTP/2, or both. Must be called
    /// inside a Tokio runtime.
    pub fn bind_sockets(
        self,
        udp: Option<std::net::UdpSocket>,
        tcp: Option<std::net::TcpListener>,
    ) -> Result<Server, Error> {
        let identity = self.identity.ok_or(Error::MissingIdentity)?;
        if let Some(quic_lb) = &self.quic_lb {
            quic_lb.validate()?;
        }
        let sock_err = |source| Error::Bind {
            addr: "given socket".into(),
            source,
        };
        let local_addr = match (&udp, &tcp) {
            (Some(udp), _) => udp.local_addr().map_err(sock_err)?,
            (None, Some(tcp)) => tcp.local_addr().map_err(sock_err)?,
            (None, None) => return Err(Error::config("no socket given")),
        };
        #[cfg(feature = "qlog")]
        let mut quic_config = None;
        let mut loopback_quic_config = None;
        let quic = match udp {
            Some(udp) => {
                let tls = tls::server_config(
                    &identity,
                    &[wire::ALPN, crate::http3::ALPN],
                    self.zero_rtt,
                    &self.client_roots,
                )?;
                let quic_tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
                    .map_err(|e| Error::tls_caused("TLS config unusable for QUIC", e))?;
                let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
                let streams = StreamCredit::new(self.config.max_concurrent_streams).limit();
                server_config.transport_config(Arc::new(self.config.server_transport(streams)?));
                #[cfg(feature = "qlog")]
                {
                    quic_config = Some(server_config.clone());
                }
                let mut loopback = server_config.clone();
                let transport = self.config.server_transport(streams)?;
                loopback.transport_config(Arc::new(self.config.over_loopback(transport)));
                loopback_quic_config = Some(Arc::new(loopback));
                let mut endpoint_config = self.config.endpoint_config();
                if let Some(quic_lb) = self.quic_lb.clone() {
                    // quinn asks this for every connection ID the endpoint issues.
                    endpoint_config.cid_generator(move || Box::new(quic_lb.generator()));
                }
                let runtime = Arc::new(quinn::TokioRuntime);
                let endpoint =
                    quinn::Endpoint::new(endpoint_config, Some(server_config), udp, runtime)
                        .map_err(sock_err)?;
                Some(endpoint)
            }
            None => None,
        };
        let tcp = match tcp {
            Some(tcp) => {
                // On the listener before anyone can learn its port: the kernel completes
                // handshakes without waiting for accept(), and a connection it takes in before
                // this is set keeps the host's controller (seen in CI, where serving began
                // on a busy runtime after the test's client had connected).
                crate::config::set_tcp_congestion(
                    socket2::SockRef::from(&tcp),
                    self.config.tcp_congestion_control.as_deref(),
                );
                tcp.set_nonblocking(true).map_err(sock_err)?;
                Some(tokio::net::TcpListener::from_std(tcp).map_err(sock_err)?)
            }
            None => None,
        };
        let services = self.services.dispatch();
        // One message at the receive limit always fits, prefix included.
        let one_message = self
            .config
            .max_receive_message_size
            .saturating_add(crate::wire::message::PREFIX_LEN);
        let per_connection = self.request_buffer_per_connection.max(one_message);
        let total = self.request_buffer_total.max(per_connection);
        let stats = ServerStats::default();
        let request_buffers = budget::RequestBuffers::new(per_connection, total, stats.clone());
        Ok(Server {
            quic,
            tcp,
            local_addr,
            shared: Arc::new(Shared {
                service: layers::Stack::new(services.clone(), &self.layers),
                services,
                layers: self.layers,
                config: self.config,
                client_roots: self.client_roots,
                stats,
                max_connections: self.max_connections,
                max_connections_per_address: self.max_connections_per_address,
                request_buffers,
                handshake_timeout: self.handshake_timeout,
                drain_timeout: self.drain_timeout,
                max_connection_age: self.max_connection_age,
                address_validation: self.address_validation,
                #[cfg(feature = "qlog")]
                quic_config,
                loopback_quic_config,
            }),
            identity,
        })
    }
}
