//! qlog traces per QUIC connection, on both sides (feature `qlog`):
//! `cargo test -p quicrpc-tests --features qlog --test qlog`.
#![cfg(feature = "qlog")]

use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestOptions, TestServer, echo, within};

#[tokio::test]
async fn each_connection_writes_a_qlog_trace_on_each_side() {
    let dir = std::env::temp_dir().join(format!("quicrpc-qlog-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let server_dir = dir.clone();
    let mut server =
        TestServer::start_with(TestOptions::default(), move |b| b.qlog_dir(server_dir)).await;
    let channel = within("connect", server.channel_builder().qlog_dir(&dir).connect())
        .await
        .unwrap();
    within(
        "call",
        EchoClient::new(channel.clone()).unary(echo("traced")),
    )
    .await
    .unwrap();
    drop(channel);
    within("server stops", server.begin_shutdown())
        .await
        .unwrap()
        .unwrap();

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].starts_with("client-") && names[1].starts_with("server-"),
        "{names:?}"
    );
    for name in names {
        let trace = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert!(
            trace.contains("qlog_version"),
            "{name}: {}",
            &trace[..trace.len().min(200)]
        );
        assert!(trace.contains("packet_sent"), "{name} has no packet events");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
