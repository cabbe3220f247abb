//! The server: tonic services over QUIC (one stream per call) and over gRPC on TCP, on the
//! same port number.

pub(crate) mod budget;
mod builder;
mod credit;
mod dispatch;
mod h3;
mod layers;
mod quic;
mod quic_lb;
mod stats;
mod tcp;
mod turns;
mod validation;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

pub use self::builder::ServerBuilder;
use self::layers::LayerFn;
pub use self::layers::{HttpRequest, LayeredService};
use self::quic::serve_quic;
pub use self::quic_lb::QuicLbConfig;
pub use self::stats::ServerStats;
use self::tcp::serve_tcp;
pub use self::validation::AddressValidation;
use crate::Error;
use crate::config::ConnectionConfig;
use crate::tls::{Certificate, Identity};

/// How long a stopped server waits for its closed connections to say goodbye.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Serves tonic services over QUIC and, on the same port number, as plain gRPC over HTTP/2
/// and TLS on TCP, for clients that cannot use QUIC (the fallback of quicrpc's own
/// [`Channel`](crate::Channel), and gRPC clients in any language). The same services,
/// layers, limits and TLS rules apply on both.
///
/// ```no_run
/// # async fn run(identity: quicrpc::tls::Identity) -> Result<(), quicrpc::Error> {
/// let server = quicrpc::Server::builder()
///     .identity(identity)
///     // .add_service(GreeterServer::new(MyGreeter))
///     .bind("127.0.0.1:50051")
///     .await?;
/// server.serve().await?;
/// # Ok(()) }
/// ```
pub struct Server {
    quic: Option<quinn::Endpoint>,
    tcp: Option<tokio::net::TcpListener>,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    identity: Identity,
}

struct Shared {
    /// The services, wrapped in the user's layers: what every call on QUIC goes to.
    service: layers::Stack,
    /// The services alone, and the layers: the TCP side stacks them inside tonic's server.
    services: dispatch::Dispatch,
    layers: Vec<LayerFn>,
    config: ConnectionConfig,
    /// CAs that client certificates must chain to; empty when clients need none.
    client_roots: Vec<Certificate>,
    stats: ServerStats,
    max_connections: usize,
    /// What incomplete request messages may hold, per connection and in all.
    request_buffers: Arc<budget::RequestBuffers>,
    /// The most connections from one IP address, if limited.
    max_connections_per_address: Option<usize>,
    handshake_timeout: Duration,
    /// How long a graceful shutdown waits for calls under way.
    drain_timeout: Duration,
    /// When a connection is ended for its age, if ever.
    max_connection_age: Option<Duration>,
    address_validation: AddressValidation,
    /// The QUIC server config, for connections that need one of their own (qlog).
    #[cfg(feature = "qlog")]
    quic_config: Option<quinn::ServerConfig>,
    /// The QUIC server config for clients over loopback, where larger datagrams are searched
    /// for unless the largest UDP payload is set; `None` without QUIC.
    loopback_quic_config: Option<Arc<quinn::ServerConfig>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// Live counts of the server's open connections, for health checks, dashboards and
    /// tests. Take it before [`serve`](Self::serve), which consumes the server.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats.clone()
    }

    /// The address the server is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<(), Error> {
        self.serve_with_shutdown(std::future::pending()).await
    }

    /// Serves until `signal` completes, then shuts down gracefully on every transport:
    /// calls in flight finish, new calls are refused with UNAVAILABLE, and the future resolves
    /// once every connection has closed, or once the drain timeout
    /// ([`ServerBuilder::drain_timeout`]) has passed, closing what is left.
    pub async fn serve_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let Server {
            quic,
            tcp,
            local_addr,
            shared,
            identity,
        } = self;
        let shutdown = CancellationToken::new();
        let quic = async {
            let Some(endpoint) = quic else { return Ok(()) };
            let result = serve_quic(endpoint, local_addr, shared.clone(), shutdown.clone()).await;
            // Nor does it go on serving TCP alone when QUIC stops.
            if result.is_err() {
                shutdown.cancel();
            }
            result
        };
        let tcp = async {
            let Some(listener) = tcp else { return Ok(()) };
            let result = serve_tcp(listener, &shared, &identity, shutdown.clone()).await;
            // A failed TCP side takes the server down rather than leaving half of it up.
            shutdown.cancel();
            result
        };
        let signal = async {
            tokio::select! {
                () = signal => shutdown.cancel(),
                () = shutdown.cancelled() => {}
            }
        };
        let (quic, tcp, ()) = tokio::join!(quic, tcp, signal);
        info!(%local_addr, "server stopped");
        quic.and(tcp)
    }
}
