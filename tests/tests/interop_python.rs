//! A client that no one here wrote: Python's grpcio against quicrpc's TCP side, with TLS,
//! from stubs generated out of the same `.proto`. Needs python3 with grpcio and grpcio-tools
//! (`.ci/run` installs them); fails loudly without them.

use quicrpc_tests::{TestServer, within};

#[tokio::test]
async fn python_grpcio_client_calls_every_kind_over_the_tcp_side() {
    let server = TestServer::start().await;
    let dir = std::env::temp_dir().join(format!("quicrpc-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.cert.ca_pem()).expect("write CA");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/echo_client.py");
    let target = format!("localhost:{}", server.addr.port());
    let ca_path = ca.clone();
    // Every call in the script has its own 10 s timeout; `within` bounds the whole.
    let output = within(
        "python client",
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .arg(script)
                .arg("--target")
                .arg(target)
                .arg("--ca")
                .arg(ca_path)
                .output()
        }),
    )
    .await
    .expect("python client thread")
    .unwrap_or_else(|e| {
        panic!("THIS TEST DID NOT RUN: cannot start python3 ({e}); .ci/run installs it")
    });
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    assert!(
        output.status.success(),
        "the Python client failed (it needs grpcio and grpcio-tools: \
         python3 -m pip install grpcio grpcio-tools):\n{stderr}"
    );
    for case in [
        "unary",
        "server_streaming",
        "client_streaming",
        "bidi_streaming",
        "status_with_message",
        "metadata",
        "deadline",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("PASS {case}")),
            "case {case} did not pass:\n{stdout}\n{stderr}"
        );
    }
    // Every call went over TCP: the QUIC side saw none.
    assert_eq!(server.stats.quic_connections(), 0);
}
