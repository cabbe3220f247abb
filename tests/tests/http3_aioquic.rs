//! gRPC over HTTP/3 with Python's aioquic as the peer: QUIC and HTTP/3 written by nobody
//! here, gRPC's framing, statuses and cancellation written in the scripts from the specs
//! (`tests/python/h3_grpc*.py`).
//!
//! - An aioquic client (`h3_grpc_client.py`) calls quicrpc's server: client and bidirectional
//!   streaming, cancels, and the receive limit, all on one connection. At each cancel the
//!   script waits, its connection still open, until this test has checked that the server
//!   ended the call (its stats, metrics and the service's events), and then the same
//!   connection must serve the next call.
//! - An aioquic server (`h3_grpc_server.py`) serves the same `Echo` service to the hyperium
//!   `h3` client and to quicrpc's own channel over HTTP/3 (`QuicWire::Http3`, and
//!   `QuicWire::Auto`, which must settle on HTTP/3 with a server that speaks nothing else):
//!   replies, statuses, and requests refused with a reset.
//!
//! They need python3 with aioquic, grpcio-tools and grpcio (`.ci/run` installs them); the
//! tests fail loudly without them.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use quicrpc_tests::local_metrics::LocalMetrics;
use quicrpc_tests::pb::{EchoReply, EchoRequest};
use quicrpc_tests::{Event, TIMEOUT, TestOptions, TestServer, echo, raw, until, within};
use tokio::sync::mpsc;

const SETUP: &str = "it needs python3 -m pip install aioquic grpcio grpcio-tools (.ci/run does)";

/// The server's receive limit in the client test: small, so that the script's messages at
/// and over it stay small too.
const LIMIT: usize = 64 * 1024;

const FINISHED: &str = "quicrpc_calls_finished_total";
const BIDI: &str = "/quicrpc.testing.Echo/Bidi";
const CLIENT_STREAM: &str = "/quicrpc.testing.Echo/ClientStream";
const UNARY: &str = "/quicrpc.testing.Echo/Unary";
const STARTED: &str = "quicrpc_calls_started_total";

// The aioquic client against quicrpc's server.

#[tokio::test]
async fn aioquic_client_streams_cancels_and_meets_the_limit_over_http3() {
    let mut metrics = LocalMetrics::start();
    let (server, passed, checked) = run_aioquic_client(&mut metrics, &[]).await;
    let cases = [
        "unary",
        "client_streaming",
        "bidi_streaming",
        "cancel_bidi",
        "stop_bidi",
        "message_at_limit",
        "message_over_limit",
        "prefix_over_limit",
    ];
    assert_eq!(passed, cases, "the cases that passed");
    assert_eq!(checked, ["bidi_cancelled", "bidi_stopped"]);
    // Server-side facts: the upload ended OK, both messages over the limit ended
    // RESOURCE_EXHAUSTED, and one connection carried every call.
    metrics
        .reaches(FINISHED, &finished(CLIENT_STREAM, "OK"), 1)
        .await;
    metrics
        .reaches(FINISHED, &finished(UNARY, "RESOURCE_EXHAUSTED"), 2)
        .await;
    assert_eq!(server.stats.connections_opened(), 1);
}

/// Runs the script's `case` alone and checks that it passed and that the server counted
/// one call of `method` ending with `code`.
async fn aioquic_client_case(case: &str, method: &str, code: &str) {
    let mut metrics = LocalMetrics::start();
    let (server, passed, _) = run_aioquic_client(&mut metrics, &[case]).await;
    assert_eq!(passed, [case]);
    metrics.reaches(FINISHED, &finished(method, code), 1).await;
    assert_eq!(server.stats.connections_opened(), 1);
}

// A client that resets its request mid-stream with H3_REQUEST_CANCELLED and reads on
// should get CANCELLED, and the server should count the call CANCELLED. Both get OK today:
// the server's HTTP/3 request body reports the reset as a CANCELLED error, and tonic's
// decoder reads a CANCELLED request error as a clean end of stream, so the handler answers
// as if the request had ended: an upload is taken whole from the messages that came before
// the reset.

#[tokio::test]
async fn aioquic_client_resetting_a_bidi_request_gets_cancelled() {
    aioquic_client_case("reset_bidi", BIDI, "CANCELLED").await;
}

#[tokio::test]
async fn aioquic_client_resetting_an_upload_gets_cancelled() {
    aioquic_client_case("reset_upload", CLIENT_STREAM, "CANCELLED").await;
}

/// A deadline that passes after the response head must end the call with trailers. The
/// server sends a second head instead (`:status` with the status fields): h3 0.0.8's
/// `send_response` does not refuse a second head, which `finish_with_status` counts on. A
/// pseudo-header in a trailer section makes the response malformed (RFC 9114, 4.3), and
/// aioquic closes the whole connection with H3_MESSAGE_ERROR.
#[tokio::test]
async fn aioquic_client_gets_a_deadline_after_the_head_in_trailers() {
    aioquic_client_case(
        "deadline_mid_stream",
        "/quicrpc.testing.Echo/ServerStream",
        "DEADLINE_EXCEEDED",
    )
    .await;
}

/// Runs the aioquic client script against a test server whose receive limit is [`LIMIT`],
/// with `--case` for each of `cases` (none: the script's default cases), answering its
/// checks; returns the server, the cases that passed and the checks made.
async fn run_aioquic_client(
    metrics: &mut LocalMetrics,
    cases: &[&str],
) -> (TestServer, Vec<String>, Vec<String>) {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.max_receive_message_size(LIMIT)
    })
    .await;
    let dir = temp_dir("client");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.cert.ca_pem()).expect("write CA");
    let mut args: Vec<OsString> = vec![
        "--target".into(),
        format!("localhost:{}", server.addr.port()).into(),
        "--ca".into(),
        ca.into(),
        "--limit".into(),
        LIMIT.to_string().into(),
    ];
    for case in cases {
        args.extend(["--case".into(), (*case).into()]);
    }
    let mut script = Script::start("h3_grpc_client.py", &args);
    let (mut passed, mut checked, mut seen) = (Vec::new(), Vec::new(), Seen::default());
    while let Some(line) = script.next_line().await {
        if let Some(case) = line.strip_prefix("PASS ") {
            passed.push(case.to_owned());
        } else if let Some(check) = line.strip_prefix("CHECK ") {
            // The script waits here with its connection open: what is checked must hold
            // now, not only once the connection has closed.
            answer_check(check, &server, metrics, &passed, &mut seen).await;
            checked.push(check.to_owned());
            script.answer("ok");
        }
    }
    script.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
    (server, passed, checked)
}

/// What the checks have seen of the server so far.
#[derive(Debug, Default)]
struct Seen {
    /// Bidi calls the server counted CANCELLED.
    bidis_cancelled: u64,
}

/// Checks the server's side at the script's `CHECK <check>`.
async fn answer_check(
    check: &str,
    server: &TestServer,
    metrics: &mut LocalMetrics,
    passed: &[String],
    seen: &mut Seen,
) {
    let earlier = |case: &str| passed.iter().filter(|p| *p == case).count() as u64;
    match check {
        // RESET_STREAM and STOP_SENDING: the call is over on the server, the connection
        // open. (Whether it ended CANCELLED or as a request that ended depends on which
        // the server saw first: see aioquic_client_resetting_a_bidi_request_gets_cancelled.)
        "bidi_cancelled" => {
            bidi_ended(server, metrics, passed).await;
        }
        // STOP_SENDING alone, the request still open: the handler waits for a next message,
        // and only the stopped response can end it, CANCELLED.
        "bidi_stopped" => {
            assert_eq!(
                server.next_event().await,
                Event::StreamAbandoned,
                "the handler's reply stream was dropped"
            );
            bidi_ended(server, metrics, passed).await;
            assert_eq!(
                metrics.get(FINISHED, &finished(BIDI, "CANCELLED")),
                seen.bidis_cancelled + 1,
                "the stopped call counted CANCELLED"
            );
        }
        // The upload's head has reached its handler (the reset must not overtake it).
        "upload_started" => {
            let uploads = earlier("client_streaming") + earlier("reset_upload") + 1;
            let labels = [
                ("side", "server"),
                ("method", CLIENT_STREAM),
                ("transport", "h3"),
            ];
            metrics.reaches(STARTED, &labels, uploads).await;
        }
        other => panic!("unknown check {other:?}"),
    }
    seen.bidis_cancelled = metrics.get(FINISHED, &finished(BIDI, "CANCELLED"));
    assert_eq!(server.stats.quic_connections(), 1, "at {check}");
}

/// Waits until the server has no call in progress and has counted every Bidi call the
/// script made, the one at this check included, as ended (OK or CANCELLED).
async fn bidi_ended(server: &TestServer, metrics: &mut LocalMetrics, passed: &[String]) {
    until("the call is over", || server.stats.calls(), 0).await;
    let bidis = ["bidi_streaming", "cancel_bidi", "stop_bidi", "reset_bidi"]
        .into_iter()
        .map(|case| passed.iter().filter(|p| *p == case).count() as u64)
        .sum::<u64>()
        + 1;
    within("the server counted the call", async {
        loop {
            let ended = metrics.get(FINISHED, &finished(BIDI, "OK"))
                + metrics.get(FINISHED, &finished(BIDI, "CANCELLED"));
            assert!(ended <= bidis, "{ended} Bidi calls ended, {bidis} made");
            if ended == bidis {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// The labels of the server's finished calls of `method` over HTTP/3 with `code`.
fn finished<'a>(method: &'a str, code: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("side", "server"),
        ("method", method),
        ("transport", "h3"),
        ("code", code),
    ]
}

// The aioquic server against hyperium's h3 client.

#[tokio::test]
async fn h3_client_gets_replies_and_statuses_from_the_aioquic_server() {
    let server = AioquicServer::start().await;
    let (_endpoint, mut h3) = h3_connect(server.addr, &server.cert.ca_certificate()).await;

    // Unary, with metadata echoed into the response head; the status in trailers.
    let answer = within(
        "unary",
        call(
            &mut h3,
            "Unary",
            &[echo("to aioquic")],
            &[("x-echo-note", "kept")],
        ),
    )
    .await;
    let head = answer.head.as_ref().expect("a head");
    assert_eq!(head.status(), http::StatusCode::OK, "{answer:?}");
    assert_eq!(
        head.headers().get("x-echo-note").map(|v| v.as_bytes()),
        Some(&b"kept"[..]),
        "{answer:?}"
    );
    assert!(
        answer.trailers.is_some(),
        "a success has trailers: {answer:?}"
    );
    assert_eq!(answer.status().code(), tonic::Code::Ok, "{answer:?}");
    assert_eq!(answer.messages.len(), 1, "{answer:?}");
    assert_eq!(answer.messages[0].message, "to aioquic");

    // A server stream.
    let request = EchoRequest {
        response_count: 3,
        response_size: 5,
        ..echo("s")
    };
    let answer = within(
        "server stream",
        call(&mut h3, "ServerStream", &[request], &[]),
    )
    .await;
    assert_eq!(answer.status().code(), tonic::Code::Ok, "{answer:?}");
    let indexes: Vec<u32> = answer.messages.iter().map(|m| m.index).collect();
    assert_eq!(indexes, [0, 1, 2], "{answer:?}");
    assert!(answer.messages.iter().all(|m| m.payload == [0xab; 5]));

    // A client stream and a bidirectional one (requests sent all at once).
    let abc = ["a", "b", "c"].map(echo);
    let answer = within("client stream", call(&mut h3, "ClientStream", &abc, &[])).await;
    assert_eq!(answer.status().code(), tonic::Code::Ok, "{answer:?}");
    assert_eq!(
        (
            answer.messages[0].message.as_str(),
            answer.messages[0].index
        ),
        ("abc", 3)
    );
    let answer = within("bidi", call(&mut h3, "Bidi", &abc, &[])).await;
    assert_eq!(answer.status().code(), tonic::Code::Ok, "{answer:?}");
    let texts: Vec<&str> = answer.messages.iter().map(|m| m.message.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c"]);

    // An error with a message gRPC must percent-encode: trailers-only.
    let failing = EchoRequest {
        fail_code: tonic::Code::NotFound as i32,
        fail_message: "no such agent: 50%, not %41; ☺ 😈".into(),
        ..echo("")
    };
    let answer = within("failing unary", call(&mut h3, "Unary", &[failing], &[])).await;
    assert!(answer.trailers.is_none(), "trailers-only: {answer:?}");
    assert!(answer.messages.is_empty(), "{answer:?}");
    let status = answer.status();
    assert_eq!(status.code(), tonic::Code::NotFound, "{answer:?}");
    assert_eq!(status.message(), "no such agent: 50%, not %41; ☺ 😈");

    // An error after two replies: in the trailers.
    let failing = EchoRequest {
        response_count: 3,
        fail_code: tonic::Code::FailedPrecondition as i32,
        fail_message: "stopped at two".into(),
        fail_after: 2,
        ..echo("f")
    };
    let answer = within(
        "failing server stream",
        call(&mut h3, "ServerStream", &[failing], &[]),
    )
    .await;
    assert_eq!(answer.messages.len(), 2, "{answer:?}");
    assert!(answer.trailers.is_some(), "{answer:?}");
    let status = answer.status();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{answer:?}");
    assert_eq!(status.message(), "stopped at two");

    // A method it does not have.
    let answer = within("unknown method", call(&mut h3, "Nope", &[echo("x")], &[])).await;
    assert_eq!(
        answer.status().code(),
        tonic::Code::Unimplemented,
        "{answer:?}"
    );

    drop(h3);
    server.stop().await;
}

#[tokio::test]
async fn the_aioquic_server_resets_requests_on_demand() {
    let server = AioquicServer::start().await;
    let (_endpoint, mut h3) = h3_connect(server.addr, &server.cert.ca_certificate()).await;

    // Refused before any response: H3_REQUEST_REJECTED, the code that says the request was
    // not processed (a client may retry it; gRFC G2 maps it to UNAVAILABLE).
    let rejected = [("x-reset-code", "0x10b")];
    let answer = within(
        "rejected",
        call(&mut h3, "Unary", &[echo("refuse me")], &rejected),
    )
    .await;
    assert!(answer.head.is_none(), "no response: {answer:?}");
    assert_eq!(answer.reset_code(), Some(0x10b), "{answer:?}");

    // Any code can be asked for: H3_REQUEST_CANCELLED here.
    let cancelled = [("x-reset-code", "0x10c")];
    let answer = within(
        "reset with another code",
        call(&mut h3, "ServerStream", &[echo("s")], &cancelled),
    )
    .await;
    assert!(answer.head.is_none(), "no response: {answer:?}");
    assert_eq!(answer.reset_code(), Some(0x10c), "{answer:?}");

    // The connection carries on.
    let answer = within(
        "after the resets",
        call(&mut h3, "Unary", &[echo("still")], &[]),
    )
    .await;
    assert_eq!(answer.status().code(), tonic::Code::Ok, "{answer:?}");
    assert_eq!(answer.messages[0].message, "still");

    drop(h3);
    server.stop().await;
}

// quicrpc's own client against the aioquic server.

#[tokio::test]
async fn quicrpc_client_calls_the_aioquic_server_over_http3() {
    use quicrpc::{QuicWire, Transport};
    use quicrpc_tests::pb::echo_client::EchoClient;

    let server = AioquicServer::start().await;
    for wire in [QuicWire::Http3, QuicWire::Auto] {
        let connect =
            quicrpc::Channel::builder(format!("https://localhost:{}", server.addr.port()))
                .ca_certificate(server.cert.ca_certificate())
                .fallback(quicrpc::Fallback::QuicOnly)
                .quic_wire(wire)
                .connect();
        let channel = within("connect", connect)
            .await
            .unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        assert_eq!(channel.transport(), Transport::Http3, "{wire:?}");
        let mut client = EchoClient::new(channel);

        let mut request = tonic::Request::new(echo("to aioquic"));
        request
            .metadata_mut()
            .insert("x-echo-note", "kept".parse().expect("ASCII"));
        let response = within("unary", client.unary(request))
            .await
            .unwrap_or_else(|s| panic!("{wire:?}: {s:?}"));
        assert_eq!(response.extensions().get(), Some(&Transport::Http3));
        assert_eq!(response.metadata().get("x-echo-note").unwrap(), "kept");
        assert_eq!(response.into_inner().message, "to aioquic");

        let request = EchoRequest {
            response_count: 3,
            response_size: 5,
            ..echo("s")
        };
        let mut stream = within("server stream", client.server_stream(request))
            .await
            .expect("open")
            .into_inner();
        let mut indexes = Vec::new();
        while let Some(reply) = within("next", stream.message()).await.expect("reply") {
            assert_eq!(reply.payload, [0xab; 5]);
            indexes.push(reply.index);
        }
        assert_eq!(indexes, [0, 1, 2]);

        let requests = tokio_stream::iter(["a", "b", "c"].map(echo));
        let reply = within("client stream", client.client_stream(requests))
            .await
            .expect("client stream")
            .into_inner();
        assert_eq!((reply.message.as_str(), reply.index), ("abc", 3));

        let failing = EchoRequest {
            fail_code: tonic::Code::NotFound as i32,
            fail_message: "no such agent: 50%, ☺".into(),
            ..echo("")
        };
        let status = within("failing unary", client.unary(failing))
            .await
            .expect_err("fails");
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "no such agent: 50%, ☺");

        let failing = EchoRequest {
            response_count: 3,
            fail_code: tonic::Code::FailedPrecondition as i32,
            fail_message: "stopped at two".into(),
            fail_after: 2,
            ..echo("f")
        };
        let mut stream = within("failing stream", client.server_stream(failing))
            .await
            .expect("open")
            .into_inner();
        let mut replies = 0;
        let status = loop {
            match within("next", stream.message()).await {
                Ok(Some(_)) => replies += 1,
                Ok(None) => panic!("ended without its failure"),
                Err(status) => break status,
            }
        };
        assert_eq!(
            (replies, status.code()),
            (2, tonic::Code::FailedPrecondition)
        );

        // Resets map to statuses as gRFC G2 says, and the connection carries on.
        for (code, expected) in [
            ("0x10b", tonic::Code::Unavailable),
            ("0x10c", tonic::Code::Cancelled),
            ("0x107", tonic::Code::ResourceExhausted),
        ] {
            let mut request = tonic::Request::new(echo("refuse me"));
            request
                .metadata_mut()
                .insert("x-reset-code", code.parse().expect("ASCII"));
            let status = within("reset", client.unary(request))
                .await
                .expect_err("reset");
            assert_eq!(status.code(), expected, "{code}: {status:?}");
        }
        within("after the resets", client.unary(echo("still")))
            .await
            .expect("served");
    }
    server.stop().await;
}

/// The aioquic server script, serving on a loopback port it chose.
struct AioquicServer {
    script: Script,
    addr: SocketAddr,
    cert: quicrpc::tls::SelfSigned,
    dir: std::path::PathBuf,
}

impl AioquicServer {
    async fn start() -> Self {
        let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
        let dir = temp_dir("server");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert_pem()).expect("cert");
        std::fs::write(&key_path, cert.key_pem()).expect("key");
        let mut script = Script::start(
            "h3_grpc_server.py",
            &[
                "--cert".into(),
                cert_path.into(),
                "--key".into(),
                key_path.into(),
                "--port".into(),
                "0".into(),
            ],
        );
        let first = script.next_line().await.unwrap_or_default();
        let port: u16 = first
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the aioquic server did not start ({SETUP}): {first:?}"));
        Self {
            script,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            cert,
            dir,
        }
    }

    /// Stops it (its standard input closed) and checks that it exited cleanly: it exits
    /// with an error if any request made it fail.
    async fn stop(self) {
        self.script.finish().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// An HTTP/3 connection (hyperium's `h3` over quinn) to `addr`, trusting `ca`, with its
/// driver running.
async fn h3_connect(
    addr: SocketAddr,
    ca: &quicrpc::tls::Certificate,
) -> (quinn::Endpoint, SendRequest) {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let config = raw::client_config_offering(ca, b"h3");
    let conn = within(
        "QUIC handshake",
        endpoint
            .connect_with(config, addr, "localhost")
            .expect("connect"),
    )
    .await
    .expect("handshake");
    let (mut driver, send_request) = within(
        "HTTP/3 set-up",
        h3::client::new(h3_quinn::Connection::new(conn)),
    )
    .await
    .expect("HTTP/3 connection");
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    (endpoint, send_request)
}

/// What came back for one call, up to the error that ended it early if one did.
#[derive(Debug, Default)]
struct Answer {
    head: Option<http::Response<()>>,
    messages: Vec<EchoReply>,
    trailers: Option<http::HeaderMap>,
    error: Option<h3::error::StreamError>,
}

impl Answer {
    /// The fields that carry the status: the trailers, or the head of a trailers-only
    /// response.
    fn status_fields(&self) -> &http::HeaderMap {
        match (&self.trailers, &self.head) {
            (Some(trailers), _) => trailers,
            (None, Some(head)) => head.headers(),
            (None, None) => panic!("no response: {self:?}"),
        }
    }

    /// The gRPC status, its message percent-decoded.
    fn status(&self) -> tonic::Status {
        tonic::Status::from_header_map(self.status_fields())
            .unwrap_or_else(|| panic!("no grpc-status: {self:?}"))
    }

    /// The code of the reset that ended the response, if the server reset it.
    fn reset_code(&self) -> Option<u64> {
        match &self.error {
            Some(h3::error::StreamError::RemoteTerminate { code, .. }) => Some(code.value()),
            _ => None,
        }
    }
}

/// One gRPC call to `path` of the Echo service with `requests` and `extra` request
/// metadata, its response read to its end or to the first error.
async fn call(
    send_request: &mut SendRequest,
    method: &str,
    requests: &[EchoRequest],
    extra: &[(&'static str, &str)],
) -> Answer {
    let mut request =
        http::Request::post(format!("https://localhost/quicrpc.testing.Echo/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let mut stream = send_request
        .send_request(request.body(()).expect("request"))
        .await
        .expect("send the head");
    // A server that resets the request may stop it first: sending then fails, and the
    // response says why.
    let mut sending = true;
    for message in requests {
        let body = message.encode_to_vec();
        let mut framed = BytesMut::new();
        framed.put_u8(0);
        framed.put_u32(u32::try_from(body.len()).expect("small"));
        framed.put_slice(&body);
        if stream.send_data(framed.freeze()).await.is_err() {
            sending = false;
            break;
        }
    }
    if sending {
        let _ = stream.finish().await;
    }
    let mut answer = Answer::default();
    match stream.recv_response().await {
        Ok(head) => answer.head = Some(head),
        Err(e) => {
            answer.error = Some(e);
            return answer;
        }
    }
    let mut data = BytesMut::new();
    loop {
        match stream.recv_data().await {
            Ok(Some(mut chunk)) => data.put(chunk.copy_to_bytes(chunk.remaining())),
            Ok(None) => break,
            Err(e) => {
                answer.error = Some(e);
                break;
            }
        }
    }
    if answer.error.is_none() {
        match stream.recv_trailers().await {
            Ok(trailers) => answer.trailers = trailers,
            Err(e) => answer.error = Some(e),
        }
    }
    let mut data = data.freeze();
    while data.remaining() >= 5 {
        assert_eq!(data.get_u8(), 0, "uncompressed");
        let len = data.get_u32() as usize;
        assert!(data.remaining() >= len, "a whole message: {answer:?}");
        answer
            .messages
            .push(EchoReply::decode(data.split_to(len)).expect("a reply"));
    }
    assert!(
        !data.has_remaining(),
        "the response ended inside a prefix: {answer:?}"
    );
    answer
}

// Both.

/// A Python script run as a peer: its standard output read line by line as it comes, its
/// standard input for answers, its standard error kept for failure messages. Killed when
/// dropped.
struct Script {
    name: &'static str,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Script {
    /// Starts `python3 tests/python/NAME ARGS...`.
    fn start(name: &'static str, args: &[OsString]) -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("python")
            .join(name);
        let mut child = Command::new("python3")
            .arg(path)
            .args(args)
            // No __pycache__ left in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("THIS TEST DID NOT RUN: cannot start python3 ({e}); {SETUP}")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            name,
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next line it prints, or `None` once its output has ended.
    /// Bounded by [`TIMEOUT`]: past it, the script is killed and the test fails with what
    /// it wrote to standard error.
    async fn next_line(&mut self) -> Option<String> {
        let Ok(line) = tokio::time::timeout(TIMEOUT, self.lines.recv()).await else {
            if let Some(child) = &mut self.child {
                let _ = child.kill();
            }
            let stderr = self.stderr_text().await;
            panic!("{} printed nothing for {TIMEOUT:?}:\n{stderr}", self.name);
        };
        if let Some(line) = &line {
            println!("{}: {line}", self.name);
        }
        line
    }

    /// What it wrote to standard error, once that has closed (it has exited, or been
    /// killed).
    async fn stderr_text(&mut self) -> String {
        let stderr = self.stderr.take().expect("stderr reader");
        within(
            "its standard error",
            tokio::task::spawn_blocking(move || stderr.join()),
        )
        .await
        .expect("join thread")
        .unwrap_or_default()
    }

    /// Writes `line` to its standard input.
    fn answer(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("write to the script");
    }

    /// Closes its standard input and waits for it to exit; fails the test, with what it
    /// wrote to standard error, unless it exited successfully.
    async fn finish(mut self) {
        drop(self.stdin.take());
        let mut child = self.child.take().expect("running");
        let status = within(
            &format!("{} exits", self.name),
            tokio::task::spawn_blocking(move || child.wait()),
        )
        .await
        .expect("wait thread")
        .expect("wait");
        let stderr = self.stderr_text().await;
        assert!(
            status.success(),
            "{} failed ({status}; if it could not start, {SETUP}):\n{stderr}",
            self.name
        );
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh temporary directory for one test's files.
fn temp_dir(what: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "quicrpc-aioquic-{what}-{}-{unique}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
