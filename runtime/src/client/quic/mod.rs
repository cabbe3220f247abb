//! The QUIC side of the client: connecting, and one call per bidirectional stream.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::select_ok;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, warn};

#[cfg(feature = "qlog")]
use crate::config::ConnectionConfig;
use crate::stream::{
    AbortOnDrop, ClientCallParts, HeadError, RecvBody, RecvHalf, SendBodyError, SendHalf,
    check_status_fields, connection_status, malformed, read_head, send_body,
};
use crate::telemetry::{Side, sample_connection};
use crate::tls;
use crate::wire::code::{ErrorCode, grpc_code_for_reset};
use crate::wire::fields;
use crate::wire::frame::{self, Frame, FrameDecoder, FrameError};
use crate::{Error, Priority, wire};

/// Everything needed to open QUIC connections to one server.
pub(super) struct QuicConnector {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    host: String,
    port: u16,
    server_name: String,
    connect_timeout: Duration,
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
}

impl Conn {
    /// Whether new calls may use this connection.
    pub(super) fn usable(&self) -> bool {
        self.quic.close_reason().is_none() && !self.draining.load(Ordering::Acquire)
    }

    /// Whether a stream opened now would carry 0-RTT early data.
    pub(super) fn in_early_data(&self) -> bool {
        !*self.handshake_over.borrow()
    }

    /// Waits until the handshake has completed or failed, or the connection has closed.
    /// Costs nothing for a connection whose handshake is long over, as for most calls.
    pub(super) async fn handshake_over(&self) {
        if !self.in_early_data() {
            return;
        }
        let mut over = self.handshake_over.clone();
        tokio::select! {
            // An error means the watcher is gone, which it is only once the handshake is over.
            _ = over.wait_for(|over| *over) => {}
            _ = self.quic.closed() => {}
        }
    }

    /// Stops new calls from using this connection.
    pub(super) fn retire(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// TLS configs for QUIC, shared by every channel with the same trust roots and session
/// settings: rustls resumes a session only under the verifier that made it, so sharing is
/// what lets a new channel to a server resume an earlier channel's session (and send 0-RTT).
type TlsKey = (Vec<Vec<u8>>, usize, bool, Vec<Vec<u8>>, bool);
static SHARED_TLS: LazyLock<Mutex<HashMap<TlsKey, Arc<quinn::crypto::rustls::QuicClientConfig>>>> =
    LazyLock::new(Default::default);

fn shared_tls(
    builder: &super::ChannelBuilder,
) -> Result<Arc<quinn::crypto::rustls::QuicClientConfig>, Error> {
    let der = |certs: &[rustls_pki_types::CertificateDer<'static>]| -> Vec<Vec<u8>> {
        certs.iter().map(|c| c.to_vec()).collect()
    };
    let key: TlsKey = (
        builder.roots.iter().flat_map(|c| der(c.certs())).collect(),
        builder.session_cache,
        builder.zero_rtt,
        builder
            .identity
            .as_ref()
            .map(|i| der(i.chain()))
            .unwrap_or_default(),
        builder.accept_invalid_certificates,
    );
    let mut shared = SHARED_TLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(config) = shared.get(&key) {
        return Ok(config.clone());
    }
    let tls = tls::client_config(
        &builder.roots,
        &[wire::ALPN],
        builder.session_cache,
        builder.zero_rtt,
        builder.identity.as_ref(),
        builder.accept_invalid_certificates,
    )?;
    let quic_tls = Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| Error::Tls(format!("TLS config unusable for QUIC: {e}")))?,
    );
    shared.insert(key, quic_tls.clone());
    Ok(quic_tls)
}

impl QuicConnector {
    /// A connector to `host:port` (certificate checked against `server_name`) with the
    /// builder's TLS, connection and 0-RTT settings.
    pub(super) fn new(
        builder: &super::ChannelBuilder,
        host: String,
        port: u16,
        server_name: String,
    ) -> Result<Self, Error> {
        let quic_tls = shared_tls(builder)?;
        let mut client_config = quinn::ClientConfig::new(quic_tls);
        client_config.transport_config(Arc::new(builder.config.client_transport()?));
        Ok(Self {
            endpoint: bind_client_endpoint()?,
            client_config,
            host,
            port,
            server_name,
            connect_timeout: builder.connect_timeout,
            #[cfg(feature = "qlog")]
            config: builder.config.clone(),
        })
    }

    /// Resolves the host and races a handshake to each of its addresses. The connection's
    /// control stream is watched until it closes or `dropped` is cancelled.
    ///
    /// With a session ticket for the server, the connection is returned at once, its
    /// handshake still under way ([`Conn::in_early_data`]): calls that may go as 0-RTT early
    /// data go now, others wait for [`Conn::handshake_over`].
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
        match early {
            Some(accepted) => {
                debug!(remote = %quic.remote_address(), "QUIC connection resumed: 0-RTT");
                tokio::spawn(confirm_handshake(
                    quic.clone(),
                    accepted,
                    self.connect_timeout,
                    over_tx,
                ));
            }
            None => debug!(remote = %quic.remote_address(), "QUIC connection established"),
        }
        let draining = Arc::new(AtomicBool::new(false));
        let watch = watch_control_stream(quic.clone(), draining.clone());
        let stats = sample_connection(quic.clone(), Side::Client);
        tokio::spawn(async move {
            tokio::select! {
                () = dropped.cancelled() => {}
                ((), ()) = async { tokio::join!(watch, stats) } => {}
            }
        });
        Ok(Conn {
            quic,
            draining,
            handshake_over,
        })
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
        #[allow(unused_mut)] // mutated with the qlog feature
        let mut client_config = self.client_config.clone();
        #[cfg(feature = "qlog")]
        if let Some(transport) = self.config.qlog_transport("client")? {
            client_config.transport_config(Arc::new(transport));
        }
        let connecting = self
            .endpoint
            .connect_with(client_config, addr, &self.server_name)
            .map_err(|e| Error::Tls(format!("cannot start a handshake with {addr}: {e}")))?;
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
) {
    let outcome = match tokio::time::timeout(timeout, accepted).await {
        Ok(true) => "accepted",
        Ok(false) if conn.close_reason().is_none() => "rejected",
        Ok(false) => "failed",
        Err(_) => {
            conn.close(
                quinn::VarInt::from_u32(ErrorCode::NoError.to_u32()),
                b"handshake timed out",
            );
            "failed"
        }
    };
    debug!(remote = %conn.remote_address(), outcome, "0-RTT handshake over");
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

/// A call's request, ready for the wire.
pub(super) struct QuicRequest {
    pub(super) head: bytes::Bytes,
    pub(super) body: tonic::body::Body,
    pub(super) priority: Priority,
    pub(super) max_header_list_size: usize,
    pub(super) max_receive_message_size: usize,
}

/// Why a call over QUIC ended before its response head.
pub(super) enum CallFailure {
    /// The call ends with this status.
    Status(Status),
    /// The call went out as 0-RTT early data and was not run from it: the server rejected
    /// the early data, or refused this call with TOO_EARLY, or the connection failed before
    /// its handshake completed. Only replay-safe calls go out as early data, so the call may
    /// be sent again.
    Early(String),
}

impl From<Status> for CallFailure {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

/// Runs a call on an open stream: sends the request, reads the response head.
pub(super) async fn call(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    request: QuicRequest,
) -> Result<http::Response<RecvBody>, CallFailure> {
    let early = recv.is_0rtt();
    let send = SendHalf::new(send);
    send.set_priority(request.priority);
    let mut recv = RecvHalf::new(recv);

    // Send inline what is ready now (a whole unary request, usually); hand the rest to a task
    // so that requests stream while responses are read.
    let (error_tx, error_rx) = oneshot::channel();
    let mut sending = Box::pin(send_request(send, request.head, request.body, error_tx));
    let send_task = match poll_fn(|cx| Poll::Ready(sending.as_mut().poll(cx))).await {
        Poll::Ready(()) => None,
        Poll::Pending => Some(AbortOnDrop(tokio::spawn(sending))),
    };
    let mut parts = ClientCallParts {
        request_error: Some(error_rx),
        send_task,
    };

    let mut decoder = FrameDecoder::new(request.max_header_list_size);
    let mut buf = BytesMut::new();
    let block = tokio::select! {
        head = read_head(&mut recv, &mut decoder, &mut buf) => {
            head.map_err(|e| head_failure(e, early))?
        }
        Some(status) = request_failure(&mut parts.request_error) => return Err(status.into()),
    };
    let headers = fields::decode_fields(&block)
        .map_err(malformed)
        .and_then(|h| check_status_fields(&h).map(|()| h))
        .inspect_err(|_| recv.stop(ErrorCode::ProtocolError))?;
    let trailers_only = headers.contains_key("grpc-status");
    let body = RecvBody::client(
        recv,
        decoder,
        buf,
        request.max_receive_message_size,
        trailers_only,
        parts,
    );
    let mut response = http::Response::new(body);
    *response.version_mut() = http::Version::HTTP_2;
    *response.headers_mut() = headers;
    Ok(response)
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

/// Why a response head could not be read; `early` when the stream carried 0-RTT data.
fn head_failure(err: HeadError, early: bool) -> CallFailure {
    match err {
        HeadError::Read(quinn::ReadError::ZeroRttRejected) => {
            CallFailure::Early("the server rejected 0-RTT data".into())
        }
        HeadError::Read(quinn::ReadError::Reset(code))
            if code.into_inner() == u64::from(ErrorCode::TooEarly.to_u32()) =>
        {
            CallFailure::Early("the server would not run it from 0-RTT data".into())
        }
        HeadError::Read(quinn::ReadError::ConnectionLost(e)) if early => {
            CallFailure::Early(format!("connection lost during its 0-RTT handshake: {e}"))
        }
        other => CallFailure::Status(head_status(other)),
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
        Ok(_) => {}
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
