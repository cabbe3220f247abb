//! Misbehaving peers: malformed frames, truncated streams and resets at every point end that
//! call with a clear status (or a reset), never a panic or a hang, and the connection's other
//! calls carry on.

use std::time::Duration;

use bytes::Bytes;
use quicrpc_tests::pb::{EchoReply, EchoRequest};
use quicrpc_tests::raw::{
    Answer, RawClient, RawResponse, RawServer, data_message, frame_with_len, raw_fields,
    read_response, request_head, response_head, status_trailers,
};
use quicrpc_tests::{Event, TestServer, echo, within};
use quicrpc_wire::frame;
use tonic::Code;

const UNARY: &str = "/quicrpc.testing.Echo/Unary";

async fn exchange(client: &RawClient, frames: &[Bytes], fin: bool) -> RawResponse {
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    let (_send, recv) = client.send(&bytes, fin).await;
    within("raw response", read_response(recv)).await
}

#[tokio::test]
async fn malformed_requests_get_a_status_and_the_connection_carries_on() {
    let server = TestServer::start().await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    let head = request_head(UNARY, &[]);
    let message = data_message(&echo("m"));
    let cases: Vec<(&str, Vec<Bytes>, bool, Code)> = vec![
        ("stream ends before any frame", vec![], true, Code::Internal),
        (
            "head cut short",
            vec![frame_with_len(frame::HEADERS, 50, b"abc")],
            true,
            Code::Internal,
        ),
        (
            "DATA before HEADERS",
            vec![message.clone()],
            true,
            Code::Internal,
        ),
        (
            "TRAILERS first",
            vec![raw_fields(frame::TRAILERS, &[(b":path", UNARY.as_bytes())])],
            true,
            Code::Internal,
        ),
        (
            "uppercase field name",
            vec![raw_fields(
                frame::HEADERS,
                &[(b":path", UNARY.as_bytes()), (b"X-Bad", b"1")],
            )],
            true,
            Code::Internal,
        ),
        (
            "no :path",
            vec![raw_fields(
                frame::HEADERS,
                &[(b"content-type", b"application/grpc")],
            )],
            true,
            Code::Internal,
        ),
        (
            "control characters in :path",
            vec![raw_fields(
                frame::HEADERS,
                &[(
                    b":path",
                    b"/quicrpc.testing.Echo/Unary\x1b[2J\r\nforged log line",
                )],
            )],
            true,
            Code::Internal,
        ),
        (
            "unknown pseudo-field",
            vec![raw_fields(frame::HEADERS, &[(b":method", b"POST")])],
            true,
            Code::Internal,
        ),
        (
            "invalid :priority",
            vec![raw_fields(
                frame::HEADERS,
                &[(b":path", UNARY.as_bytes()), (b":priority", b"urgent")],
            )],
            true,
            Code::Internal,
        ),
        (
            "head over the metadata limit",
            vec![frame_with_len(frame::HEADERS, 1 << 20, b"")],
            false,
            Code::ResourceExhausted,
        ),
        (
            "malformed grpc-timeout",
            vec![
                request_head(UNARY, &[("grpc-timeout", "soon")]),
                message.clone(),
            ],
            true,
            Code::Internal,
        ),
        (
            "message cut short",
            vec![
                head.clone(),
                frame::encode(frame::DATA, &[0, 0, 0, 0, 100, 1, 2, 3]),
            ],
            true,
            Code::Internal,
        ),
        (
            "DATA frame cut short",
            vec![head.clone(), frame_with_len(frame::DATA, 100, &[0; 10])],
            true,
            Code::Internal,
        ),
        (
            "second HEADERS",
            vec![head.clone(), head.clone()],
            true,
            Code::Internal,
        ),
        ("no message", vec![head.clone()], true, Code::Internal),
        (
            "message over the limit, from its prefix alone",
            vec![
                head.clone(),
                frame_with_len(frame::DATA, 5, &[0, 0xff, 0xff, 0xff, 0xff]),
            ],
            false,
            Code::ResourceExhausted,
        ),
    ];
    // Streams left open on purpose (no FIN) stay open while the other cases run.
    let mut held = Vec::new();
    for (name, frames, fin, want) in cases {
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let (send, recv) = client.send(&bytes, fin).await;
        held.push(send);
        let response = within(name, read_response(recv)).await;
        assert_eq!(response.code(), Some(want), "{name}: {response:?}");
    }
    // Unknown frame types are skipped.
    let response = exchange(
        &client,
        &[
            head.clone(),
            frame::encode(0x21, b"extension"),
            message.clone(),
        ],
        true,
    )
    .await;
    assert_eq!(response.code(), Some(Code::Ok), "{response:?}");
    assert_eq!(response.message::<EchoReply>().message, "m");
    // And a regular client is served as usual.
    let mut regular = server.client().await;
    within("regular call", regular.unary(echo("fine")))
        .await
        .unwrap();
}

#[tokio::test]
async fn resets_at_any_point_end_only_that_call() {
    let server = TestServer::start().await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    let good = [request_head(UNARY, &[]), data_message(&echo("ok"))];

    // Reset before anything was sent, right after the head, and in the middle of a message.
    let streaming = request_head("/quicrpc.testing.Echo/ClientStream", &[]);
    let partial = frame::encode(frame::DATA, &[0, 0, 0, 0, 50, 1, 2]);
    for (name, frames) in [
        ("reset before the head", vec![]),
        ("reset after the head", vec![streaming.clone()]),
        (
            "reset during DATA",
            vec![streaming.clone(), data_message(&echo("x")), partial.clone()],
        ),
        (
            "reset after the last DATA",
            vec![streaming.clone(), data_message(&echo("x"))],
        ),
    ] {
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let (mut send, recv) = client.conn.open_bi().await.unwrap();
        if !bytes.is_empty() {
            send.write_all(&bytes).await.unwrap();
        }
        send.reset(quinn::VarInt::from_u32(0x1)).unwrap();
        // Whatever the server answers (a status, a reset, or nothing when it never saw the
        // stream), it answers promptly, and the next call on the connection works.
        let _ = within(name, read_response(recv)).await;
        let response = exchange(&client, &good, true).await;
        assert_eq!(
            response.code(),
            Some(Code::Ok),
            "after {name}: {response:?}"
        );
    }

    // The client stops reading: the handler is dropped.
    let (_send, mut recv) = client
        .send(
            &[
                request_head("/quicrpc.testing.Echo/Hang", &[]),
                data_message(&echo("h")),
            ]
            .concat(),
            true,
        )
        .await;
    assert_eq!(server.next_event().await, Event::HangStarted);
    recv.stop(quinn::VarInt::from_u32(0x1)).unwrap();
    assert_eq!(server.next_event().await, Event::HangDropped);
    let response = exchange(&client, &good, true).await;
    assert_eq!(response.code(), Some(Code::Ok));
}

#[tokio::test]
async fn server_enforces_deadlines_without_the_client() {
    let server = TestServer::start().await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    // A raw client that never cancels: the server's own timer ends the call.
    let frames = [
        request_head("/quicrpc.testing.Echo/Hang", &[("grpc-timeout", "100m")]),
        data_message(&echo("h")),
    ];
    let response = exchange(&client, &frames, true).await;
    assert_eq!(
        response.code(),
        Some(Code::DeadlineExceeded),
        "{response:?}"
    );
    assert_eq!(server.next_event().await, Event::HangStarted);
    assert_eq!(server.next_event().await, Event::HangDropped);
}

/// Calls `/raw.Case/{case}` on a raw server through a real channel.
async fn call_case(channel: &quicrpc::Channel, case: &str) -> Result<EchoReply, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default();
    let path = http::uri::PathAndQuery::try_from(format!("/raw.Case/{case}")).unwrap();
    let mut request = tonic::Request::new(echo(case));
    request.set_timeout(Duration::from_secs(10));
    grpc.unary(request, path, codec)
        .await
        .map(tonic::Response::into_inner)
}

fn raw_answer(path: &str) -> Answer {
    let head = response_head(&[]);
    let reply = data_message(&EchoReply {
        message: "ok".into(),
        ..EchoReply::default()
    });
    let case = path.trim_start_matches("/raw.Case/");
    match case {
        "ok" => Answer::Finish(vec![head, reply, status_trailers(Code::Ok)]),
        "fin_no_head" => Answer::Finish(vec![]),
        "data_first" => Answer::Finish(vec![reply]),
        "bad_field_name" => Answer::Finish(vec![raw_fields(frame::HEADERS, &[(b"Bad", b"x")])]),
        "pseudo_in_response" => {
            Answer::Finish(vec![raw_fields(frame::HEADERS, &[(b":status", b"200")])])
        }
        "no_trailers" => Answer::Finish(vec![head, reply]),
        "frame_cut_short" => Answer::Finish(vec![head, frame_with_len(frame::DATA, 100, &[0; 10])]),
        "huge_head" => Answer::Finish(vec![frame_with_len(frame::HEADERS, 1 << 20, b"")]),
        "huge_message" => Answer::Finish(vec![
            head,
            frame_with_len(frame::DATA, 5, &[0, 0xff, 0xff, 0xff, 0xff]),
        ]),
        "bad_details" => Answer::Finish(vec![response_head(&[
            ("grpc-status", "2"),
            ("grpc-status-details-bin", "!!!"),
        ])]),
        "bad_details_in_trailers" => Answer::Finish(vec![
            head,
            reply,
            raw_fields(
                frame::TRAILERS,
                &[(b"grpc-status", b"2"), (b"grpc-status-details-bin", b"*")],
            ),
        ]),
        "garbage_status" => Answer::Finish(vec![response_head(&[("grpc-status", "abc")])]),
        "data_after_trailers" => {
            Answer::Finish(vec![head, reply.clone(), status_trailers(Code::Ok), reply])
        }
        "reset_cancelled" => Answer::Reset(vec![], 0x1),
        "reset_refused" => Answer::Reset(vec![], 0x2),
        "reset_unknown_code" => Answer::Reset(vec![], 0x99),
        "reset_mid_body" => Answer::Reset(
            vec![head, frame::encode(frame::DATA, &[0, 0, 0, 0, 9, 1])],
            0x5,
        ),
        "close_connection" => Answer::CloseConnection,
        other => panic!("unknown case {other}"),
    }
}

#[tokio::test]
async fn malformed_responses_give_the_client_a_status_not_a_panic() {
    quicrpc_tests::trace_init();
    let server = RawServer::start(raw_answer).await;
    let channel = within("connect", server.channel()).await;
    assert_eq!(
        within("ok", call_case(&channel, "ok"))
            .await
            .unwrap()
            .message,
        "ok"
    );
    let cases = [
        ("fin_no_head", Code::Internal),
        ("data_first", Code::Internal),
        ("bad_field_name", Code::Internal),
        ("pseudo_in_response", Code::Internal),
        ("no_trailers", Code::Internal),
        ("frame_cut_short", Code::Internal),
        ("huge_head", Code::ResourceExhausted),
        ("huge_message", Code::ResourceExhausted),
        ("bad_details", Code::Internal),
        ("bad_details_in_trailers", Code::Internal),
        ("garbage_status", Code::Unknown),
        ("reset_cancelled", Code::Cancelled),
        ("reset_refused", Code::Unavailable),
        ("reset_unknown_code", Code::Internal),
        ("reset_mid_body", Code::Internal),
        ("close_connection", Code::Unavailable),
    ];
    for (case, want) in cases {
        let status = within(case, call_case(&channel, case)).await.unwrap_err();
        assert_eq!(status.code(), want, "{case}: {status:?}");
        // The channel keeps working (reconnecting after the connection was closed).
        assert_eq!(
            within("ok", call_case(&channel, "ok"))
                .await
                .unwrap()
                .message,
            "ok",
            "after {case}"
        );
    }
    // Anything after the trailers is ignored: the call is over.
    assert_eq!(
        within(
            "data_after_trailers",
            call_case(&channel, "data_after_trailers")
        )
        .await
        .unwrap()
        .message,
        "ok"
    );
}

#[tokio::test]
async fn dropping_the_channel_closes_its_connection() {
    let server = RawServer::start(raw_answer).await;
    let channel = within("connect", server.channel()).await;
    assert_eq!(
        within("ok", call_case(&channel, "ok"))
            .await
            .unwrap()
            .message,
        "ok"
    );
    drop(channel);
    // Keep-alives would hold an abandoned connection open for ever: it must close instead.
    let reason = within("connection closes", async {
        server.closed.lock().await.recv().await
    })
    .await;
    assert!(
        matches!(reason, Some(quinn::ConnectionError::ApplicationClosed(_))),
        "{reason:?}"
    );
}

/// QUIC DATAGRAM frames carry nothing in quicrpc but a client's one-byte liveness probes, so
/// the server takes only tiny ones: a peer cannot make it buffer more than a few bytes of
/// datagrams that nothing reads (quinn's default would hold up to 1.25 MB per connection).
/// A flood of them leaves calls working.
#[tokio::test]
async fn the_server_takes_only_tiny_datagrams() {
    let server = TestServer::start().await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    let max = client.conn.max_datagram_size().expect("probes are taken");
    assert!(max <= 64, "{max}");
    assert!(matches!(
        client.conn.send_datagram(Bytes::from(vec![0u8; 65])),
        Err(quinn::SendDatagramError::TooLarge)
    ));
    for _ in 0..1_000 {
        let _ = client.conn.send_datagram(Bytes::from_static(b"?"));
    }
    // The connection is fine for calls.
    let response = exchange(
        &client,
        &[request_head(UNARY, &[]), data_message(&echo("after"))],
        true,
    )
    .await;
    assert_eq!(response.code(), Some(Code::Ok), "{response:?}");
}

/// Answers every call with a trailers-only status whose `grpc-status-details-bin` is not
/// base64: what a hostile or broken server could send.
#[derive(Clone)]
struct BadDetails<S>(S);

impl<S> tower::Service<quicrpc::HttpRequest> for BadDetails<S>
where
    S: tower::Service<quicrpc::HttpRequest, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::future::Ready<Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: quicrpc::HttpRequest) -> Self::Future {
        let mut status = tonic::Status::unknown("broken").into_http::<tonic::body::Body>();
        status.headers_mut().insert(
            "grpc-status-details-bin",
            http::HeaderValue::from_static("***not base64***"),
        );
        if request.uri().path() == UNARY {
            // Trailers-only: the status in the head.
            return std::future::ready(Ok(status));
        }
        // A head, and the status in the trailers.
        let mut trailers = status.headers().clone();
        trailers.remove(http::header::CONTENT_TYPE);
        let mut response =
            http::Response::new(tonic::body::Body::new(TrailersOnly(Some(trailers))));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        std::future::ready(Ok(response))
    }
}

/// A body of trailers alone.
struct TrailersOnly(Option<http::HeaderMap>);

impl http_body::Body for TrailersOnly {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        std::task::Poll::Ready(self.0.take().map(|t| Ok(http_body::Frame::trailers(t))))
    }
}

/// A status whose details are not base64 gives the client a clear status on both
/// transports, not a panic.
#[tokio::test]
async fn status_details_that_are_not_base64_give_a_status_on_both_transports() {
    let server = TestServer::start_with(quicrpc_tests::TestOptions::default(), |b| {
        b.layer(tower::layer::layer_fn(BadDetails))
    })
    .await;
    for policy in [quicrpc::Fallback::QuicOnly, quicrpc::Fallback::TcpOnly] {
        let mut client = server.client_over(policy).await;
        let mut streaming = client.clone();
        let in_head = tokio::spawn(async move { client.unary(echo("details")).await });
        let in_trailers = tokio::spawn(async move {
            let mut replies = streaming.server_stream(echo("details")).await?.into_inner();
            while replies.message().await?.is_some() {}
            Ok(())
        });
        let in_head = within("trailers-only", in_head)
            .await
            .unwrap_or_else(|panic| panic!("{policy:?}: the client panicked: {panic}"))
            .map(|_| ());
        let in_trailers = within("trailers", in_trailers)
            .await
            .unwrap_or_else(|panic| panic!("{policy:?}: the client panicked: {panic}"));
        for (case, result) in [("in the head", in_head), ("in the trailers", in_trailers)] {
            let status = result.expect_err("an error status");
            assert_eq!(
                status.code(),
                Code::Internal,
                "{policy:?} {case}: {status:?}"
            );
            assert!(
                status.message().contains("grpc-status-details-bin"),
                "{policy:?} {case}: {status:?}"
            );
        }
    }
}

/// Frames of unknown type may come before a request's HEADERS (extensions), but no more of
/// them than a head may hold (16 KiB by default): a client cannot keep a stream busy before
/// it says what it is. A small one is skipped and the call runs.
#[tokio::test]
async fn unknown_frames_before_the_head_are_bounded() {
    let server = TestServer::start().await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    let call = |unknown_len: usize| {
        vec![
            frame_with_len(0x21, unknown_len as u64, &vec![0; unknown_len]),
            request_head(UNARY, &[]),
            data_message(&echo("after unknown frames")),
        ]
    };
    let small = exchange(&client, &call(100), true).await;
    assert_eq!(small.code(), Some(Code::Ok), "{small:?}");
    let large = exchange(&client, &call(32 * 1024), true).await;
    assert_eq!(large.code(), Some(Code::ResourceExhausted), "{large:?}");
    let after = exchange(&client, &call(100), true).await;
    assert_eq!(after.code(), Some(Code::Ok), "{after:?}");
}

/// The transport parameters allow a client a few unidirectional streams (an HTTP/3 client on
/// the same endpoint needs them), but a quicrpc/1 client has no use for one: the server stops
/// it with PROTOCOL_ERROR, and the connection carries on.
#[tokio::test]
async fn a_unidirectional_stream_from_a_quicrpc_client_is_stopped() {
    let server = TestServer::start().await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    let mut uni = client
        .conn
        .open_uni()
        .await
        .expect("the server allows some");
    // A stream exists for the peer once a frame of it is sent.
    uni.write_all(b"x").await.expect("write");
    let stopped = within("stopped", uni.stopped()).await.expect("stopped");
    assert_eq!(
        stopped,
        Some(quicrpc_wire::code::ErrorCode::ProtocolError.to_u32().into())
    );
    let (_send, recv) = client.call(UNARY, &echo("still here")).await;
    let response = within("call", read_response(recv)).await;
    assert_eq!(response.code(), Some(Code::Ok));
}
