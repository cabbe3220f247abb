//! The server: tonic services, served one QUIC stream per call.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response, StatusCode};
use quinn::VarInt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tonic::body::Body as TonicBody;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tower::ServiceExt;
use tracing::{debug, info};

use crate::config::ConnectionConfig;
use crate::stream::{
    HeadError, RecvBody, RecvHalf, SendBodyError, SendHalf, normalize_status, read_head, send_body,
};
use crate::tls::{self, Identity};
use crate::wire::code::ErrorCode;
use crate::wire::fields;
use crate::wire::frame::{self, FrameDecoder, FrameError};
use crate::{Error, Transport, method_info, timeout, wire};

/// How long a stopped server waits for its closed connections to say goodbye.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Serves tonic services over QUIC.
///
/// ```no_run
/// # async fn run(identity: quicrpc::tls::Identity) -> Result<(), quicrpc::Error> {
/// let server = quicrpc::Server::builder()
///     .tls(identity)
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
    routes: Routes,
    config: ConnectionConfig,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Server`]. Created by [`Server::builder`].
pub struct ServerBuilder {
    identity: Option<Identity>,
    routes: RoutesBuilder,
    config: ConnectionConfig,
    quic: bool,
    tcp: bool,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("identity", &self.identity)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            identity: None,
            routes: RoutesBuilder::default(),
            config: ConnectionConfig::server_default(),
            quic: true,
            tcp: true,
        }
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
    /// once every connection has closed.
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
            if let Some(endpoint) = quic {
                serve_quic(endpoint, local_addr, shared.clone(), shutdown.clone()).await;
            }
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
        let ((), tcp, ()) = tokio::join!(quic, tcp, signal);
        info!(%local_addr, "server stopped");
        tcp
    }
}

/// Accepts QUIC connections until `shutdown`, then drains them.
async fn serve_quic(
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    info!(%local_addr, "serving QUIC");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    connections.spawn(serve_connection(incoming, shared.clone(), shutdown.clone()));
                }
                None => break,
            },
        }
    }
    info!(%local_addr, connections = connections.len(), "QUIC: draining connections");
    connections.close();
    let refuse_new = async {
        while let Some(incoming) = endpoint.accept().await {
            incoming.refuse();
        }
    };
    tokio::select! {
        () = connections.wait() => {}
        () = refuse_new => {}
    }
    endpoint.close(
        VarInt::from_u32(ErrorCode::NoError.to_u32()),
        b"server shut down",
    );
    let _ = tokio::time::timeout(CLOSE_LINGER, endpoint.wait_idle()).await;
}

/// Serves plain gRPC over HTTP/2 and TLS with tonic until `shutdown`, then drains.
async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: &Shared,
    identity: &Identity,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let local_addr = listener.local_addr().ok();
    let tls = tonic::transport::ServerTlsConfig::new().identity(identity.to_tonic());
    let mut server = tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(|e| Error::Tls(format!("TCP side: {e}")))?
        .max_concurrent_streams(shared.config.max_concurrent_streams)
        .http2_max_header_list_size(
            u32::try_from(shared.config.max_header_list_size).unwrap_or(u32::MAX),
        )
        .http2_keepalive_interval(shared.config.keep_alive_interval)
        .tcp_nodelay(true);
    info!(?local_addr, "serving gRPC over TCP (HTTP/2, TLS)");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .add_routes(shared.routes.clone())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}

impl ServerBuilder {
    /// The certificate chain and key the server presents. Required.
    pub fn tls(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Which transports to serve. Default: both QUIC (on UDP) and gRPC over HTTP/2 (on TCP),
    /// on the same port number.
    pub fn transports(mut self, transports: impl IntoIterator<Item = Transport>) -> Self {
        self.quic = false;
        self.tcp = false;
        for transport in transports {
            match transport {
                Transport::Quic => self.quic = true,
                Transport::Tcp => self.tcp = true,
            }
        }
        self
    }

    /// Adds a tonic service, such as a generated `FooServer`.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower_service::Service<
                Request<TonicBody>,
                Response = Response<TonicBody>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self
    }

    /// The most calls one connection may have in flight; a client that wants more waits
    /// for a call to end. Default: 1024 (quinn's own default is 100).
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.config.max_concurrent_streams = streams;
        self
    }

    /// The largest request message accepted, in bytes; a larger one ends the call with
    /// RESOURCE_EXHAUSTED. Default: 4 MiB. Generated `FooServer`s have their own limit
    /// (`max_decoding_message_size`, also 4 MiB by default): raise both.
    pub fn max_receive_message_size(mut self, bytes: usize) -> Self {
        self.config.max_receive_message_size = bytes;
        self
    }

    /// The largest request head accepted, in encoded bytes; a larger one ends the call with
    /// RESOURCE_EXHAUSTED. Default: 16 KiB.
    pub fn max_header_list_size(mut self, bytes: usize) -> Self {
        self.config.max_header_list_size = bytes;
        self
    }

    /// How long a connection may sit without any packet from the client before it is
    /// closed and its state freed. Default: 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
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
            return Err(Error::Config("no transport enabled".into()));
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
        let sock_err = |source| Error::Bind {
            addr: "given socket".into(),
            source,
        };
        let local_addr = match (&udp, &tcp) {
            (Some(udp), _) => udp.local_addr().map_err(sock_err)?,
            (None, Some(tcp)) => tcp.local_addr().map_err(sock_err)?,
            (None, None) => return Err(Error::Config("no socket given".into())),
        };
        let quic = match udp {
            Some(udp) => {
                let tls = tls::server_config(&identity, &[wire::ALPN])?;
                let quic_tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
                    .map_err(|e| Error::Tls(format!("TLS config unusable for QUIC: {e}")))?;
                let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
                server_config.transport_config(Arc::new(self.config.server_transport()?));
                let runtime = Arc::new(quinn::TokioRuntime);
                let endpoint = quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    Some(server_config),
                    udp,
                    runtime,
                )
                .map_err(sock_err)?;
                Some(endpoint)
            }
            None => None,
        };
        let tcp = match tcp {
            Some(tcp) => {
                tcp.set_nonblocking(true).map_err(sock_err)?;
                Some(tokio::net::TcpListener::from_std(tcp).map_err(sock_err)?)
            }
            None => None,
        };
        Ok(Server {
            quic,
            tcp,
            local_addr,
            shared: Arc::new(Shared {
                routes: self.routes.routes().prepare(),
                config: self.config,
            }),
            identity,
        })
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            debug!(%remote, "handshake failed: {e}");
            return;
        }
    };
    debug!(%remote, "connection accepted");
    let calls = TaskTracker::new();
    let mut draining = false;
    loop {
        tokio::select! {
            // Shutdown first: a call that arrives after the signal is refused, not served.
            biased;
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                calls.close();
                tokio::spawn(send_goaway(conn.clone()));
            }
            () = calls.wait(), if draining => {
                conn.close(VarInt::from_u32(ErrorCode::NoError.to_u32()), b"server shut down");
                break;
            }
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) if draining => {
                    // Not processed: the client may safely retry it elsewhere.
                    let mut send = SendHalf::new(send);
                    send.reset(ErrorCode::RefusedStream);
                    RecvHalf::new(recv).stop(ErrorCode::RefusedStream);
                }
                Ok((send, recv)) => {
                    calls.spawn(serve_call(send, recv, shared.clone(), remote));
                }
                Err(e) => {
                    debug!(%remote, "connection closed: {e}");
                    break;
                }
            },
        }
    }
}

/// Tells the client that this connection takes no new calls.
async fn send_goaway(conn: quinn::Connection) {
    let Ok(stream) = conn.open_uni().await else {
        return;
    };
    let mut send = SendHalf::new(stream);
    let mut prefix = BytesMut::new();
    wire::varint::put(&mut prefix, frame::CONTROL_STREAM);
    let mut frames = [prefix.freeze(), frame::encode(frame::GOAWAY, b"")];
    if send.write(&mut frames).await.is_ok() {
        send.finish();
    }
}

async fn serve_call(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    shared: Arc<Shared>,
    remote: SocketAddr,
) {
    let mut send = SendHalf::new(send);
    let cancelled = send.stopped();
    tokio::select! {
        biased;
        () = handle_call(&mut send, recv, &shared, remote) => {}
        () = cancelled => {
            // The client stopped the call or vanished: dropping the call drops the handler.
            // The drop of `send` resets the stream.
            debug!(%remote, "call cancelled by the client");
        }
    }
}

async fn handle_call(
    send: &mut SendHalf,
    recv: quinn::RecvStream,
    shared: &Shared,
    remote: SocketAddr,
) {
    let mut recv = RecvHalf::new(recv);
    let mut decoder = FrameDecoder::new(shared.config.max_header_list_size);
    let mut buf = BytesMut::new();
    let block = match read_head(&mut recv, &mut decoder, &mut buf).await {
        Ok(block) => block,
        Err(HeadError::Frame(FrameError::FieldBlockTooLarge { len, limit })) => {
            let status = Status::resource_exhausted(format!(
                "request metadata of {len} bytes exceeds the limit of {limit} bytes"
            ));
            return reject(send, recv, status).await;
        }
        Err(HeadError::NotHeaders) => {
            return reject(
                send,
                recv,
                Status::internal("protocol error: request did not start with HEADERS"),
            )
            .await;
        }
        Err(HeadError::Finished) => {
            return reject(
                send,
                recv,
                Status::internal("protocol error: request ended before its head"),
            )
            .await;
        }
        Err(HeadError::Read(e)) => {
            debug!(%remote, "request stream failed before its head: {e}");
            send.reset(ErrorCode::Cancelled);
            return;
        }
    };
    let head = match fields::decode_request_head(&block) {
        Ok(head) => head,
        Err(e) => {
            let status = Status::internal(format!("protocol error: malformed request head: {e}"));
            return reject(send, recv, status).await;
        }
    };
    let priority = head
        .priority
        .or_else(|| method_info(&head.path).map(|m| m.priority()))
        .unwrap_or_default();
    send.set_priority(priority);
    let deadline = match head.fields.get("grpc-timeout") {
        Some(value) => match timeout::parse(value) {
            Some(t) => Some(Instant::now() + t),
            None => return reject(send, recv, Status::internal("malformed grpc-timeout")).await,
        },
        None => None,
    };
    let Ok(uri) = http::Uri::try_from(head.path.as_str()) else {
        return reject(
            send,
            recv,
            Status::internal("protocol error: invalid :path"),
        )
        .await;
    };

    let body = RecvBody::server(recv, decoder, buf, shared.config.max_receive_message_size);
    let mut request = Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = head.fields;
    request.extensions_mut().insert(priority);
    request
        .extensions_mut()
        .insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(remote),
        });

    let respond = async {
        let response = match shared.routes.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        write_response(send, response).await;
    };
    match deadline {
        None => respond.await,
        Some(deadline) => {
            if tokio::time::timeout_at(deadline, respond).await.is_err() {
                // The handler has been dropped; tell the client why.
                send.send_status(
                    &Status::deadline_exceeded("deadline exceeded"),
                    ErrorCode::DeadlineExceeded,
                )
                .await;
            }
        }
    }
}

/// Answers a call that cannot be dispatched with `status` (trailers-only).
async fn reject(send: &mut SendHalf, mut recv: RecvHalf, status: Status) {
    debug!(code = ?status.code(), message = status.message(), "rejecting call");
    recv.stop(ErrorCode::NoError);
    send.send_status(&status, ErrorCode::ProtocolError).await;
}

async fn write_response(send: &mut SendHalf, response: Response<TonicBody>) {
    let (mut parts, body) = response.into_parts();
    normalize_status(&mut parts.headers);
    if parts.status != StatusCode::OK {
        return send
            .send_status(&status_for_http(parts.status), ErrorCode::InternalError)
            .await;
    }
    let head = fields::encode_fields(frame::HEADERS, &parts.headers);
    if parts.headers.contains_key("grpc-status") && http_body::Body::is_end_stream(&body) {
        if send.write(&mut [head]).await.is_ok() {
            send.finish();
        }
        return;
    }
    match send_body(send, vec![head], body).await {
        Ok(()) => {}
        Err(SendBodyError::Write(e)) => debug!("response stream failed: {e}"),
        Err(SendBodyError::Body(status)) => {
            send.send_status(&status, ErrorCode::InternalError).await
        }
    }
}

/// The gRPC status for a non-200 HTTP response from a service (gRPC's HTTP-to-status table).
fn status_for_http(status: StatusCode) -> Status {
    let message = format!("service answered HTTP {status}");
    match status {
        StatusCode::BAD_REQUEST => Status::internal(message),
        StatusCode::UNAUTHORIZED => Status::unauthenticated(message),
        StatusCode::FORBIDDEN => Status::permission_denied(message),
        StatusCode::NOT_FOUND => Status::unimplemented(message),
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Status::unavailable(message),
        _ => Status::unknown(message),
    }
}
