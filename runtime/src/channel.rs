//! The client: [`Channel`], a tower service that tonic-generated clients run on.

use std::fmt;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::select_ok;
use http::Uri;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, warn};

use crate::config::{ConnectionConfig, DEFAULT_CONNECT_TIMEOUT};
use crate::stream::{
    AbortOnDrop, ClientCallParts, HeadError, RecvBody, RecvHalf, SendBodyError, SendHalf,
    check_status_fields, connection_status, malformed, read_head, send_body,
};
use crate::tls::{self, Certificate};
use crate::wire::code::{ErrorCode, grpc_code_for_reset};
use crate::wire::fields;
use crate::wire::frame::{self, Frame, FrameDecoder, FrameError};
use crate::{Error, Priority, method_info, timeout, wire};

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
/// Each call is one QUIC bidirectional stream. Clones share the connection; cloning is cheap.
/// When the connection is lost, the next call reconnects.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    host: String,
    port: u16,
    authority: String,
    server_name: String,
    config: ConnectionConfig,
    connect_timeout: Duration,
    current: Mutex<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
    /// Cancelled when the last clone of the channel is dropped, so background tasks let go
    /// of the connection and it closes once no call uses it.
    dropped: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

/// One QUIC connection and what the client knows about it.
#[derive(Clone)]
struct Conn {
    quic: quinn::Connection,
    /// Set when the server said GOAWAY: no new calls go on this connection.
    draining: Arc<AtomicBool>,
}

impl Conn {
    fn usable(&self) -> bool {
        self.quic.close_reason().is_none() && !self.draining.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("authority", &self.inner.authority)
            .field("server_name", &self.inner.server_name)
            .finish_non_exhaustive()
    }
}

/// The transport under a [`Channel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// quicrpc's native wire: one QUIC stream per call.
    Quic,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quic => "QUIC",
        })
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
        }
    }

    /// The transport this channel's calls use.
    pub fn transport(&self) -> Transport {
        Transport::Quic
    }

    /// The address of the server this channel is connected to, if it is connected.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.current().map(|c| c.quic.remote_address())
    }
}

impl ChannelBuilder {
    /// Trusts `cert` as a root for the server's certificate. Without any, the Mozilla roots
    /// (webpki-roots) are trusted.
    pub fn ca_certificate(mut self, cert: Certificate) -> Self {
        self.roots.push(cert);
        self
    }

    /// The name checked against the server's certificate. Default: the URI's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// How long a QUIC handshake may take before connecting fails. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a connection may sit without any packet from the server before it is
    /// considered dead. Default: 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How often to send a keep-alive when the connection is otherwise quiet, so that idle
    /// channels stay connected and NAT bindings stay open. `None` turns keep-alives off.
    /// Default: 10 s.
    pub fn keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.keep_alive_interval = interval;
        self
    }

    /// The largest response message accepted, in bytes; a larger one ends the call with
    /// RESOURCE_EXHAUSTED. Default: 4 MiB. The tonic client has its own limit
    /// (`max_decoding_message_size`, also 4 MiB by default): raise both.
    pub fn max_receive_message_size(mut self, bytes: usize) -> Self {
        self.config.max_receive_message_size = bytes;
        self
    }

    /// The largest response head or trailers accepted, in encoded bytes. Default: 16 KiB.
    pub fn max_header_list_size(mut self, bytes: usize) -> Self {
        self.config.max_header_list_size = bytes;
        self
    }

    /// Connects now, failing if the server cannot be reached.
    pub async fn connect(self) -> Result<Channel, Error> {
        let channel = self.build()?;
        let conn = channel.inner.connect_new().await?;
        channel.inner.install(conn);
        Ok(channel)
    }

    /// Builds the channel without connecting; the first call connects.
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
            return Err(invalid("the scheme must be https (QUIC always uses TLS)"));
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

        let tls = tls::client_config(&self.roots, &[wire::ALPN])?;
        let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| Error::Tls(format!("TLS config unusable for QUIC: {e}")))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic_tls));
        client_config.transport_config(Arc::new(self.config.client_transport()?));

        let endpoint = bind_client_endpoint()?;
        Ok(Channel {
            inner: Arc::new(Inner {
                endpoint,
                client_config,
                host,
                port,
                authority,
                server_name,
                config: self.config,
                connect_timeout: self.connect_timeout,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                dropped: CancellationToken::new(),
            }),
        })
    }
}

/// Binds a dual-stack client socket where the host has IPv6, an IPv4 one otherwise.
fn bind_client_endpoint() -> Result<quinn::Endpoint, Error> {
    let v6: SocketAddr = (std::net::Ipv6Addr::UNSPECIFIED, 0).into();
    let v4: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
    quinn::Endpoint::client(v6)
        .or_else(|_| quinn::Endpoint::client(v4))
        .map_err(|source| Error::Bind {
            addr: v4.to_string(),
            source,
        })
}

impl Inner {
    fn current(&self) -> Option<Conn> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn install(&self, conn: Conn) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
    }

    /// A usable connection: the current one, or a new one if it is closed or draining.
    async fn connection(&self) -> Result<Conn, Status> {
        if let Some(conn) = self.current().filter(Conn::usable) {
            return Ok(conn);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(conn) = self.current().filter(Conn::usable) {
            return Ok(conn);
        }
        let conn = self
            .connect_new()
            .await
            .map_err(|e| Status::unavailable(format!("cannot reach server: {e}")))?;
        self.install(conn.clone());
        Ok(conn)
    }

    /// Resolves the host and races a handshake to each of its addresses.
    async fn connect_new(&self) -> Result<Conn, Error> {
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
        let (quic, _) = select_ok(attempts).await?;
        debug!(remote = %quic.remote_address(), "QUIC connection established");
        let draining = Arc::new(AtomicBool::new(false));
        let watch = watch_control_stream(quic.clone(), draining.clone());
        let dropped = self.dropped.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = dropped.cancelled() => {}
                () = watch => {}
            }
        });
        Ok(Conn { quic, draining })
    }

    async fn handshake(&self, addr: SocketAddr) -> Result<quinn::Connection, Error> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, &self.server_name)
            .map_err(|e| Error::Tls(format!("cannot start a handshake with {addr}: {e}")))?;
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(Error::Connect { addr, source }),
            Err(_) => Err(Error::ConnectTimeout {
                addr,
                timeout: self.connect_timeout,
            }),
        }
    }

    async fn call(
        self: Arc<Self>,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<RecvBody>, Status> {
        let (parts, body) = request.into_parts();
        let deadline = match parts.headers.get("grpc-timeout") {
            Some(value) => match timeout::parse(value) {
                Some(t) => Some(Instant::now() + t),
                None => return Err(Status::internal("malformed grpc-timeout")),
            },
            None => None,
        };
        let path = parts.uri.path();
        let priority = parts
            .extensions
            .get::<Priority>()
            .copied()
            .or_else(|| method_info(path).map(|m| m.priority()))
            .unwrap_or_default();
        let head = fields::encode_request_head(
            path,
            Some(&self.authority),
            Some(priority),
            &parts.headers,
        );

        let call = async {
            let conn = self.connection().await?;
            let (send, recv) = conn
                .quic
                .open_bi()
                .await
                .map_err(|e| connection_status(&e))?;
            let send = SendHalf::new(send);
            send.set_priority(priority);
            let mut recv = RecvHalf::new(recv);

            // Send inline what is ready now (a whole unary request, usually); hand the rest to
            // a task so that requests stream while responses are read.
            let (error_tx, error_rx) = oneshot::channel();
            let mut sending = Box::pin(send_request(send, head, body, error_tx));
            let send_task = match poll_fn(|cx| Poll::Ready(sending.as_mut().poll(cx))).await {
                Poll::Ready(()) => None,
                Poll::Pending => Some(AbortOnDrop(tokio::spawn(sending))),
            };
            let mut parts = ClientCallParts {
                deadline: None,
                request_error: Some(error_rx),
                send_task,
            };

            let mut decoder = FrameDecoder::new(self.config.max_header_list_size);
            let mut buf = BytesMut::new();
            let block = tokio::select! {
                head = read_head(&mut recv, &mut decoder, &mut buf) => head.map_err(head_status)?,
                Some(status) = request_failure(&mut parts.request_error) => return Err(status),
            };
            let headers = fields::decode_fields(&block)
                .map_err(malformed)
                .and_then(|h| check_status_fields(&h).map(|()| h))
                .inspect_err(|_| recv.stop(ErrorCode::ProtocolError))?;
            let trailers_only = headers.contains_key("grpc-status");
            parts.deadline = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
            let body = RecvBody::client(
                recv,
                decoder,
                buf,
                self.config.max_receive_message_size,
                trailers_only,
                parts,
            );
            let mut response = http::Response::new(body);
            *response.version_mut() = http::Version::HTTP_2;
            *response.headers_mut() = headers;
            response.extensions_mut().insert(priority);
            Ok(response)
        };
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("deadline exceeded"))),
            None => call.await,
        }
    }
}

/// Resolves with the request's failure, if the request side reports one.
async fn request_failure(rx: &mut Option<oneshot::Receiver<Status>>) -> Option<Status> {
    let result = match rx {
        Some(rx) => rx.await,
        None => return std::future::pending().await,
    };
    *rx = None;
    match result {
        Ok(status) => Some(status),
        // The request went out whole: keep waiting for the response.
        Err(_) => std::future::pending().await,
    }
}

/// The status for a response whose head could not be read.
fn head_status(err: HeadError) -> Status {
    match err {
        HeadError::Frame(FrameError::FieldBlockTooLarge { len, limit }) => {
            Status::resource_exhausted(format!(
                "response head of {len} bytes exceeds the limit of {limit} bytes"
            ))
        }
        HeadError::NotHeaders => {
            Status::internal("protocol error: response did not start with HEADERS")
        }
        HeadError::Finished => Status::internal("protocol error: response ended before its head"),
        HeadError::Read(quinn::ReadError::Reset(code)) => {
            let code = code.into_inner();
            Status::new(
                grpc_code_for_reset(code),
                format!("stream reset by server (error code {code:#x})"),
            )
        }
        HeadError::Read(quinn::ReadError::ConnectionLost(e)) => connection_status(&e),
        HeadError::Read(e) => Status::unavailable(format!("reading response: {e}")),
    }
}

/// Sends a request: its head, then its body. Errors of the body itself go to `error_tx`, so
/// the call ends with them; errors of the stream show up on the response side.
async fn send_request(
    mut send: SendHalf,
    head: bytes::Bytes,
    body: tonic::body::Body,
    error_tx: oneshot::Sender<Status>,
) {
    match send_body(&mut send, vec![head], body).await {
        Ok(()) => {}
        Err(SendBodyError::Write(quinn::WriteError::Stopped(_))) => {
            // The server stopped reading: it has answered or is about to.
            send.abandon();
        }
        Err(SendBodyError::Write(e)) => debug!("request stream failed: {e}"),
        Err(SendBodyError::Body(status)) => {
            send.reset(ErrorCode::Cancelled);
            let _ = error_tx.send(status);
        }
    }
}

/// Reads the server's control streams: a GOAWAY marks the connection as draining, so new
/// calls open a new connection instead.
async fn watch_control_stream(conn: quinn::Connection, draining: Arc<AtomicBool>) {
    while let Ok(stream) = conn.accept_uni().await {
        let mut recv = RecvHalf::new(stream);
        match read_control_stream(&mut recv, &draining).await {
            Ok(()) => recv.set_drop_code(ErrorCode::NoError),
            Err(problem) => {
                warn!(remote = %conn.remote_address(), "{problem}");
                recv.set_drop_code(ErrorCode::ProtocolError);
            }
        }
    }
}

async fn read_control_stream(
    recv: &mut RecvHalf,
    draining: &AtomicBool,
) -> Result<(), &'static str> {
    let mut buf = BytesMut::new();
    let stream_type = loop {
        if let Some((stream_type, n)) = wire::varint::get(&buf) {
            bytes::Buf::advance(&mut buf, n);
            break stream_type;
        }
        match recv.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => return Ok(()),
        }
    };
    if stream_type != frame::CONTROL_STREAM {
        // Unknown unidirectional stream types are ignored, for extensions.
        return Ok(());
    }
    let mut decoder = FrameDecoder::new(1024);
    loop {
        while let Some(frame) = decoder
            .decode(&mut buf)
            .map_err(|_| "oversized frame on the control stream")?
        {
            match frame {
                Frame::GoAway => {
                    debug!("server sent GOAWAY");
                    draining.store(true, Ordering::Release);
                }
                _ => return Err("unexpected frame on the control stream"),
            }
        }
        match recv.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// The future of a call on a [`Channel`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<http::Response<RecvBody>, Status>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<RecvBody>, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<RecvBody>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Calls wait for stream credit inside the call, bounded by their deadline.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        ResponseFuture {
            inner: Box::pin(self.inner.clone().call(request)),
        }
    }
}
