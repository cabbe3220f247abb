//! gRPC over HTTP/3 (gRFC G2) on the server's QUIC endpoint, beside the native wire: calls
//! from an HTTP/3 client that is not quicrpc's (the hyperium `h3` crate over quinn), with
//! gRPC's framing, metadata and trailers.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use quicrpc_tests::pb::{EchoReply, EchoRequest};
use quicrpc_tests::{TestServer, echo, raw, within};

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// An HTTP/3 connection to `server`, with its driver running.
async fn h3_client(server: &TestServer) -> (quinn::Endpoint, SendRequest) {
    let config = raw::client_config_offering(&server.cert.ca_certificate(), b"h3");
    h3_client_with(server, config).await
}

/// An HTTP/3 client config trusting `server`'s CA and presenting `identity`'s certificate.
fn config_presenting(
    server: &TestServer,
    identity: &quicrpc::tls::SelfSigned,
) -> quinn::ClientConfig {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in server.cert.ca_certificate().certs() {
        roots.add(cert.clone()).expect("CA");
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(identity.key_pem().as_bytes())
        .expect("key");
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_client_auth_cert(identity.identity().chain().to_vec(), key)
    .expect("client certificate");
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    quinn::ClientConfig::new(std::sync::Arc::new(crypto))
}

/// An HTTP/3 connection to `server` with `config`, with its driver running.
async fn h3_client_with(
    server: &TestServer,
    config: quinn::ClientConfig,
) -> (quinn::Endpoint, SendRequest) {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let conn = within(
        "QUIC handshake",
        endpoint
            .connect_with(config, server.addr, "localhost")
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

/// `message` as gRPC frames it: uncompressed, with its 5-byte length prefix.
fn framed(message: &EchoRequest) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(u32::try_from(body.len()).expect("small"));
    framed.put_slice(&body);
    framed.freeze()
}

/// What came back for one call.
#[derive(Debug)]
struct Answer {
    head: http::Response<()>,
    messages: Vec<EchoReply>,
    trailers: Option<http::HeaderMap>,
    /// Why sending the request stopped early, if it did.
    stopped: Option<String>,
}

impl Answer {
    /// The gRPC status code: from the trailers, or from the head of a trailers-only answer.
    fn code(&self) -> i32 {
        let fields = self.trailers.as_ref().unwrap_or(self.head.headers());
        fields
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no grpc-status: {self:?}"))
    }

    /// The status message, percent-decoded as gRPC encodes it.
    fn message(&self) -> String {
        let fields = self.trailers.as_ref().unwrap_or(self.head.headers());
        tonic::Status::from_header_map(fields)
            .map(|status| status.message().to_owned())
            .unwrap_or_default()
    }
}

/// One gRPC call to `path` with `requests`, each as a length-prefixed message, and `extra`
/// request metadata.
async fn call(
    send_request: &mut SendRequest,
    path: &str,
    requests: &[EchoRequest],
    extra: &[(&'static str, &str)],
) -> Answer {
    let mut request = http::Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let mut stream = send_request
        .send_request(request.body(()).expect("request"))
        .await
        .expect("send the head");
    let mut stopped = None;
    for message in requests {
        // The server may answer (and stop the request) before it has read everything; the
        // request is then over (h3 takes no more writes on the stream, a finish included).
        if let Err(e) = stream.send_data(framed(message)).await {
            stopped = Some(e);
            break;
        }
    }
    if stopped.is_none() {
        stream.finish().await.expect("finish");
    }
    let head = stream.recv_response().await.expect("response head");
    let mut data = BytesMut::new();
    while let Some(mut chunk) = stream.recv_data().await.expect("response data") {
        data.put(chunk.copy_to_bytes(chunk.remaining()));
    }
    let trailers = stream.recv_trailers().await.expect("trailers");
    let mut messages = Vec::new();
    let mut data = data.freeze();
    while data.has_remaining() {
        assert_eq!(data.get_u8(), 0, "uncompressed");
        let len = data.get_u32() as usize;
        messages.push(EchoReply::decode(data.split_to(len)).expect("a reply"));
    }
    Answer {
        head,
        messages,
        trailers,
        stopped: stopped.map(|e| e.to_string()),
    }
}

const UNARY: &str = "/quicrpc.testing.Echo/Unary";

#[tokio::test]
async fn unary_calls_over_http3_beside_the_native_wire() {
    let server = TestServer::start().await;
    let (_endpoint, mut h3) = h3_client(&server).await;
    let answer = within(
        "unary over HTTP/3",
        call(&mut h3, UNARY, &[echo("over h3")], &[("x-note", "kept")]),
    )
    .await;
    assert_eq!(answer.head.status(), http::StatusCode::OK);
    assert_eq!(answer.code(), 0, "{answer:?}");
    assert_eq!(answer.messages.len(), 1);
    assert_eq!(answer.messages[0].message, "over h3");
    // A native client on the same port, at the same time.
    let mut native = server.client().await;
    let reply = within("native call", native.unary(echo("native")))
        .await
        .expect("native call");
    assert_eq!(reply.get_ref().message, "native");
    // Another HTTP/3 call on the same connection.
    let again = within("second call", call(&mut h3, UNARY, &[echo("again")], &[])).await;
    assert_eq!(again.messages[0].message, "again");
}

#[tokio::test]
async fn statuses_streams_and_deadlines_over_http3() {
    let server = TestServer::start().await;
    let (_endpoint, mut h3) = h3_client(&server).await;

    // An error: trailers-only, its code and message in the head.
    let failing = EchoRequest {
        fail_code: tonic::Code::PermissionDenied as i32,
        fail_message: "not you".into(),
        ..echo("x")
    };
    let answer = within("failing call", call(&mut h3, UNARY, &[failing], &[])).await;
    assert_eq!(
        answer.code(),
        tonic::Code::PermissionDenied as i32,
        "{answer:?}"
    );
    assert_eq!(answer.message(), "not you");
    assert!(answer.messages.is_empty());

    // An unknown method.
    let answer = within(
        "unknown method",
        call(&mut h3, "/quicrpc.testing.Echo/Nope", &[echo("x")], &[]),
    )
    .await;
    assert_eq!(
        answer.code(),
        tonic::Code::Unimplemented as i32,
        "{answer:?}"
    );

    // A server stream.
    let streaming = EchoRequest {
        response_count: 3,
        ..echo("s")
    };
    let answer = within(
        "server stream",
        call(
            &mut h3,
            "/quicrpc.testing.Echo/ServerStream",
            &[streaming],
            &[],
        ),
    )
    .await;
    assert_eq!(answer.code(), 0, "{answer:?}");
    assert_eq!(answer.messages.len(), 3);

    // A client stream.
    let answer = within(
        "client stream",
        call(
            &mut h3,
            "/quicrpc.testing.Echo/ClientStream",
            &[echo("a"), echo("b")],
            &[],
        ),
    )
    .await;
    assert_eq!(answer.code(), 0, "{answer:?}");
    assert_eq!(answer.messages[0].message, "ab");

    // A deadline: the server ends a call that never answers.
    let answer = within(
        "deadline",
        call(
            &mut h3,
            "/quicrpc.testing.Echo/Hang",
            &[echo("wait")],
            &[("grpc-timeout", "200m")],
        ),
    )
    .await;
    assert_eq!(
        answer.code(),
        tonic::Code::DeadlineExceeded as i32,
        "{answer:?}"
    );
}

#[tokio::test]
async fn limits_hold_over_http3_and_the_connection_carries_on() {
    let server = TestServer::start().await;
    let (_endpoint, mut h3) = h3_client(&server).await;
    let oversized = EchoRequest {
        payload: vec![7; 5 << 20],
        ..echo("big")
    };
    let answer = within("oversized request", call(&mut h3, UNARY, &[oversized], &[])).await;
    assert_eq!(
        answer.code(),
        tonic::Code::ResourceExhausted as i32,
        "{answer:?}"
    );
    // Stopped with H3_NO_ERROR (0x100), as a server that answers early does.
    let stopped = answer.stopped.as_deref().expect("the request was stopped");
    assert!(stopped.contains("H3_NO_ERROR"), "{stopped}");
    let answer = within("after it", call(&mut h3, UNARY, &[echo("fine")], &[])).await;
    assert_eq!(answer.messages[0].message, "fine");
    assert_eq!(
        server.stats.quic_connections(),
        1,
        "an HTTP/3 connection is a QUIC one"
    );
}

/// A graceful shutdown says GOAWAY over HTTP/3 too: the call under way finishes, and the
/// server stops.
#[tokio::test]
async fn graceful_shutdown_lets_an_http3_call_finish() {
    let mut server = TestServer::start().await;
    let (_endpoint, mut h3) = h3_client(&server).await;
    let request = http::Request::post("https://localhost/quicrpc.testing.Echo/ServerStream")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut stream = h3.send_request(request).await.expect("send the head");
    let slow = EchoRequest {
        response_count: 3,
        delay_ms: 100,
        ..echo("slow")
    };
    stream.send_data(framed(&slow)).await.expect("send");
    stream.finish().await.expect("finish");
    let head = within("response head", stream.recv_response())
        .await
        .expect("head");
    assert_eq!(head.status(), http::StatusCode::OK);

    let serving = server.begin_shutdown();
    let mut bytes = 0;
    while let Some(chunk) = within("data", stream.recv_data()).await.expect("data") {
        bytes += chunk.remaining();
    }
    let trailers = within("trailers", stream.recv_trailers())
        .await
        .expect("trailers")
        .expect("some");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert!(bytes > 0, "the replies came");
    within("server stopped", serving)
        .await
        .expect("serve task")
        .expect("clean shutdown");
}

/// `buf curl` (Buf's CLI, from npm `@bufbuild/buf`: a Go program on connect-go and quic-go,
/// written by nobody here), installed in `tests/node` by `.ci/run`.
fn buf_binary() -> std::path::PathBuf {
    let buf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node/node_modules/.bin/buf");
    assert!(
        buf.exists(),
        "THIS TEST DID NOT RUN: {} is missing; run `npm ci` in tests/node (.ci/run does)",
        buf.display()
    );
    buf
}

/// What one `buf curl` run did.
#[derive(Debug)]
struct BufRun {
    success: bool,
    stdout: String,
    stderr: String,
}

/// `buf curl --http3 --protocol grpc` against `server`, trusting its CA, with `args` before
/// the URL of `method`; bounded by the test timeout.
async fn buf_curl(server: &TestServer, method: &str, args: &[&str]) -> BufRun {
    let dir = std::env::temp_dir().join(format!(
        "quicrpc-buf-{}-{}",
        std::process::id(),
        server.addr.port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.cert.ca_pem()).expect("write CA");
    let mut command = std::process::Command::new(buf_binary());
    command
        .args([
            "curl",
            "--http3",
            "--protocol",
            "grpc",
            "--timeout",
            "15s",
            "--cacert",
        ])
        .arg(&ca)
        .args(args)
        .arg(format!("https://localhost:{}/{method}", server.addr.port()));
    // buf's own --timeout ends the run; `within` bounds the wait all the same.
    let output = within(
        "buf curl",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("buf curl thread")
    .expect("buf curl runs");
    let run = BufRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    println!("buf curl {method} {args:?}: {run:#?}");
    run
}

/// A gRPC-over-HTTP/3 client nobody here wrote: `buf curl --http3`, with the schema from the
/// server's reflection service (itself called over HTTP/3).
#[tokio::test]
async fn buf_curl_calls_over_http3() {
    let server = TestServer::start().await;

    let run = buf_curl(
        &server,
        "quicrpc.testing.Echo/Unary",
        &["-d", r#"{"message": "from buf"}"#],
    )
    .await;
    assert!(run.success, "{run:#?}");
    assert!(run.stdout.contains(r#""message": "from buf""#), "{run:#?}");

    let run = buf_curl(
        &server,
        "quicrpc.testing.Echo/ServerStream",
        &["-d", r#"{"message": "s", "responseCount": 3}"#],
    )
    .await;
    assert!(run.success, "{run:#?}");
    assert_eq!(run.stdout.matches("\"message\"").count(), 3, "{run:#?}");

    // Metadata both ways: a request header the server echoes into the response head.
    let run = buf_curl(
        &server,
        "quicrpc.testing.Echo/Unary",
        &[
            "-v",
            "-H",
            "x-echo-header: kept",
            "-d",
            r#"{"message": "m"}"#,
        ],
    )
    .await;
    assert!(run.success, "{run:#?}");
    assert!(
        run.stderr.contains("X-Echo-Header: kept"),
        "the header came back: {run:#?}"
    );

    // An error status with its message.
    let run = buf_curl(
        &server,
        "quicrpc.testing.Echo/Unary",
        &["-d", r#"{"failCode": 7, "failMessage": "not for buf"}"#],
    )
    .await;
    assert!(!run.success, "{run:#?}");
    assert!(
        run.stdout.contains("permission_denied") || run.stderr.contains("permission_denied"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("not for buf") || run.stderr.contains("not for buf"),
        "{run:#?}"
    );

    // A deadline: the call that never answers ends at it (buf sends its --timeout as
    // grpc-timeout; the later flag wins).
    let run = buf_curl(
        &server,
        "quicrpc.testing.Echo/Hang",
        &["--timeout", "300ms", "-d", r#"{"message": "wait"}"#],
    )
    .await;
    assert!(!run.success, "{run:#?}");
    assert!(
        run.stdout.contains("deadline_exceeded") || run.stderr.contains("deadline_exceeded"),
        "{run:#?}"
    );
}

/// Mutual TLS holds on HTTP/3 as on the other wires: the verified client identity reaches
/// the handler, and a client without a certificate is refused.
#[tokio::test]
async fn mutual_tls_over_http3() {
    let clients = quicrpc::tls::SelfSigned::new(["agent-7.example"]).expect("client certificate");
    let ca = clients.ca_certificate();
    let server =
        quicrpc_tests::TestServer::start_with(quicrpc_tests::TestOptions::default(), |b| {
            b.client_ca_certificate(ca)
        })
        .await;
    let (_endpoint, mut h3) = h3_client_with(&server, config_presenting(&server, &clients)).await;
    let answer = within(
        "call with a certificate",
        call(&mut h3, UNARY, &[echo("me")], &[]),
    )
    .await;
    assert_eq!(answer.code(), 0, "{answer:?}");
    assert_eq!(answer.messages[0].client_names, "agent-7.example");

    // Without a certificate the handshake fails (TLS 1.3: the client may only learn it
    // when it tries to use the connection).
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let connecting = endpoint
        .connect_with(
            raw::client_config_offering(&server.cert.ca_certificate(), b"h3"),
            server.addr,
            "localhost",
        )
        .expect("connect");
    let refused = within("refused", async {
        let conn = connecting.await?;
        let closed = conn.closed().await;
        Err::<(), _>(closed)
    })
    .await
    .expect_err("no certificate, no connection");
    println!("without a certificate: {refused}");
}

/// RFC 9218's `priority` header sets a call's priority over HTTP/3 (urgency 0 is CRITICAL);
/// without it, the method's own applies, as on the native wire.
#[tokio::test]
async fn the_priority_header_and_method_priorities_hold_over_http3() {
    let server = TestServer::start().await;
    let (_endpoint, mut h3) = h3_client(&server).await;
    let cases = [
        (UNARY, None, "normal"),
        (UNARY, Some("u=0"), "critical"),
        (UNARY, Some("u=6, i"), "bulk"),
        ("/quicrpc.testing.Echo/Urgent", None, "critical"),
    ];
    for (path, header, expected) in cases {
        let extra: Vec<(&'static str, &str)> =
            header.map(|h| ("priority", h)).into_iter().collect();
        let answer = within("call", call(&mut h3, path, &[echo("p")], &extra)).await;
        assert_eq!(answer.code(), 0, "{answer:?}");
        assert_eq!(answer.messages[0].priority, expected, "{path} {header:?}");
    }
}

/// A client that cancels an HTTP/3 call (STOP_SENDING and a reset, as RFC 9114 has it) ends
/// its handler, as on the native wire.
#[tokio::test]
async fn a_cancelled_http3_call_drops_its_handler() {
    let server = TestServer::start().await;
    let (_endpoint, mut h3) = h3_client(&server).await;
    let request = http::Request::post("https://localhost/quicrpc.testing.Echo/Hang")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut stream = h3.send_request(request).await.expect("send the head");
    stream.send_data(framed(&echo("hang"))).await.expect("send");
    stream.finish().await.expect("finish");
    assert_eq!(
        within("handler started", server.next_event()).await,
        quicrpc_tests::Event::HangStarted
    );
    stream.stop_sending(h3::error::Code::H3_REQUEST_CANCELLED);
    drop(stream);
    assert_eq!(
        within("handler dropped", server.next_event()).await,
        quicrpc_tests::Event::HangDropped
    );
}

/// 0-RTT over HTTP/3 follows the native wire's rule: a resumed client's replay-safe call
/// runs from early data; any other is answered 425 Too Early, not run.
#[tokio::test]
async fn zero_rtt_over_http3_runs_only_replay_safe_calls() {
    let server = TestServer::start().await;
    let config = raw::client_config_offering(&server.cert.ca_certificate(), b"h3");
    {
        // A first connection, for a session ticket.
        let (endpoint, mut h3) = h3_client_with(&server, config.clone()).await;
        let answer = within("first call", call(&mut h3, UNARY, &[echo("warm")], &[])).await;
        assert_eq!(answer.code(), 0);
        drop(h3);
        endpoint.close(0u32.into(), b"done");
    }
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let connecting = endpoint
        .connect_with(config, server.addr, "localhost")
        .expect("connect");
    let Ok((conn, accepted)) = connecting.into_0rtt() else {
        panic!("no session ticket: 0-RTT impossible");
    };
    let (mut driver, mut h3) = within(
        "HTTP/3 set-up in 0-RTT",
        h3::client::new(h3_quinn::Connection::new(conn)),
    )
    .await
    .expect("HTTP/3");
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    // Both requests go out before the handshake is done.
    let mut other = h3.clone();
    let (safe, not_safe) = ([echo("safe")], [echo("not safe")]);
    let lookup = call(&mut h3, "/quicrpc.testing.Echo/Lookup", &safe, &[]);
    let unary = call(&mut other, UNARY, &not_safe, &[]);
    let (lookup, unary) = within("early calls", futures_util::future::join(lookup, unary)).await;
    assert!(within("0-RTT verdict", accepted).await, "0-RTT accepted");
    assert_eq!(lookup.code(), 0, "{lookup:?}");
    assert!(
        lookup.messages[0].early_data,
        "ran from early data: {lookup:?}"
    );
    assert_eq!(unary.head.status().as_u16(), 425, "{unary:?}");
    assert!(
        server
            .runs()
            .iter()
            .all(|run| run.method != "Unary" || !run.early_data),
        "a non-replay-safe call ran from early data: {:?}",
        server.runs()
    );
}

/// `max_connection_age` ends an HTTP/3 connection as it ends a native one: GOAWAY, then
/// close once its calls are done.
#[tokio::test]
async fn http3_connections_end_at_their_maximum_age() {
    let server =
        quicrpc_tests::TestServer::start_with(quicrpc_tests::TestOptions::default(), |b| {
            b.max_connection_age(std::time::Duration::from_millis(300))
        })
        .await;
    let (_endpoint, mut h3) = h3_client(&server).await;
    let answer = within("a call", call(&mut h3, UNARY, &[echo("young")], &[])).await;
    assert_eq!(answer.code(), 0);
    quicrpc_tests::until(
        "the aged connection closed",
        || server.stats.quic_connections(),
        0,
    )
    .await;
}
