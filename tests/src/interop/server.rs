//! The `grpc.testing.TestService` server, as the public interop descriptions define its
//! features, and a tower layer for what tonic handlers cannot do themselves: see a request
//! message's compressed flag, echo trailing metadata, compress chosen messages of a stream.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use http::{HeaderName, HeaderValue};
use tokio::sync::{Mutex, mpsc};
use tonic::codec::{CompressionEncoding, SingleMessageCompressionOverride};
use tonic::{Code, Request, Response, Status, Streaming};

use super::framing::{Compress, Framed, Observed};
use super::pb::test_service_server::{TestService, TestServiceServer};
use super::pb::{
    BoolValue, EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};
use crate::{TestOptions, TestServer, within};

/// Request metadata the server sends back as response metadata.
pub const ECHO_INITIAL: &str = "x-grpc-test-echo-initial";
/// Request metadata the server sends back as trailing metadata.
pub const ECHO_TRAILING: &str = "x-grpc-test-echo-trailing-bin";

/// How a streaming call ended, as its handler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It ran to its end and answered OK.
    Ok,
    /// It ended with this status (its own, or an error reading the request stream).
    Status(Code),
    /// The handler (or its response stream) was dropped before the end: the call went away.
    Dropped,
}

/// What the server reports about its streaming handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEvent {
    /// The handler of this method was entered.
    Started(&'static str),
    /// The call of this method ended so.
    Ended(&'static str, Ending),
}

/// Reports [`CallEvent::Ended`] once: as set by [`EndReport::end`], or `Dropped` if it is
/// dropped first.
#[derive(Debug)]
struct EndReport {
    method: &'static str,
    events: Option<mpsc::UnboundedSender<CallEvent>>,
}

impl EndReport {
    fn start(method: &'static str, events: &mpsc::UnboundedSender<CallEvent>) -> Self {
        let _ = events.send(CallEvent::Started(method));
        Self {
            method,
            events: Some(events.clone()),
        }
    }

    fn end(&mut self, ending: Ending) {
        if let Some(events) = self.events.take() {
            let _ = events.send(CallEvent::Ended(self.method, ending));
        }
    }

    fn end_with<T>(&mut self, result: Result<T, Status>) -> Result<T, Status> {
        self.end(match &result {
            Ok(_) => Ending::Ok,
            Err(status) => Ending::Status(status.code()),
        });
        result
    }
}

impl Drop for EndReport {
    fn drop(&mut self) {
        self.end(Ending::Dropped);
    }
}

/// The interop test service.
#[derive(Clone, Debug)]
pub struct InteropService {
    events: mpsc::UnboundedSender<CallEvent>,
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send>>;

/// A payload of `size` zero bytes; INVALID_ARGUMENT for a negative size.
fn zeros(size: i32) -> Result<Payload, Status> {
    let size = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("negative payload size {size}")))?;
    Ok(Payload {
        r#type: 0,
        body: vec![0; size],
    })
}

/// The status a request asks for, if any.
fn echo_status(status: Option<&EchoStatus>) -> Result<(), Status> {
    match status {
        Some(status) => Err(Status::new(
            Code::from_i32(status.code),
            status.message.clone(),
        )),
        None => Ok(()),
    }
}

/// CANCELLED if the request stream `observed` did not end but failed so: tonic's decoder
/// reads a cancelled request stream as a clean end.
fn check_not_cancelled(observed: Option<&Observed>) -> Result<(), Status> {
    match observed.and_then(Observed::failure) {
        Some(Code::Cancelled) => Err(Status::cancelled("the client cancelled the call")),
        _ => Ok(()),
    }
}

/// INVALID_ARGUMENT unless message `index` arrived compressed as `expect` says.
fn check_compression(
    expect: Option<&BoolValue>,
    observed: Option<&Observed>,
    index: usize,
) -> Result<(), Status> {
    let Some(expect) = expect else { return Ok(()) };
    let compressed = observed
        .and_then(|o| o.compressed(index))
        .ok_or_else(|| Status::internal("no record of the request's compressed flag"))?;
    if compressed != expect.value {
        return Err(Status::invalid_argument(format!(
            "message {index}: expected compressed={}, it was compressed={compressed}",
            expect.value
        )));
    }
    Ok(())
}

/// Waits `us` microseconds; not at all for 0 or less.
async fn pause_us(us: i32) {
    if let Ok(us @ 1..) = u64::try_from(us) {
        tokio::time::sleep(Duration::from_micros(us)).await;
    }
}

/// The response `params` ask for, after its interval.
async fn answer(params: &ResponseParameters) -> Result<StreamingOutputCallResponse, Status> {
    pause_us(params.interval_us).await;
    Ok(StreamingOutputCallResponse {
        payload: Some(zeros(params.size)?),
    })
}

/// One response per entry of `params`, in order, each after its interval.
fn answer_all(params: Vec<ResponseParameters>) -> ResponseStream {
    let stream = futures_util::stream::unfold(params.into_iter(), |mut params| async move {
        let next = params.next()?;
        Some((answer(&next).await, params))
    });
    Box::pin(stream)
}

/// The state of a FullDuplexCall's response stream: requests are read only when every
/// response asked for so far has been sent, so each is answered as it arrives. Everything
/// lives in the response stream, so that the call going away drops it all.
struct Duplex {
    requests: Streaming<StreamingOutputCallRequest>,
    observed: Option<Observed>,
    pending: VecDeque<ResponseParameters>,
    report: EndReport,
    done: bool,
}

impl Duplex {
    async fn next(mut self) -> Option<(Result<StreamingOutputCallResponse, Status>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(params) = self.pending.pop_front() {
                let response = answer(&params).await;
                self.done = response.is_err();
                return Some((response, self));
            }
            let next = self.requests.message().await;
            let request = match next.and_then(|r| {
                match &r {
                    Some(r) => echo_status(r.response_status.as_ref())?,
                    None => check_not_cancelled(self.observed.as_ref())?,
                }
                Ok(r)
            }) {
                Ok(Some(request)) => request,
                Ok(None) => {
                    self.report.end(Ending::Ok);
                    return None;
                }
                Err(status) => {
                    self.report.end(Ending::Status(status.code()));
                    self.done = true;
                    return Some((Err(status), self));
                }
            };
            self.pending.extend(request.response_parameters);
        }
    }
}

#[tonic::async_trait]
impl TestService for InteropService {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let message = request.get_ref();
        check_compression(
            message.expect_compressed.as_ref(),
            request.extensions().get::<Observed>(),
            0,
        )?;
        echo_status(message.response_status.as_ref())?;
        let mut response = Response::new(SimpleResponse {
            payload: Some(zeros(message.response_size)?),
            ..SimpleResponse::default()
        });
        if message
            .response_compressed
            .as_ref()
            .is_some_and(|c| !c.value)
        {
            response
                .extensions_mut()
                .insert(SingleMessageCompressionOverride::Disable);
        }
        Ok(response)
    }

    async fn cacheable_unary_call(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        // A different payload each time, so that a caching proxy's answer can be told apart.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Ok(Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: 0,
                body: now.to_string().into_bytes(),
            }),
            ..SimpleResponse::default()
        }))
    }

    type StreamingOutputCallStream = ResponseStream;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        let message = request.into_inner();
        echo_status(message.response_status.as_ref())?;
        // tonic compresses all of a server stream's messages or none (its per-response
        // override applies to unary responses only): the layer sets each message's
        // compression as asked.
        let plan: Vec<bool> = message
            .response_parameters
            .iter()
            .map(|p| p.compressed.as_ref().is_some_and(|c| c.value))
            .collect();
        let asks_compression = message
            .response_parameters
            .iter()
            .any(|p| p.compressed.is_some());
        let mut response = Response::new(answer_all(message.response_parameters));
        if asks_compression {
            response.extensions_mut().insert(Compress(plan));
        }
        Ok(response)
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let mut report = EndReport::start("StreamingInputCall", &self.events);
        let observed = request.extensions().get::<Observed>().cloned();
        let mut requests = request.into_inner();
        let mut total: usize = 0;
        let mut index = 0;
        let result = async {
            while let Some(message) = requests.message().await? {
                check_compression(message.expect_compressed.as_ref(), observed.as_ref(), index)?;
                total += message.payload.map_or(0, |p| p.body.len());
                index += 1;
            }
            check_not_cancelled(observed.as_ref())?;
            let aggregated_payload_size = i32::try_from(total)
                .map_err(|_| Status::out_of_range("aggregated payload size over i32"))?;
            Ok(Response::new(StreamingInputCallResponse {
                aggregated_payload_size,
            }))
        }
        .await;
        report.end_with(result)
    }

    type FullDuplexCallStream = ResponseStream;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let duplex = Duplex {
            report: EndReport::start("FullDuplexCall", &self.events),
            observed: request.extensions().get::<Observed>().cloned(),
            requests: request.into_inner(),
            pending: VecDeque::new(),
            done: false,
        };
        let stream = futures_util::stream::unfold(duplex, Duplex::next);
        Ok(Response::new(Box::pin(stream) as ResponseStream))
    }

    type HalfDuplexCallStream = ResponseStream;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let mut requests = request.into_inner();
        let mut params = Vec::new();
        while let Some(message) = requests.message().await? {
            echo_status(message.response_status.as_ref())?;
            params.extend(message.response_parameters);
        }
        Ok(Response::new(answer_all(params)))
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is never implemented",
        ))
    }
}

/// A tower layer (for `ServerBuilder::layer`, so on QUIC and TCP alike) that records each
/// request message's compressed flag in the request's extensions as [`Observed`], echoes
/// [`ECHO_INITIAL`] into the response head and [`ECHO_TRAILING`] into the trailers, and
/// gzips the response messages a handler names with [`Compress`] in its response's
/// extensions (when the client accepts gzip).
#[derive(Clone, Copy, Debug, Default)]
pub struct InteropLayer;

impl<S> tower::Layer<S> for InteropLayer {
    type Service = Interop<S>;

    fn layer(&self, inner: S) -> Interop<S> {
        Interop { inner }
    }
}

/// The service [`InteropLayer`] makes.
#[derive(Clone, Debug)]
pub struct Interop<S> {
    inner: S,
}

type HttpResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for Interop<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = HttpResponse>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let initial = request.headers().get(ECHO_INITIAL).cloned();
        let trailing = request
            .headers()
            .get(ECHO_TRAILING)
            .cloned()
            .map(|value| (HeaderName::from_static(ECHO_TRAILING), value));
        let observed = Observed::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(observed.clone());
        let body = tonic::body::Body::new(Framed::new(body, observed, None));
        let call = self.inner.call(http::Request::from_parts(parts, body));
        Box::pin(async move {
            let (mut parts, body) = call.await?.into_parts();
            if let Some(value) = initial {
                parts
                    .headers
                    .insert(HeaderName::from_static(ECHO_INITIAL), value);
            }
            let gzip =
                parts.headers.get("grpc-encoding") == Some(&HeaderValue::from_static("gzip"));
            let plan = parts.extensions.remove::<Compress>().filter(|_| gzip);
            let body = Framed::new(body, Observed::default(), plan).with_trailer(trailing);
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(body),
            ))
        })
    }
}

/// A test server running the interop service (next to the `Echo` service of
/// [`TestServer`]), behind [`InteropLayer`], with gzip accepted and offered.
#[derive(Debug)]
pub struct InteropServer {
    /// The server, its address, certificate and stats.
    pub server: TestServer,
    events: Mutex<mpsc::UnboundedReceiver<CallEvent>>,
}

impl InteropServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(|b| b).await
    }

    /// Starts a server, letting the test adjust the builder.
    pub async fn start_with(
        configure: impl FnOnce(quicrpc::ServerBuilder) -> quicrpc::ServerBuilder,
    ) -> Self {
        Self::start_with_options(TestOptions::default(), configure).await
    }

    /// Starts a server with `options` (an address, a certificate), letting the test adjust
    /// the builder.
    pub async fn start_with_options(
        options: TestOptions,
        configure: impl FnOnce(quicrpc::ServerBuilder) -> quicrpc::ServerBuilder,
    ) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let service = TestServiceServer::new(InteropService { events: events_tx })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip);
        let server = TestServer::start_with(options, |b| {
            configure(b.add_service(service).layer(InteropLayer))
        })
        .await;
        Self {
            server,
            events: Mutex::new(events),
        }
    }

    /// A channel builder aimed at this server that uses `transport` and nothing else.
    pub fn channel_builder(&self, transport: quicrpc::Transport) -> quicrpc::ChannelBuilder {
        let builder = self.server.any_transport_builder();
        match transport {
            quicrpc::Transport::Tcp => builder.fallback(quicrpc::Fallback::TcpOnly),
            quicrpc::Transport::Http3 => builder
                .fallback(quicrpc::Fallback::QuicOnly)
                .quic_wire(quicrpc::QuicWire::Http3),
            _ => builder.fallback(quicrpc::Fallback::QuicOnly),
        }
    }

    /// A connected channel that uses `transport` only.
    pub async fn channel(&self, transport: quicrpc::Transport) -> quicrpc::Channel {
        within("connect", self.channel_builder(transport).connect())
            .await
            .expect("connect to the interop server")
    }

    /// The next event the service reports.
    pub async fn next_event(&self) -> CallEvent {
        within("service event", async {
            self.events.lock().await.recv().await
        })
        .await
        .expect("service alive")
    }
}
