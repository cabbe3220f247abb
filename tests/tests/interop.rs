//! Clients that no one here wrote, against quicrpc's TCP side with TLS: Python's grpcio (stubs
//! generated from the same `.proto`) and Node.js's @grpc/grpc-js (the `.proto` loaded at run
//! time). Each runs every call kind, a status with a message, metadata and a deadline. They
//! need python3 with grpcio and grpcio-tools, and node with `npm ci` run in `tests/node`
//! (`.ci/run` does both); the tests fail loudly without them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use quicrpc::Fallback;
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, run_foreign_client, within};

const CASES: [&str; 7] = [
    "unary",
    "server_streaming",
    "client_streaming",
    "bidi_streaming",
    "status_with_message",
    "metadata",
    "deadline",
];

/// Runs `program script` against a fresh test server and checks that it passed every case
/// (and `extra` ones), over TCP only.
async fn run_client(program: &'static str, script: &'static str, setup: &str, extra: &[&str]) {
    let server = TestServer::start().await;
    let run = run_foreign_client(program, script, &server, setup).await;
    for case in CASES.iter().chain(extra) {
        run.assert_passed(program, case);
    }
    // Every call went over TCP: the QUIC side saw none.
    assert_eq!(server.stats.quic_connections(), 0);
}

#[tokio::test]
async fn python_grpcio_client_calls_every_kind_over_the_tcp_side() {
    run_client(
        "python3",
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/echo_client.py"),
        "it needs python3 -m pip install grpcio grpcio-tools grpcio-health-checking",
        &["health"],
    )
    .await;
}

#[tokio::test]
async fn node_grpc_js_client_calls_every_kind_over_the_tcp_side() {
    run_client(
        "node",
        concat!(env!("CARGO_MANIFEST_DIR"), "/node/echo_client.js"),
        "it needs node, and npm ci in tests/node",
        &[],
    )
    .await;
}

/// A Python grpcio server process, stopped (standard input closed) when dropped.
struct PythonServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn quicrpc_channel_calls_a_python_grpcio_server_over_tcp() {
    let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
    let dir = std::env::temp_dir().join(format!("quicrpc-pyserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("cert.pem"), cert.cert_pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), cert.key_pem()).expect("key");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/echo_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--cert")
        .arg(dir.join("cert.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("THIS TEST DID NOT RUN: cannot start python3 ({e})"));
    let stdout = child.stdout.take().expect("stdout");
    let line = within(
        "python server starts",
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("reader")
    .expect("read");
    let port = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the Python server did not start (grpcio installed?): {line:?}"));
    let server = PythonServer { child, port };

    let channel = quicrpc::Channel::builder(format!("https://localhost:{}", server.port))
        .ca_certificate(cert.ca_certificate())
        .fallback(Fallback::TcpOnly)
        .connect();
    let mut client = EchoClient::new(within("connect", channel).await.expect("connect"));

    let reply = within("unary", client.unary(echo("to python")))
        .await
        .expect("unary")
        .into_inner();
    assert_eq!(reply.message, "to python");

    let request = EchoRequest {
        response_count: 3,
        ..echo("s")
    };
    let mut stream = within("server stream", client.server_stream(request))
        .await
        .expect("stream")
        .into_inner();
    let mut indexes = Vec::new();
    while let Some(reply) = within("reply", stream.message()).await.expect("reply") {
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
        fail_message: "no such agent".into(),
        ..echo("")
    };
    let status = within("status", client.unary(failing))
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "no such agent");

    let mut request = tonic::Request::new(echo("hang"));
    request.set_timeout(std::time::Duration::from_millis(200));
    let status = within("deadline", client.hang(request))
        .await
        .expect_err("deadline");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
