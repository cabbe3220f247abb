//! The TCP side of the server: plain gRPC over HTTP/2 and TLS, served by tonic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::body::Body as TonicBody;
use tonic::service::Routes;
use tracing::{Instrument, debug, info};

use tokio::time::Instant;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

mod incoming;

use self::incoming::{Admission, TlsIncoming};
use super::ServerStats;
use super::Shared;
use super::budget::{BudgetedBody, ConnectionKey, RequestBuffers};
use super::stats::{CallGuard, ConnectionGuard};
use super::turns::tcp as turns;
use crate::status::{normalize_status, status_code};
use crate::telemetry::{CallTelemetry, Side, server_method_label};
use crate::tls::{Identity, PeerCertificates};
use crate::{Error, Transport};

/// Serves plain gRPC over HTTP/2 and TLS with tonic until `shutdown`, then drains.
pub(super) async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: &Shared,
    identity: &Identity,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let local_addr = listener.local_addr().ok();
    // quicrpc's own TLS rather than tonic's: TLS 1.3 only and the ring provider, as on QUIC
    // (tonic's takes the process-wide default provider and allows TLS 1.2), every client CA
    // in one verifier, and handshakes that count against no limit until they complete.
    let tls = crate::tls::server_config(identity, &[b"h2"], false, &shared.client_roots)?;
    let mut server = tonic::transport::Server::builder()
        .max_concurrent_streams(shared.config.max_concurrent_streams)
        .http2_max_header_list_size(
            u32::try_from(shared.config.max_header_list_size).unwrap_or(u32::MAX),
        )
        .http2_keepalive_interval(shared.config.keep_alive_interval)
        .tcp_nodelay(true)
        .layer(tower::layer::layer_fn({
            let duties = Duties {
                stats: shared.stats.clone(),
                request_buffers: shared.request_buffers.clone(),
                max_message: shared.config.max_receive_message_size,
            };
            move |inner| CallDuties(inner, duties.clone())
        }))
        // The user's layers, inside quicrpc's own, around the same services as on QUIC, which
        // take the place of tonic's router (given none: it would answer every call
        // UNIMPLEMENTED).
        .layer(tower::layer::layer_fn({
            let layers = shared.layers.clone();
            let services = shared.services.clone();
            move |_: Routes| super::layers::Stack::new(services.clone(), &layers)
        }));
    // tonic says GOAWAY at the age and waits for the calls; with its own grace period set it
    // would skip the GOAWAY and close at age + grace. So the end of the grace is Counted's.
    if let Some(age) = shared.max_connection_age {
        server = server.max_connection_age(age);
    }
    let end_of_life = shared
        .max_connection_age
        .map(|age| age + shared.drain_timeout);
    info!(?local_addr, "serving gRPC over TCP (HTTP/2, TLS)");
    let idle_timeout = shared.config.idle_timeout;
    // Cancelled once a shutdown has waited the drain timeout: ends the connections left.
    let kill = CancellationToken::new();
    let killer = kill.clone();
    let incoming = TlsIncoming::new(
        listener,
        tls,
        Admission {
            stats: shared.stats.clone(),
            max_connections: shared.max_connections,
            per_address: shared.max_connections_per_address,
            handshake_timeout: shared.handshake_timeout,
            counted: Box::new(move |stream| {
                if let Err(e) = stream.set_nodelay(true) {
                    debug!("cannot set TCP_NODELAY: {e}");
                }
                Counted {
                    stream,
                    _guard: None,
                    idle: Idle::new(idle_timeout),
                    killed: Box::pin(killer.clone().cancelled_owned()),
                    end_of_life: end_of_life.map(|life| Box::pin(tokio::time::sleep(life))),
                }
            }),
        },
    );
    let serve = server
        .add_routes(Routes::default())
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    let drain = shared.drain_timeout;
    let drain_timeout = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
        info!(?local_addr, "TCP: drain timeout, closing what is left");
        kill.cancel();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        result = serve => result.map_err(|source| Error::Serve { source }),
        () = drain_timeout => unreachable!("never completes"),
    }
}

/// How much earlier than tonic's own timer this side ends a call at its deadline.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(1);

/// An accepted TCP connection, counted in the server's stats while it is open, and closed
/// once no byte has gone either way for the idle timeout, as QUIC closes an idle connection.
/// HTTP/2 PINGs count as bytes: a client that keeps its connection alive keeps it.
struct Counted {
    stream: tokio::net::TcpStream,
    /// Set once the TLS handshake has completed and the connection was admitted.
    _guard: Option<ConnectionGuard>,
    idle: Idle,
    /// Resolves when a shutdown's drain timeout has passed: the connection is ended.
    killed: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// With a maximum connection age: the end of its grace period, when the connection is
    /// ended whatever calls it still has.
    end_of_life: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// When a connection last moved a byte, and the timer that ends it when it has been still
/// for `timeout`.
struct Idle {
    timeout: std::time::Duration,
    last: Instant,
    /// Set for `last + timeout` when it was armed; pushed on, not reset per byte.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Counted {
    /// The connection completed its handshake and was admitted: it counts until it closes.
    fn admitted(&mut self, guard: ConnectionGuard) {
        self._guard = Some(guard);
    }
}

impl Idle {
    fn new(timeout: std::time::Duration) -> Self {
        let now = Instant::now();
        Self {
            timeout,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
    }

    /// Ready with an error once the connection has been still for the timeout. Registers
    /// `cx` with the timer otherwise.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last + self.timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "idle timeout: no bytes either way",
                ));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        turns::connection_turn();
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.idle.moved();
                }
                Poll::Ready(result)
            }
            // The server always has a read pending on a connection, so this is where the
            // idle timer and the drain timeout are watched.
            Poll::Pending => {
                if self.killed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "server shut down: drain timeout",
                    )));
                }
                if let Some(end) = &mut self.end_of_life
                    && end.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "maximum connection age and its drain timeout passed",
                    )));
                }
                self.idle.poll_expired(cx).map(Err)
            }
        }
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        turns::connection_turn();
        let written = ready!(Pin::new(&mut self.stream).poll_write(cx, buf));
        if matches!(written, Ok(n) if n > 0) {
            self.idle.moved();
        }
        Poll::Ready(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        turns::connection_turn();
        let written = ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, bufs));
        if matches!(written, Ok(n) if n > 0) {
            self.idle.moved();
        }
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What the QUIC side does for every call, done around tonic's server on the TCP side, so
/// that a call behaves the same on both transports:
/// - the client's verified certificate chain goes into the request's extensions
///   ([`peer_certificates`]);
/// - the call is counted in [`ServerStats::calls`] while it runs, and traced and measured
///   ([`CallTelemetry`]);
/// - its deadline ends it with DEADLINE_EXCEEDED ([`tcp_deadline`]);
/// - its status is normalised ([`normalize_status`]) in the head and in the trailers;
/// - its request's message under way counts against the request buffers
///   ([`BudgetedBody`]).
#[derive(Clone, Debug)]
struct CallDuties<S>(S, Duties);

/// What [`CallDuties`] needs of the server.
#[derive(Clone, Debug)]
struct Duties {
    stats: ServerStats,
    request_buffers: Arc<RequestBuffers>,
    max_message: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<Request<TonicBody>> for CallDuties<S>
where
    S: tower_service::Service<Request<TonicBody>, Response = Response<TonicBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<TonicBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<TonicBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<TonicBody>) -> Self::Future {
        if let Some(peer) = peer_certificates(&request) {
            request.extensions_mut().insert(peer);
        }
        // Keyed by the peer's address, unique among open connections.
        let connection = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.get_ref().remote_addr());
        if let Some(connection) = connection {
            let charge = self
                .1
                .request_buffers
                .charge(ConnectionKey::Tcp(connection));
            let max_message = self.1.max_message;
            request =
                request.map(|body| TonicBody::new(BudgetedBody::new(body, max_message, charge)));
        }
        let path = request.uri().path();
        let method = server_method_label(path, crate::method::registered(path));
        let telemetry = CallTelemetry::start(Side::Server, method, Transport::Tcp, None, None);
        let call = self.1.stats.call();
        let deadline = tcp_deadline(&request);
        let response = self.0.call(request).instrument(telemetry.span().clone());
        Box::pin(async move {
            // Not a whole burst at once: the connection gets turns to send the responses.
            turns::call_turn().await;
            let response = match deadline {
                None => response.await?,
                Some(deadline) => match tokio::time::timeout_at(deadline, response).await {
                    Ok(response) => response?,
                    Err(_) => Status::deadline_exceeded("deadline exceeded").into_http(),
                },
            };
            Ok(finish_response(response, telemetry, call))
        })
    }
}

/// The client's verified certificate chain, as the QUIC side gives it to handlers.
fn peer_certificates<B>(request: &Request<B>) -> Option<PeerCertificates> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .and_then(PeerCertificates::new)
}

/// When a call must end. tonic's server enforces `grpc-timeout` in a layer outside
/// [`CallDuties`] and reports an expired deadline as CANCELLED ("Timeout expired"), which is
/// not what gRPC clients expect. [`CallDuties`] enforces the same deadline a millisecond
/// earlier and answers DEADLINE_EXCEEDED, as the QUIC side does; tonic's layer, which polls
/// the response before its own timer, passes that answer on. A malformed `grpc-timeout` is
/// tonic's to answer.
fn tcp_deadline<B>(request: &Request<B>) -> Option<Instant> {
    let deadline = crate::deadline::from_headers(request.headers()).ok()??;
    Some(deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline))
}

/// The response with its status normalised, and a body that finishes the call's telemetry
/// and count when it ends (at once, for a trailers-only response).
fn finish_response(
    response: Response<TonicBody>,
    mut telemetry: CallTelemetry,
    call: CallGuard,
) -> Response<TonicBody> {
    let (mut parts, body) = response.into_parts();
    normalize_status(&mut parts.headers);
    let telemetry = match status_code(&parts.headers) {
        Some(code) => {
            telemetry.finish(code);
            None
        }
        None => Some(telemetry),
    };
    let body = NormalizedTrailers {
        body,
        telemetry,
        _call: call,
    };
    Response::from_parts(parts, TonicBody::new(body))
}

/// A TCP response body whose trailers get [`normalize_status`], and whose status finishes the
/// call's telemetry.
struct NormalizedTrailers {
    body: TonicBody,
    telemetry: Option<CallTelemetry>,
    _call: CallGuard,
}

impl Body for NormalizedTrailers {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    normalize_status(&mut trailers);
                    if let Some(telemetry) = &mut this.telemetry {
                        telemetry.finish_from(&trailers);
                    }
                    Some(Ok(Frame::trailers(trailers)))
                }
                Err(frame) => Some(Ok(frame)),
            },
            Some(Err(status)) => {
                if let Some(telemetry) = &mut this.telemetry {
                    telemetry.finish(status.code());
                }
                Some(Err(status))
            }
            None => None,
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
