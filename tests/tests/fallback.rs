//! One server, two transports: QUIC on UDP and plain gRPC on TCP at the same port, and a
//! channel that falls back from one to the other.

use std::time::{Duration, Instant};

use quicrpc::{Fallback, Transport};
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{
    TestOptions, TestServer, echo, indexes_to_end, slow_stream_started, transport_of, within,
};
use tonic::Code;

#[tokio::test]
async fn every_policy_works_against_a_dual_server() {
    let server = TestServer::start().await;
    for (policy, want) in [
        (Fallback::QuicOnly, Transport::Quic),
        (Fallback::TcpOnly, Transport::Tcp),
        (Fallback::Auto, Transport::Quic),
    ] {
        let channel = within(
            "connect",
            server.any_transport_builder().fallback(policy).connect(),
        )
        .await
        .unwrap();
        assert_eq!(channel.transport(), want, "{policy:?}");
        let mut client = EchoClient::new(channel);
        assert_eq!(transport_of(&mut client).await, want, "{policy:?}");
        // Streaming and statuses work on the TCP side too.
        let request = EchoRequest {
            response_count: 3,
            ..echo("s")
        };
        let mut stream = within("stream", client.server_stream(request))
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while within("reply", stream.message()).await.unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3, "{policy:?}");
        let failing = EchoRequest {
            fail_code: Code::NotFound as i32,
            fail_message: "gone".into(),
            ..echo("")
        };
        let status = within("failing call", client.unary(failing))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, "gone"),
            "{policy:?}"
        );
    }
}

#[tokio::test]
async fn a_stock_tonic_client_reaches_the_tcp_side() {
    let server = TestServer::start().await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(tonic::transport::Certificate::from_pem(
            server.cert.ca_pem(),
        ));
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "https://127.0.0.1:{}",
        server.addr.port()
    ))
    .unwrap()
    .tls_config(tls)
    .unwrap()
    .connect()
    .await
    .expect("plain gRPC over TCP");
    let mut client = EchoClient::new(channel);
    let reply = within("tonic call", client.unary(echo("plain grpc")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "plain grpc");
}

#[tokio::test]
async fn deadlines_mean_the_same_over_tcp() {
    let server = TestServer::start().await;
    let channel = within(
        "connect",
        server
            .any_transport_builder()
            .fallback(Fallback::TcpOnly)
            .connect(),
    )
    .await
    .unwrap();
    let mut client = EchoClient::new(channel);
    let mut request = tonic::Request::new(echo("hang"));
    request.set_timeout(Duration::from_millis(200));
    let status = within("hanging call", client.hang(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn nothing_on_udp_falls_back_to_tcp() {
    // Nothing listens on UDP at this port.
    let server =
        TestServer::start_with(TestOptions::default(), |b| b.transports([Transport::Tcp])).await;
    let start = Instant::now();
    let channel = within("connect", server.any_transport_builder().connect())
        .await
        .expect("falls back to TCP");
    println!("first connection over TCP after {:?}", start.elapsed());
    assert_eq!(channel.transport(), Transport::Tcp);
    let mut client = EchoClient::new(channel);
    assert_eq!(transport_of(&mut client).await, Transport::Tcp);

    // QUIC-only cannot connect, and says so.
    let quic_only = server
        .any_transport_builder()
        .fallback(Fallback::QuicOnly)
        .connect_timeout(Duration::from_millis(500))
        .connect();
    assert!(within("QUIC only", quic_only).await.is_err());
}

#[tokio::test]
async fn calls_in_flight_on_both_transports_finish_during_drain() {
    let mut server = TestServer::start().await;
    let mut streams = Vec::new();
    for policy in [Fallback::QuicOnly, Fallback::TcpOnly] {
        let channel = within(
            "connect",
            server.any_transport_builder().fallback(policy).connect(),
        )
        .await
        .unwrap();
        let mut client = EchoClient::new(channel);
        let stream = slow_stream_started(&mut client).await;
        streams.push((policy, stream));
    }
    let serving = server.begin_shutdown();
    for (policy, mut stream) in streams {
        let mut indexes = vec![0];

        indexes.extend(indexes_to_end(&mut stream).await);
        assert_eq!(indexes, vec![0, 1, 2, 3, 4], "{policy:?}");
    }
    within("server stops", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_port_taken_on_tcp_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cert = quicrpc::tls::SelfSigned::new(["localhost"]).unwrap();
    let result = quicrpc::Server::builder()
        .identity(cert.identity())
        .bind(("127.0.0.1", port))
        .await;
    let err = result.expect_err("TCP port is taken");
    assert!(matches!(err, quicrpc::Error::Bind { .. }), "{err}");
    assert!(err.to_string().contains("TCP"), "{err}");
    // And the UDP socket was released with it: QUIC alone can bind that port now.
    quicrpc::Server::builder()
        .identity(cert.identity())
        .transports([Transport::Quic])
        .bind(("127.0.0.1", port))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_restart_during_a_stream_of_calls() {
    let first = TestServer::start().await;
    let addr = first.addr;
    let cert = first.cert.clone();
    let channel = within(
        "connect",
        first
            .any_transport_builder()
            .connect_timeout(Duration::from_millis(500))
            .connect(),
    )
    .await
    .unwrap();

    // A steady stream of calls, each with a deadline, while the server restarts. Each call's
    // start and outcome are reported in order; the caller stops when the test stops listening.
    let (outcomes_tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let caller = tokio::spawn(async move {
        let mut client = EchoClient::new(channel);
        loop {
            let mut request = tonic::Request::new(echo("tick"));
            request.set_timeout(Duration::from_secs(1));
            let started = Instant::now();
            let outcome = client.unary(request).await.map(drop);
            if outcomes_tx.send((started, outcome)).is_err() {
                return;
            }
            // Pace the load generator: calls refused during the drain fail at once.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    // Served by the first server.
    let (_, outcome) = next_outcome(&mut outcomes).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(!first.runs().is_empty());

    let mut first = first;
    within("first server stops", first.begin_shutdown())
        .await
        .unwrap()
        .unwrap();
    drop(first);
    let stopped = Instant::now();
    // A call made while nothing listens fails with a clear, retryable status rather than
    // hanging. So may calls made during the drain, which are still queued here.
    let mut failed = Vec::new();
    within("a call fails while nothing listens", async {
        loop {
            let (started, outcome) = next_outcome(&mut outcomes).await;
            if let Err(status) = outcome {
                failed.push(status);
                if started >= stopped {
                    return;
                }
            }
        }
    })
    .await;

    let second = TestServer::start_with(
        TestOptions {
            cert: Some(cert),
            addr: Some(addr),
            ..Default::default()
        },
        |b| b,
    )
    .await;
    // The same channel resumes its calls on the new server.
    within("calls resume on the new server", async {
        while let (_, Err(status)) = next_outcome(&mut outcomes).await {
            failed.push(status);
        }
    })
    .await;
    assert!(
        !second.runs().is_empty(),
        "a call succeeded without reaching the new server"
    );
    assert!(
        failed.iter().all(|s| s.code() == Code::Unavailable),
        "{failed:#?}"
    );
    drop(outcomes);
    within("caller stops", caller).await.unwrap();
}

/// The start and outcome of the next call [`server_restart_during_a_stream_of_calls`] made.
async fn next_outcome(
    outcomes: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, Result<(), tonic::Status>)>,
) -> (Instant, Result<(), tonic::Status>) {
    within("next call", outcomes.recv())
        .await
        .expect("the caller runs until the test stops listening")
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_over_tcp_too() {
    const MIB: usize = 1024 * 1024;
    let server = TestServer::start().await;
    let channel = within(
        "connect",
        server
            .any_transport_builder()
            .fallback(Fallback::TcpOnly)
            .connect(),
    )
    .await
    .unwrap();
    let mut client = EchoClient::new(channel);
    // Caught by tonic's codec on the server: OUT_OF_RANGE there, RESOURCE_EXHAUSTED on the wire.
    let request = EchoRequest {
        payload: vec![1; 5 * MIB],
        ..echo("big")
    };
    let status = within("oversized request", client.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Caught by the channel's limit before tonic's codec on the client.
    let request = EchoRequest {
        response_size: (5 * MIB) as u32,
        ..echo("big reply")
    };
    let status = within("oversized response", client.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    within("next call", client.unary(echo("small")))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_call_that_never_got_a_connection_is_unavailable() {
    // Nothing listens on this port, on either protocol.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cert = quicrpc::tls::SelfSigned::new(["localhost"]).unwrap();
    let channel = quicrpc::Channel::builder(format!("https://127.0.0.1:{port}"))
        .ca_certificate(cert.ca_certificate())
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy()
        .unwrap();
    let mut client = EchoClient::new(channel);
    let mut request = tonic::Request::new(echo("x"));
    request.set_timeout(Duration::from_millis(300));
    let status = within("call with a deadline", client.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Without a deadline it fails fast once the connection attempt fails.
    let status = within("call without a deadline", client.unary(echo("y")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}
