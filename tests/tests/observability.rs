//! Metrics through the `metrics` facade: calls started and finished by side, method, code and
//! transport, their latency, 0-RTT outcomes, and QUIC writes that waited. Each test counts on
//! a recorder of its own ([`LocalMetrics`]), so they run in parallel.

use std::time::Duration;

use quicrpc::{Fallback, ZeroRtt};
use quicrpc_tests::local_metrics::LocalMetrics;
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, within};
use tonic::Code;

const UNARY: &str = "/quicrpc.testing.Echo/Unary";
const STARTED: &str = "quicrpc_calls_started_total";
const FINISHED: &str = "quicrpc_calls_finished_total";
const DURATION: &str = "quicrpc_call_duration_seconds";

/// The labels of a call's series: `side`, `method`, `transport`, and `code` if given.
fn call<'a>(
    side: &'a str,
    method: &'a str,
    transport: &'a str,
    code: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("side", side), ("method", method), ("transport", transport)];
    labels.extend(code.map(|code| ("code", code)));
    labels
}

#[tokio::test]
async fn unary_calls_are_counted_by_side_and_code() {
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    let mut client = server.client().await;
    within("ok", client.unary(echo("a"))).await.unwrap();
    within("ok", client.unary(echo("b"))).await.unwrap();
    let failing = EchoRequest {
        fail_code: Code::NotFound as i32,
        ..echo("")
    };
    within("fails", client.unary(failing)).await.unwrap_err();

    let finished = |side, code| call(side, UNARY, "quic", Some(code));
    assert_eq!(metrics.get(FINISHED, &finished("client", "OK")), 2);
    assert_eq!(metrics.get(FINISHED, &finished("client", "NOT_FOUND")), 1);
    // The server records a call just after its last frame leaves: it may trail the client.
    metrics
        .reaches(FINISHED, &finished("server", "OK"), 2)
        .await;
    metrics
        .reaches(FINISHED, &finished("server", "NOT_FOUND"), 1)
        .await;
    for side in ["client", "server"] {
        let any = call(side, UNARY, "quic", None);
        assert_eq!(metrics.get(STARTED, &any), 3, "{side}");
        assert_eq!(metrics.get(DURATION, &any), 3, "{side}");
    }
}

#[tokio::test]
async fn tcp_calls_are_counted_as_tcp() {
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    let channel = server
        .any_transport_builder()
        .fallback(Fallback::TcpOnly)
        .connect();
    let mut client = EchoClient::new(within("connect over TCP", channel).await.unwrap());
    within("ok over tcp", client.unary(echo("c")))
        .await
        .unwrap();

    let ok = |side| call(side, UNARY, "tcp", Some("OK"));
    assert_eq!(metrics.get(FINISHED, &ok("client")), 1);
    metrics.reaches(FINISHED, &ok("server"), 1).await;
    for side in ["client", "server"] {
        assert_eq!(metrics.get(STARTED, &call(side, UNARY, "tcp", None)), 1);
        assert_eq!(metrics.get(STARTED, &call(side, UNARY, "quic", None)), 0);
    }
}

#[tokio::test]
async fn a_streaming_call_is_finished_by_its_trailers() {
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        response_count: 3,
        ..echo("s")
    };
    let mut stream = within("stream", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    let method = "/quicrpc.testing.Echo/ServerStream";
    let finished = |side| call(side, method, "quic", Some("OK"));
    within("first reply", stream.message())
        .await
        .unwrap()
        .expect("a reply");
    // Not before its end: the client has had a reply, not the status.
    assert_eq!(metrics.get(FINISHED, &finished("client")), 0);

    while within("reply", stream.message()).await.unwrap().is_some() {}
    assert_eq!(metrics.get(FINISHED, &finished("client")), 1);
    metrics.reaches(FINISHED, &finished("server"), 1).await;
}

#[tokio::test]
async fn a_passed_deadline_is_counted_as_deadline_exceeded() {
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(echo("hang"));
    request.set_timeout(Duration::from_millis(100));
    let status = within("hang", client.hang(request)).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let hang = "/quicrpc.testing.Echo/Hang";
    let exceeded = call("client", hang, "quic", Some("DEADLINE_EXCEEDED"));
    assert_eq!(metrics.get(FINISHED, &exceeded), 1);
    assert_eq!(
        metrics.get(DURATION, &call("client", hang, "quic", None)),
        1
    );
}

#[tokio::test]
async fn zero_rtt_is_counted_on_both_sides() {
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    // A full handshake leaves the process a session ticket for this server (it comes before
    // the first response)...
    within("first call", server.client().await.unary(echo("warm up")))
        .await
        .unwrap();
    let zero_rtt = "quicrpc_client_zero_rtt_total";
    assert_eq!(metrics.get(zero_rtt, &[("outcome", "offered")]), 0);

    // ...which a new channel resumes, sending a replay-safe call as early data.
    let mut resumed = EchoClient::new(server.channel_builder().connect_lazy().unwrap());
    let response = within("early call", resumed.lookup(echo("early")))
        .await
        .unwrap();
    assert_eq!(
        response.extensions().get::<ZeroRtt>(),
        Some(&ZeroRtt::Accepted)
    );
    assert_eq!(metrics.get(zero_rtt, &[("outcome", "offered")]), 1);
    // Counted before the handler runs.
    let early_calls = "quicrpc_server_early_calls_total";
    assert_eq!(metrics.get(early_calls, &[("outcome", "run")]), 1);
    assert_eq!(metrics.get(early_calls, &[("outcome", "refused")]), 0);
    // Counted when the handshake completes, which the response may beat.
    metrics
        .reaches(zero_rtt, &[("outcome", "accepted")], 1)
        .await;
    assert_eq!(metrics.get(zero_rtt, &[("outcome", "rejected")]), 0);
}

/// A QUIC write that waits for room is recorded by side, priority and kind of wait: the
/// server's writes of an 8 MiB BULK download (`Fetch`) wait for the client's
/// acknowledgements once a send window of data is out.
#[tokio::test]
async fn writes_that_wait_for_room_are_recorded_by_priority() {
    const WAIT: &str = "quicrpc_quic_write_wait_seconds";
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        response_count: 64,
        response_size: 128 * 1024,
        ..echo("bulk")
    };
    let mut replies = within("fetch", client.fetch(request))
        .await
        .expect("fetch starts")
        .into_inner();
    let mut received = 0;
    while within("a reply", replies.message())
        .await
        .expect("reply")
        .is_some()
    {
        received += 1;
    }
    assert_eq!(received, 64);
    let blocked = [
        ("side", "server"),
        ("priority", "bulk"),
        ("wait", "blocked"),
    ];
    assert!(
        metrics.get(WAIT, &blocked) > 0,
        "no server write of the download waited for room"
    );
    // Nothing more urgent was under way, so nothing was held back.
    let held = [("side", "server"), ("priority", "bulk"), ("wait", "held")];
    assert_eq!(metrics.get(WAIT, &held), 0);
}

/// The server labels a method no method table knows `unknown`, on both transports: the path
/// comes from the client, and a label per path would grow every recorder without bound.
#[tokio::test]
async fn methods_no_table_knows_are_labelled_unknown_on_the_server() {
    const PATH: &str = "/nope.Missing/Call";
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    let quic = server.channel_over(Fallback::QuicOnly).await;
    let tcp = server.channel_over(Fallback::TcpOnly).await;
    for (channel, transport) in [(quic, "quic"), (tcp, "tcp")] {
        let mut grpc = tonic::client::Grpc::new(channel);
        within("ready", grpc.ready()).await.expect("ready");
        let codec = tonic_prost::ProstCodec::<EchoRequest, EchoRequest>::default();
        let path = http::uri::PathAndQuery::from_static(PATH);
        let status = within(
            "call",
            grpc.unary(tonic::Request::new(echo("x")), path, codec),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        let unknown = call("server", "unknown", transport, Some("UNIMPLEMENTED"));
        metrics.reaches(FINISHED, &unknown, 1).await;
        let by_path = call("server", PATH, transport, None);
        assert_eq!(metrics.get(STARTED, &by_path), 0, "{transport}");
    }
}
