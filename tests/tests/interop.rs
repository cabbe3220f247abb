//! Clients that no one here wrote, against quicrpc's TCP side with TLS: Python's grpcio (stubs
//! generated from the same `.proto`) and Node.js's @grpc/grpc-js (the `.proto` loaded at run
//! time). Each runs every call kind, a status with a message, metadata and a deadline. They
//! need python3 with grpcio and grpcio-tools, and node with `npm ci` run in `tests/node`
//! (`.ci/run` does both); the tests fail loudly without them.

use quicrpc_tests::{TestServer, within};

const CASES: [&str; 7] = [
    "unary",
    "server_streaming",
    "client_streaming",
    "bidi_streaming",
    "status_with_message",
    "metadata",
    "deadline",
];

/// Runs `program script --target localhost:PORT --ca CA` against a fresh test server and
/// checks that it passed every case (and `extra` ones), over TCP only.
async fn run_client(program: &'static str, script: &'static str, setup: &str, extra: &[&str]) {
    let server = TestServer::start().await;
    let dir =
        std::env::temp_dir().join(format!("quicrpc-interop-{program}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.cert.ca_pem()).expect("write CA");
    let target = format!("localhost:{}", server.addr.port());
    let ca_path = ca.clone();
    // Every call in the scripts has its own 10 s deadline; `within` bounds the whole.
    let output = within(
        "client in another language",
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(program)
                .arg(script)
                .arg("--target")
                .arg(target)
                .arg("--ca")
                .arg(ca_path)
                .output()
        }),
    )
    .await
    .expect("client thread")
    .unwrap_or_else(|e| panic!("THIS TEST DID NOT RUN: cannot start {program} ({e}); {setup}"));
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    assert!(
        output.status.success(),
        "the {program} client failed ({setup}):\n{stderr}"
    );
    for case in CASES.iter().chain(extra) {
        assert!(
            stdout.lines().any(|l| l == format!("PASS {case}")),
            "{program}: case {case} did not pass:\n{stdout}\n{stderr}"
        );
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
