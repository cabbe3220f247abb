//! The interop client: every case of the public interop descriptions that applies without
//! cloud credentials, with their sizes and checks, over a quicrpc `Channel` pinned to one
//! transport. A case panics (with what it saw) when a check fails.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Status};

use super::framing::{Compress, Framed, Observed};
use super::pb::test_service_client::TestServiceClient;
use super::pb::unimplemented_service_client::UnimplementedServiceClient;
use super::pb::{
    BoolValue, EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest,
    StreamingInputCallRequest, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use super::server::{CallEvent, ECHO_INITIAL, ECHO_TRAILING, Ending, InteropServer};
use crate::within;

/// The cases, by their names in the interop descriptions (plus `concurrent_large_unary`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Empty request, empty response.
    EmptyUnary,
    /// 271,828 bytes up, 314,159 down.
    LargeUnary,
    /// A probe that must fail uncompressed, then compressed and uncompressed requests.
    ClientCompressedUnary,
    /// Responses with and without the compressed flag, as asked.
    ServerCompressedUnary,
    /// Four requests (27,182, 8, 1,828, 45,904 bytes) → aggregated 74,922.
    ClientStreaming,
    /// A probe, then one compressed and one uncompressed message in one stream → 73,086.
    ClientCompressedStreaming,
    /// Four responses of 31,415, 9, 2,653, 58,979 bytes.
    ServerStreaming,
    /// One compressed and one uncompressed response in one stream.
    ServerCompressedStreaming,
    /// Four requests, each answered before the next is sent.
    PingPong,
    /// A bidirectional call with no message either way.
    EmptyStream,
    /// Initial and trailing metadata echoed, on a unary and a bidirectional call.
    CustomMetadata,
    /// A status code and message asked for, on a unary and a bidirectional call.
    StatusCodeAndMessage,
    /// A status message with whitespace and non-ASCII characters comes back unchanged.
    SpecialStatusMessage,
    /// A method the service declares but does not implement.
    UnimplementedMethod,
    /// A service the server does not serve.
    UnimplementedService,
    /// A client-streaming call cancelled before any message.
    CancelAfterBegin,
    /// A bidirectional call cancelled after its first response.
    CancelAfterFirstResponse,
    /// A 1 ms deadline on a call the server never answers.
    TimeoutOnSleepingServer,
    /// 100 large_unary calls at once on one connection.
    ConcurrentLargeUnary,
}

impl Case {
    /// Every case, in the order of the interop descriptions.
    pub const ALL: [Case; 19] = [
        Case::EmptyUnary,
        Case::LargeUnary,
        Case::ClientCompressedUnary,
        Case::ServerCompressedUnary,
        Case::ClientStreaming,
        Case::ClientCompressedStreaming,
        Case::ServerStreaming,
        Case::ServerCompressedStreaming,
        Case::PingPong,
        Case::EmptyStream,
        Case::CustomMetadata,
        Case::StatusCodeAndMessage,
        Case::SpecialStatusMessage,
        Case::UnimplementedMethod,
        Case::UnimplementedService,
        Case::CancelAfterBegin,
        Case::CancelAfterFirstResponse,
        Case::TimeoutOnSleepingServer,
        Case::ConcurrentLargeUnary,
    ];

    /// The case's name in the interop descriptions.
    pub fn name(self) -> &'static str {
        match self {
            Case::EmptyUnary => "empty_unary",
            Case::LargeUnary => "large_unary",
            Case::ClientCompressedUnary => "client_compressed_unary",
            Case::ServerCompressedUnary => "server_compressed_unary",
            Case::ClientStreaming => "client_streaming",
            Case::ClientCompressedStreaming => "client_compressed_streaming",
            Case::ServerStreaming => "server_streaming",
            Case::ServerCompressedStreaming => "server_compressed_streaming",
            Case::PingPong => "ping_pong",
            Case::EmptyStream => "empty_stream",
            Case::CustomMetadata => "custom_metadata",
            Case::StatusCodeAndMessage => "status_code_and_message",
            Case::SpecialStatusMessage => "special_status_message",
            Case::UnimplementedMethod => "unimplemented_method",
            Case::UnimplementedService => "unimplemented_service",
            Case::CancelAfterBegin => "cancel_after_begin",
            Case::CancelAfterFirstResponse => "cancel_after_first_response",
            Case::TimeoutOnSleepingServer => "timeout_on_sleeping_server",
            Case::ConcurrentLargeUnary => "concurrent_large_unary",
        }
    }
}

/// The response head a [`Recording`] channel saw, in the response's extensions.
#[derive(Clone, Debug)]
pub struct ResponseHead(pub HeaderMap);

/// A quicrpc `Channel` that checks every response came over `transport`, records what each
/// response carried ([`Observed`] and [`ResponseHead`] in its extensions) and gzips the
/// request messages a [`Compress`] in the request's extensions names.
#[derive(Clone, Debug)]
pub struct Recording {
    channel: quicrpc::Channel,
    transport: quicrpc::Transport,
}

impl Recording {
    /// Wraps `channel`, which must carry every call over `transport`.
    pub fn new(channel: quicrpc::Channel, transport: quicrpc::Transport) -> Self {
        Self { channel, transport }
    }
}

type RecordedResponse = http::Response<Framed<quicrpc::ResponseBody>>;

impl tower::Service<http::Request<tonic::body::Body>> for Recording {
    type Response = RecordedResponse;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<RecordedResponse, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let plan = parts.extensions.remove::<Compress>();
        if plan.as_ref().is_some_and(|p| p.0.contains(&true)) {
            parts
                .headers
                .insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        }
        let body = tonic::body::Body::new(Framed::new(body, Observed::default(), plan));
        let call = self.channel.call(http::Request::from_parts(parts, body));
        let want = self.transport;
        Box::pin(async move {
            let (mut parts, body) = call.await?.into_parts();
            let carried = parts.extensions.get::<quicrpc::Transport>().copied();
            if carried != Some(want) {
                return Err(Status::internal(format!(
                    "the call went over {carried:?}, not {want}"
                )));
            }
            let observed = Observed::default();
            parts.extensions.insert(observed.clone());
            parts.extensions.insert(ResponseHead(parts.headers.clone()));
            Ok(http::Response::from_parts(
                parts,
                Framed::new(body, observed, None),
            ))
        })
    }
}

/// Runs `case` against `server` over `transport` (QUIC or TCP only), panicking on a failed
/// check.
pub async fn run_case(case: Case, server: &InteropServer, transport: quicrpc::Transport) {
    let channel = server.channel(transport).await;
    let ctx = Ctx {
        server,
        channel: Recording::new(channel.clone(), transport),
    };
    let what = format!("{} over {transport}", case.name());
    within(&what, ctx.run(case)).await;
    assert_eq!(channel.transport(), transport, "{what}");
}

struct Ctx<'a> {
    server: &'a InteropServer,
    channel: Recording,
}

type Client = TestServiceClient<Recording>;

/// `len` zero bytes as a payload.
fn zeros(len: usize) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: vec![0; len],
    })
}

fn bool_value(value: bool) -> Option<BoolValue> {
    Some(BoolValue { value })
}

/// Asserts `payload` is `len` zero bytes.
fn assert_zeros(payload: Option<&Payload>, len: usize, what: &str) {
    let body = &payload.unwrap_or_else(|| panic!("{what}: no payload")).body;
    assert_eq!(body.len(), len, "{what}: payload size");
    assert!(body.iter().all(|b| *b == 0), "{what}: payload not zeros");
}

/// The large_unary request: 271,828 bytes of zeros, asking for 314,159.
fn large_request() -> SimpleRequest {
    SimpleRequest {
        response_size: 314_159,
        payload: zeros(271_828),
        ..SimpleRequest::default()
    }
}

/// A streaming request asking for responses of `sizes`, carrying `payload` bytes.
fn output_request(sizes: &[i32], payload: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: sizes
            .iter()
            .map(|&size| ResponseParameters {
                size,
                ..ResponseParameters::default()
            })
            .collect(),
        payload: (payload > 0).then(|| zeros(payload)).flatten(),
        ..StreamingOutputCallRequest::default()
    }
}

/// The observations a recorded response carries.
fn observed<T>(response: &tonic::Response<T>) -> Observed {
    response
        .extensions()
        .get::<Observed>()
        .cloned()
        .expect("a Recording channel's response")
}

/// Collects a response stream to its end.
async fn collect(
    stream: &mut tonic::Streaming<StreamingOutputCallResponse>,
) -> Result<Vec<StreamingOutputCallResponse>, Status> {
    let mut all = Vec::new();
    while let Some(response) = stream.message().await? {
        all.push(response);
    }
    Ok(all)
}

/// A bidirectional call whose requests the caller sends one at a time.
async fn open_duplex(
    client: &mut Client,
    request: impl FnOnce(
        Request<ReceiverStream<StreamingOutputCallRequest>>,
    ) -> Request<ReceiverStream<StreamingOutputCallRequest>>,
) -> (
    mpsc::Sender<StreamingOutputCallRequest>,
    Result<tonic::Response<tonic::Streaming<StreamingOutputCallResponse>>, Status>,
) {
    let (tx, rx) = mpsc::channel(4);
    let call = client.full_duplex_call(request(Request::new(ReceiverStream::new(rx))));
    (tx, call.await)
}

impl Ctx<'_> {
    fn client(&self) -> Client {
        TestServiceClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    async fn run(&self, case: Case) {
        match case {
            Case::EmptyUnary => self.empty_unary().await,
            Case::LargeUnary => self.large_unary(&mut self.client()).await,
            Case::ClientCompressedUnary => self.client_compressed_unary().await,
            Case::ServerCompressedUnary => self.server_compressed_unary().await,
            Case::ClientStreaming => self.client_streaming().await,
            Case::ClientCompressedStreaming => self.client_compressed_streaming().await,
            Case::ServerStreaming => self.server_streaming().await,
            Case::ServerCompressedStreaming => self.server_compressed_streaming().await,
            Case::PingPong => self.ping_pong().await,
            Case::EmptyStream => self.empty_stream().await,
            Case::CustomMetadata => self.custom_metadata().await,
            Case::StatusCodeAndMessage => {
                self.echo_status(2, "test status message").await;
            }
            Case::SpecialStatusMessage => {
                self.echo_status(
                    2,
                    "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n",
                )
                .await;
            }
            Case::UnimplementedMethod => self.unimplemented_method().await,
            Case::UnimplementedService => self.unimplemented_service().await,
            Case::CancelAfterBegin => self.cancel_after_begin().await,
            Case::CancelAfterFirstResponse => self.cancel_after_first_response().await,
            Case::TimeoutOnSleepingServer => self.timeout_on_sleeping_server().await,
            Case::ConcurrentLargeUnary => self.concurrent_large_unary().await,
        }
    }

    async fn empty_unary(&self) {
        let response = self
            .client()
            .empty_call(Empty {})
            .await
            .expect("empty_unary");
        assert_eq!(response.into_inner(), Empty {});
    }

    async fn large_unary(&self, client: &mut Client) {
        let response = client
            .unary_call(large_request())
            .await
            .expect("large_unary");
        assert_zeros(response.get_ref().payload.as_ref(), 314_159, "large_unary");
    }

    async fn client_compressed_unary(&self) {
        let compressed = SimpleRequest {
            expect_compressed: bool_value(true),
            ..large_request()
        };
        // The probe: sent uncompressed, it must be refused.
        let status = self
            .client()
            .unary_call(compressed.clone())
            .await
            .expect_err("an uncompressed message that claims compression");
        assert_eq!(status.code(), Code::InvalidArgument, "probe: {status:?}");
        let mut gzip = self.client().send_compressed(CompressionEncoding::Gzip);
        let response = gzip.unary_call(compressed).await.expect("compressed");
        assert_zeros(response.get_ref().payload.as_ref(), 314_159, "compressed");
        let uncompressed = SimpleRequest {
            expect_compressed: bool_value(false),
            ..large_request()
        };
        let response = self
            .client()
            .unary_call(uncompressed)
            .await
            .expect("uncompressed");
        assert_zeros(response.get_ref().payload.as_ref(), 314_159, "uncompressed");
    }

    async fn server_compressed_unary(&self) {
        let mut client = self.client().accept_compressed(CompressionEncoding::Gzip);
        for compressed in [true, false] {
            let request = SimpleRequest {
                response_compressed: bool_value(compressed),
                ..large_request()
            };
            let response = client.unary_call(request).await.expect("server_compressed");
            assert_eq!(
                observed(&response).flags(),
                vec![compressed],
                "response_compressed={compressed}: the response's compressed flag"
            );
            assert_zeros(response.get_ref().payload.as_ref(), 314_159, "response");
        }
    }

    async fn client_streaming(&self) {
        let requests = [27_182, 8, 1_828, 45_904].map(|len| StreamingInputCallRequest {
            payload: zeros(len),
            ..StreamingInputCallRequest::default()
        });
        let response = self
            .client()
            .streaming_input_call(futures_util::stream::iter(requests))
            .await
            .expect("client_streaming");
        assert_eq!(response.get_ref().aggregated_payload_size, 74_922);
    }

    async fn client_compressed_streaming(&self) {
        let first = StreamingInputCallRequest {
            expect_compressed: bool_value(true),
            payload: zeros(27_182),
        };
        // The probe: the same first message, uncompressed, must be refused.
        let status = self
            .client()
            .streaming_input_call(futures_util::stream::iter([first.clone()]))
            .await
            .expect_err("an uncompressed message that claims compression");
        assert_eq!(status.code(), Code::InvalidArgument, "probe: {status:?}");
        // tonic compresses all of a call's messages or none: the Recording channel gzips
        // the first message only.
        let second = StreamingInputCallRequest {
            expect_compressed: bool_value(false),
            payload: zeros(45_904),
        };
        let mut request = Request::new(futures_util::stream::iter([first, second]));
        request.extensions_mut().insert(Compress(vec![true, false]));
        let response = self
            .client()
            .streaming_input_call(request)
            .await
            .expect("client_compressed_streaming");
        assert_eq!(response.get_ref().aggregated_payload_size, 73_086);
    }

    async fn server_streaming(&self) {
        let sizes = [31_415, 9, 2_653, 58_979];
        let mut stream = self
            .client()
            .streaming_output_call(output_request(&sizes, 0))
            .await
            .expect("server_streaming")
            .into_inner();
        let responses = collect(&mut stream).await.expect("server_streaming");
        assert_eq!(responses.len(), 4, "exactly four responses");
        for (response, size) in responses.iter().zip(sizes) {
            assert_zeros(response.payload.as_ref(), size as usize, "server_streaming");
        }
    }

    async fn server_compressed_streaming(&self) {
        let mut request = output_request(&[31_415, 92_653], 0);
        request.response_parameters[0].compressed = bool_value(true);
        request.response_parameters[1].compressed = bool_value(false);
        let response = self
            .client()
            .accept_compressed(CompressionEncoding::Gzip)
            .streaming_output_call(request)
            .await
            .expect("server_compressed_streaming");
        let observed = observed(&response);
        let responses = collect(&mut response.into_inner())
            .await
            .expect("server_compressed_streaming");
        assert_eq!(responses.len(), 2, "exactly two responses");
        assert_eq!(observed.flags(), vec![true, false], "compressed flags");
        assert_zeros(responses[0].payload.as_ref(), 31_415, "first response");
        assert_zeros(responses[1].payload.as_ref(), 92_653, "second response");
    }

    async fn ping_pong(&self) {
        let mut client = self.client();
        let (tx, response) = open_duplex(&mut client, |r| r).await;
        let mut stream = response.expect("ping_pong").into_inner();
        for (size, payload) in [(31_415, 27_182), (9, 8), (2_653, 1_828), (58_979, 45_904)] {
            tx.send(output_request(&[size], payload))
                .await
                .expect("send");
            let response = stream
                .message()
                .await
                .expect("ping_pong")
                .expect("a response to each request");
            assert_zeros(response.payload.as_ref(), size as usize, "ping_pong");
        }
        drop(tx);
        assert!(
            stream.message().await.expect("ping_pong end").is_none(),
            "exactly four responses"
        );
    }

    async fn empty_stream(&self) {
        let mut client = self.client();
        let (tx, response) = open_duplex(&mut client, |r| r).await;
        drop(tx);
        let responses = collect(&mut response.expect("empty_stream").into_inner())
            .await
            .expect("empty_stream");
        assert!(responses.is_empty(), "no responses: {responses:?}");
    }

    async fn custom_metadata(&self) {
        const INITIAL_VALUE: &str = "test_initial_metadata_value";
        const TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
        fn with_metadata<T>(mut request: Request<T>) -> Request<T> {
            let metadata = request.metadata_mut();
            metadata.insert(ECHO_INITIAL, MetadataValue::from_static(INITIAL_VALUE));
            metadata.insert_bin(ECHO_TRAILING, MetadataValue::from_bytes(TRAILING_VALUE));
            request
        }
        fn check(head: &HeaderMap, trailers: Option<HeaderMap>, what: &str) {
            assert_eq!(
                head.get(ECHO_INITIAL).map(|v| v.as_bytes()),
                Some(INITIAL_VALUE.as_bytes()),
                "{what}: initial metadata {head:?}"
            );
            let trailers = trailers.unwrap_or_else(|| panic!("{what}: no trailers"));
            let trailing = MetadataMap::from_headers(trailers.clone())
                .get_bin(ECHO_TRAILING)
                .and_then(|v| v.to_bytes().ok());
            assert_eq!(
                trailing.as_deref(),
                Some(TRAILING_VALUE),
                "{what}: trailing metadata {trailers:?}"
            );
            assert!(
                head.get(ECHO_TRAILING).is_none(),
                "{what}: trailing in head"
            );
        }

        let response = self
            .client()
            .unary_call(with_metadata(Request::new(large_request())))
            .await
            .expect("custom_metadata unary");
        let head = response.extensions().get::<ResponseHead>().expect("head");
        check(&head.0, observed(&response).trailers(), "UnaryCall");
        assert_zeros(response.get_ref().payload.as_ref(), 314_159, "UnaryCall");

        let mut client = self.client();
        let (tx, response) = open_duplex(&mut client, with_metadata).await;
        let response = response.expect("custom_metadata duplex");
        tx.send(output_request(&[314_159], 271_828))
            .await
            .expect("send");
        drop(tx);
        let head = response
            .extensions()
            .get::<ResponseHead>()
            .expect("head")
            .clone();
        let observed = observed(&response);
        let responses = collect(&mut response.into_inner())
            .await
            .expect("custom_metadata duplex");
        assert_eq!(responses.len(), 1);
        assert_zeros(responses[0].payload.as_ref(), 314_159, "FullDuplexCall");
        check(&head.0, observed.trailers(), "FullDuplexCall");
    }

    async fn echo_status(&self, code: i32, message: &str) {
        let status = Some(EchoStatus {
            code,
            message: message.to_owned(),
        });
        let got = self
            .client()
            .unary_call(SimpleRequest {
                response_status: status.clone(),
                ..SimpleRequest::default()
            })
            .await
            .expect_err("UnaryCall asked for an error");
        assert_eq!(got.code(), Code::from_i32(code), "UnaryCall: {got:?}");
        assert_eq!(got.message(), message, "UnaryCall");

        let mut client = self.client();
        let (tx, response) = open_duplex(&mut client, |r| r).await;
        tx.send(StreamingOutputCallRequest {
            response_status: status,
            ..StreamingOutputCallRequest::default()
        })
        .await
        .expect("send");
        drop(tx);
        let got = match response {
            Ok(response) => collect(&mut response.into_inner())
                .await
                .expect_err("FullDuplexCall asked for an error"),
            Err(status) => status,
        };
        assert_eq!(got.code(), Code::from_i32(code), "FullDuplexCall: {got:?}");
        assert_eq!(got.message(), message, "FullDuplexCall");
    }

    async fn unimplemented_method(&self) {
        let status = self
            .client()
            .unimplemented_call(Empty {})
            .await
            .expect_err("UnimplementedCall");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    }

    async fn unimplemented_service(&self) {
        let status = UnimplementedServiceClient::new(self.channel.clone())
            .unimplemented_call(Empty {})
            .await
            .expect_err("UnimplementedService");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    }

    /// Waits for the server to report that `method`'s call went away (its handler was
    /// dropped, or its request stream ended with CANCELLED).
    async fn until_server_saw_cancel(&self, method: &'static str) {
        loop {
            match self.server.next_event().await {
                CallEvent::Ended(m, Ending::Dropped | Ending::Status(Code::Cancelled))
                    if m == method => {}
                CallEvent::Ended(m, ending) if m == method => {
                    panic!("{method} ended {ending:?}, not cancelled")
                }
                _ => continue,
            }
            return;
        }
    }

    /// Cancels with tonic's `CancellationHandle` (the request stream fails with CANCELLED,
    /// which resets the call's stream): the caller gets CANCELLED, the server sees the call
    /// go away, and the channel serves the next call. (Dropping a call's future is the other
    /// way to cancel in Rust; it gives the caller no status: `tests/tests/cancel.rs`.)
    async fn cancel_after_begin(&self) {
        let mut client = self.client();
        let mut request =
            Request::new(futures_util::stream::pending::<StreamingInputCallRequest>());
        let cancel = request.cancellation_handle();
        let call = tokio::spawn(async move { client.streaming_input_call(request).await });
        assert_eq!(
            self.server.next_event().await,
            CallEvent::Started("StreamingInputCall")
        );
        cancel.cancel();
        let status = call
            .await
            .expect("the call's task")
            .expect_err("a cancelled call");
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
        self.until_server_saw_cancel("StreamingInputCall").await;
        self.large_unary(&mut self.client()).await;
    }

    async fn cancel_after_first_response(&self) {
        let mut client = self.client();
        let mut cancel = None;
        let (tx, response) = open_duplex(&mut client, |mut r| {
            cancel = Some(r.cancellation_handle());
            r
        })
        .await;
        let mut stream = response.expect("cancel_after_first_response").into_inner();
        tx.send(output_request(&[31_415], 27_182))
            .await
            .expect("send");
        let first = stream
            .message()
            .await
            .expect("first response")
            .expect("a response");
        assert_zeros(first.payload.as_ref(), 31_415, "first response");
        // Cancel with the request stream still open.
        cancel.expect("a cancellation handle").cancel();
        let status = collect(&mut stream).await.expect_err("a cancelled call");
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
        drop(tx);
        self.until_server_saw_cancel("FullDuplexCall").await;
        self.large_unary(&mut self.client()).await;
    }

    async fn timeout_on_sleeping_server(&self) {
        let mut client = self.client();
        let (tx, response) = open_duplex(&mut client, |mut r| {
            r.set_timeout(Duration::from_millis(1));
            r
        })
        .await;
        // The request stream stays open (no half-close) and asks for nothing: the server
        // sleeps until the deadline.
        let _ = tx.send(output_request(&[], 27_182)).await;
        let status = match response {
            Ok(response) => collect(&mut response.into_inner())
                .await
                .expect_err("the deadline passes"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        drop(tx);
    }

    async fn concurrent_large_unary(&self) {
        let calls = (0..100).map(|_| async {
            let mut client = self.client();
            self.large_unary(&mut client).await;
        });
        futures_util::future::join_all(calls).await;
        let stats = &self.server.server.stats;
        assert_eq!(
            stats.connections(),
            1,
            "one connection carried all 100 calls (QUIC {}, TCP {})",
            stats.quic_connections(),
            stats.tcp_connections()
        );
    }
}
