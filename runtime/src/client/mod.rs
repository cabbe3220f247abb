//! The client: [`Channel`], a tower service that tonic-generated clients run on, with the
//! automatic fallback from QUIC to gRPC over TCP.
//!
//! # One unary call, file by file
//!
//! 1. `mod.rs`: tonic's generated client calls [`Channel`]'s `Service::call` with an
//!    `http::Request`. [`Channel::call`] reads what the call needs into a [`Call`]: its
//!    deadline (`grpc-timeout`, [`crate::deadline`]), its method's table entry, and its
//!    priority ([`crate::priority`]). The whole call runs under the deadline.
//! 2. `fallback/`: [`Router::route`] gives the call a route: the QUIC connection or the
//!    TCP channel that is up, or a new connection by the [`Fallback`] policy (the
//!    happy-eyeballs race in `race.rs`, the memory of servers reached only over TCP in
//!    `memory.rs`, the reconnect backoff in `backoff.rs`), waiting for reconnects within the
//!    deadline.
//! 3. `quic/call.rs`: on QUIC, `Conn::call` decides whether the call goes as 0-RTT early
//!    data, opens the call's stream, sends the head and body through [`crate::stream`]'s
//!    `send_body` (inline when the body is ready, as a unary request is; in a task
//!    otherwise), reads the response head, and sends a refused early call again after the
//!    handshake. If the connection was gone before the stream opened, `mod.rs` routes the
//!    call once more.
//!    On TCP, `tcp.rs`'s `call` hands the request to tonic's channel instead.
//! 4. `body.rs`: the response comes back with a [`ResponseBody`] over the stream's
//!    `RecvBody` (or tonic's body), which enforces the receive limit and the deadline and
//!    finishes the call's telemetry when the trailers arrive.
//!
//! `builder.rs` holds [`ChannelBuilder`], and `quic/mod.rs` connecting over QUIC.

mod balance;
mod body;
mod builder;
mod fallback;
mod health;
mod quic;
mod resolve;
mod tcp;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::Either;
use tokio::time::Instant;
use tonic::Status;
use tracing::debug;

use self::balance::Balancer;
pub use self::balance::{Balance, Change};
pub use self::body::ResponseBody;
pub use self::builder::ChannelBuilder;
pub use self::fallback::Fallback;
use self::fallback::{Route, Router};
use self::quic::CallError;
pub use self::quic::QuicWire;
pub use self::resolve::{Dns, Resolve};
use crate::method::{Registered, registered};
use crate::status::status_code;
use crate::telemetry::{CallTelemetry, MethodLabel, Side, method_label};
use crate::zero_rtt::Declared;
use crate::{Error, Priority, Transport, ZeroRtt, deadline, priority};

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
    inner: Inner,
}

/// One server, or several behind a balancer.
#[derive(Clone)]
enum Inner {
    One(Arc<Router>),
    Balanced(Arc<Balancer>),
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::One(router) => f
                .debug_struct("Channel")
                .field("authority", &router.calls.authority)
                .field("policy", &router.policy())
                .field("transport", &self.transport())
                .finish_non_exhaustive(),
            Inner::Balanced(balancer) => f
                .debug_struct("Channel")
                .field("balanced", balancer)
                .finish_non_exhaustive(),
        }
    }
}

impl Channel {
    /// Starts configuring a channel to `uri`, of the form `https://host[:port]` (port 443 by
    /// default).
    pub fn builder(uri: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder::new(uri.into())
    }

    /// A channel that spreads its calls over several servers, one [`ChannelBuilder`] each,
    /// by the default policy ([`Balance::PowerOfTwoChoices`]); see [`Balance::list`]. Connects
    /// lazily; must be called inside a Tokio runtime.
    pub fn balance_list(endpoints: impl IntoIterator<Item = ChannelBuilder>) -> Channel {
        Balance::default().list(endpoints)
    }

    /// A balanced channel whose servers come and go through the returned sender, by the
    /// default policy; see [`Balance::channel`].
    pub fn balance_channel<K>(
        capacity: usize,
    ) -> (
        Channel,
        tokio::sync::mpsc::Sender<Change<K, ChannelBuilder>>,
    )
    where
        K: std::hash::Hash + Eq + Send + 'static,
    {
        Balance::default().channel(capacity)
    }

    fn balanced(balancer: Arc<Balancer>) -> Self {
        Self {
            inner: Inner::Balanced(balancer),
        }
    }

    fn one(router: Router) -> Self {
        Self {
            inner: Inner::One(Arc::new(router)),
        }
    }

    /// The single server's router: `None` for a balanced channel.
    fn router(&self) -> Option<&Arc<Router>> {
        match &self.inner {
            Inner::One(router) => Some(router),
            Inner::Balanced(_) => None,
        }
    }

    /// The transport new calls use: the one connected now, or, when nothing is connected,
    /// the one the policy tries first. Over QUIC it names the wire:
    /// [`Transport::Quic`] for quicrpc's own, [`Transport::Http3`] for gRPC over HTTP/3
    /// (see [`ChannelBuilder::quic_wire`]); before a connection with
    /// [`QuicWire::Auto`](crate::QuicWire::Auto) has settled it, [`Transport::Quic`].
    ///
    /// A balanced channel says the transport of the first server it has a connection to.
    pub fn transport(&self) -> Transport {
        match &self.inner {
            Inner::One(router) => router.transport(),
            Inner::Balanced(balancer) => balancer.transport(),
        }
    }

    /// The local address of the channel's QUIC socket (`None` with
    /// [`Fallback::TcpOnly`], and for a balanced channel, which has one per server).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.router()?.quic().and_then(|quic| quic.local_addr())
    }

    /// Moves the channel's QUIC connection to a new local UDP socket, as when a device
    /// changes networks (connection migration). Calls in flight, streams included, continue
    /// on the new path without loss; the server follows once it has validated the path.
    /// Returns the new local address.
    pub fn rebind(&self) -> Result<std::net::SocketAddr, Error> {
        let Some(router) = self.router() else {
            return Err(Error::config(
                "rebind moves one server's connection; this channel is balanced",
            ));
        };
        match router.quic() {
            Some(quic) => quic.rebind(),
            None => Err(Error::config("rebind needs QUIC; this channel is TCP-only")),
        }
    }

    /// The address of the server over QUIC, if a QUIC connection is up (`None` for a
    /// balanced channel).
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.router()?
            .quic_connection()
            .map(|quic| quic.remote_address())
    }

    /// Runs one call on one server. The deadline bounds all of it.
    ///
    /// A plain function that returns its future: an async function's future would keep room
    /// for its arguments beside the copies its body moves them into.
    #[allow(clippy::manual_async_fn, reason = "the async fn's future is larger")]
    fn call(
        router: Arc<Router>,
        request: http::Request<tonic::body::Body>,
    ) -> impl Future<Output = Result<http::Response<ResponseBody>, Status>> {
        async move {
            let mut call = Call::new(&request)?;
            let deadline = call.deadline;
            let result = under_deadline(deadline, attempt(&router, request, &mut call))
                .await
                .map_err(CallError::into_status);
            call.finish(result, || router.transport())
        }
    }
}

/// `attempt` under `deadline`: past it, DEADLINE_EXCEEDED.
///
/// A plain function rather than an `async fn`, so that the attempt's future is held once,
/// in place: an `async fn` would keep its argument and the timeout that wraps it side by
/// side, and a call's future would be twice the size it needs (every call's future is
/// boxed, so its size is copied on every call).
fn under_deadline<T>(
    deadline: Option<Instant>,
    attempt: impl Future<Output = Result<T, CallError>>,
) -> impl Future<Output = Result<T, CallError>> {
    match deadline {
        Some(deadline) => Either::Left(tokio::time::timeout_at(deadline, attempt).map(|timed| {
            timed.unwrap_or_else(|_| {
                Err(CallError::Failed(Status::deadline_exceeded(
                    "deadline exceeded",
                )))
            })
        })),
        None => Either::Right(attempt),
    }
}

/// Runs a call on `router`'s server: routes it, and routes it once more if its connection
/// went away before its stream opened. [`CallError::NotStarted`] hands the request back when
/// it never reached the server: no route (the server unreachable), or the connection lost
/// twice before the stream opened.
fn attempt<'a>(
    router: &'a Arc<Router>,
    request: http::Request<tonic::body::Body>,
    call: &'a mut Call,
) -> impl Future<Output = Result<http::Response<ResponseBody>, CallError>> + 'a {
    // A plain function that returns its future, which then holds the request once (see
    // `under_deadline`).
    let mut request = request;
    async move {
        let mut reconnected = false;
        loop {
            let route = match router.route(call.deadline).await {
                Ok(route) => route,
                Err(status) => return Err(CallError::NotStarted(Box::new(request), status)),
            };
            match route {
                Route::Tcp(channel) => {
                    return tcp::call(channel, request, call, &router.calls)
                        .await
                        .map_err(CallError::Failed);
                }
                Route::Quic(conn) => match conn.call(request, call, &router.calls).await {
                    Ok(response) => return Ok(response),
                    Err(CallError::NotStarted(unsent, status)) if !reconnected => {
                        debug!("connection lost before the call started ({status}): retrying");
                        reconnected = true;
                        request = *unsent;
                    }
                    Err(e) => return Err(e),
                },
            }
        }
    }
}

/// What every call on a channel is sent with.
#[derive(Debug)]
struct CallSettings {
    /// The `:authority` of every request.
    authority: String,
    max_header_list_size: usize,
    max_receive_message_size: usize,
}

/// One call, as the channel follows it across attempts.
struct Call {
    deadline: Option<Instant>,
    /// The method's kind and idempotency, for 0-RTT and resending: from its table entry, or
    /// the [`CallKind`](crate::CallKind) and [`Idempotency`](crate::Idempotency) in the
    /// request's extensions.
    declared: Declared,
    /// The method's metrics label.
    method: MethodLabel,
    priority: Priority,
    /// How the call has used 0-RTT so far.
    zero_rtt: ZeroRtt,
    /// Set once the call has a transport; outlives the call's future, so that a deadline
    /// that cuts the call short is still recorded.
    telemetry: Option<CallTelemetry>,
}

impl Call {
    fn new(request: &http::Request<tonic::body::Body>) -> Result<Self, Status> {
        let path = request.uri().path();
        let method = registered(path);
        let info = method.map(Registered::info);
        Ok(Self {
            deadline: deadline::from_headers(request.headers())?,
            declared: Declared::new(info, request.extensions()),
            method: method_label(path, method),
            priority: priority::resolve(request.extensions().get().copied(), info),
            zero_rtt: ZeroRtt::NotUsed,
            telemetry: None,
        })
    }

    /// Starts the call's telemetry when it first gets a transport (and, over QUIC, a
    /// stream).
    fn started(&mut self, transport: Transport, stream_id: Option<u64>) {
        let priority = (transport != Transport::Tcp).then_some(self.priority);
        self.telemetry.get_or_insert_with(|| {
            CallTelemetry::start(
                Side::Client,
                self.method.clone(),
                transport,
                priority,
                stream_id,
            )
        });
    }

    /// Records how the call ended (a response body records its own end), and passes the
    /// result on. `transport` names the channel's transport for a call that never got one.
    fn finish(
        self,
        result: Result<http::Response<ResponseBody>, Status>,
        transport: impl FnOnce() -> Transport,
    ) -> Result<http::Response<ResponseBody>, Status> {
        let Self {
            method, telemetry, ..
        } = self;
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
                telemetry
                    .unwrap_or_else(|| {
                        CallTelemetry::start(Side::Client, method, transport(), None, None)
                    })
                    .finish(status.code());
                Err(status)
            }
        }
    }
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
        let inner: Pin<Box<dyn Future<Output = _> + Send>> = match &self.inner {
            Inner::One(router) => Box::pin(Self::call(router.clone(), request)),
            Inner::Balanced(balancer) => Box::pin(balance::call(balancer.clone(), request)),
        };
        ResponseFuture { inner }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an `async fn` of two arguments returns.
    fn future_size<A, B, F: Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every call's future is boxed, so every call copies its whole size, whatever state it
    /// is in; connecting and HTTP/3 once made it 64 KiB, and a fifth of a client's CPU at 50
    /// calls in flight went to copying it.
    #[test]
    fn a_calls_future_stays_small() {
        let one = future_size(Channel::call);
        let balanced = future_size(balance::call);
        eprintln!("one server: {one} bytes; balanced: {balanced} bytes");
        assert!(one <= 6 * 1024, "a call's future takes {one} bytes");
        assert!(
            balanced <= 6 * 1024,
            "a balanced call's future takes {balanced} bytes"
        );
    }
}
