//! Per-method priority from the generated method table, and the per-call override, applied
//! on both sides of the stream.

use quicrpc::{CallKind, Idempotency, Priority, method_info};
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{TestServer, echo, within};

#[test]
fn generated_method_table_is_registered() {
    let fetch = method_info("/quicrpc.testing.Echo/Fetch").expect("Fetch is registered");
    assert_eq!(
        (fetch.kind(), fetch.priority(), fetch.idempotency()),
        (
            CallKind::ServerStreaming,
            Priority::Bulk,
            Idempotency::NoSideEffects
        )
    );
    let urgent = method_info("/quicrpc.testing.Echo/Urgent").expect("Urgent is registered");
    assert_eq!(
        (urgent.kind(), urgent.priority()),
        (CallKind::Unary, Priority::Critical)
    );
    let bidi = method_info("/quicrpc.testing.Echo/Bidi").expect("Bidi is registered");
    assert_eq!(
        (bidi.kind(), bidi.priority(), bidi.idempotency()),
        (CallKind::Streaming, Priority::Normal, Idempotency::Unknown)
    );
    assert_eq!(quicrpc_tests::pb::echo_methods::ALL.len(), 8);
}

#[tokio::test]
async fn priority_comes_from_the_method_table_on_both_sides() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let response = within("urgent", client.urgent(echo("u"))).await.unwrap();
    assert_eq!(
        response.extensions().get::<Priority>(),
        Some(&Priority::Critical),
        "client side"
    );
    assert_eq!(response.into_inner().priority, "critical", "server side");

    let response = within("unary", client.unary(echo("n"))).await.unwrap();
    assert_eq!(
        response.extensions().get::<Priority>(),
        Some(&Priority::Normal)
    );
    assert_eq!(response.into_inner().priority, "normal");

    let mut stream = within(
        "fetch",
        client.fetch(EchoRequest {
            response_count: 1,
            ..echo("b")
        }),
    )
    .await
    .unwrap();
    assert_eq!(stream.extensions().get::<Priority>(), Some(&Priority::Bulk));
    assert_eq!(
        within("reply", stream.get_mut().message())
            .await
            .unwrap()
            .unwrap()
            .priority,
        "bulk"
    );
}

#[tokio::test]
async fn per_call_override_wins_on_both_sides() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for priority in Priority::ALL {
        let mut request = tonic::Request::new(echo("o"));
        request.extensions_mut().insert(priority);
        let response = within("urgent", client.urgent(request)).await.unwrap();
        assert_eq!(response.extensions().get::<Priority>(), Some(&priority));
        assert_eq!(response.into_inner().priority, priority.as_str());
    }
}

/// A CRITICAL call is not queued behind a BULK transfer that fills the link: on a 20 Mbit/s
/// link with a 128 KiB bottleneck queue, a 8 MiB BULK download takes about 3.4 s, and CRITICAL
/// calls made while it runs complete before it does. Priority orders the sender's queue;
/// what is already in the bottleneck queue is not overtaken, so each call still waits for
/// that (at most ~52 ms here).
#[tokio::test]
async fn critical_calls_overtake_a_bulk_transfer_on_a_saturated_link() {
    use quicrpc_netlab::{LinkConfig, Netlab};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    const REPLIES: u32 = 64;
    let lab = Netlab::start(LinkConfig {
        delay: Duration::from_millis(5),
        rate: Some(20_000_000),
        queue_bytes: 128 * 1024,
        ..LinkConfig::default()
    })
    .unwrap_or_else(|e| {
        panic!("THIS TEST DID NOT RUN: no emulated link ({e}); it needs root and /dev/net/tun")
    });
    let ip = lab.server_ip;
    let udp = lab.enter(|| std::net::UdpSocket::bind((ip, 0)).expect("UDP behind the link"));
    let options = quicrpc_tests::TestOptions {
        sockets: Some((Some(udp), None)),
        ..Default::default()
    };
    let server = TestServer::start_with(options, |b| b).await;
    let channel = quicrpc::Channel::builder(format!("https://{ip}:{}", server.addr.port()))
        .ca_certificate(server.cert.ca_certificate())
        .domain_name("localhost")
        .fallback(quicrpc::Fallback::QuicOnly)
        .connect();
    let mut client = quicrpc_tests::pb::echo_client::EchoClient::new(
        within("connect", channel).await.expect("connect"),
    );

    // `Fetch` is declared BULK: 64 replies of 128 KiB.
    let request = EchoRequest {
        response_count: REPLIES,
        response_size: 128 * 1024,
        ..echo("bulk")
    };
    let mut bulk = within("bulk transfer", client.fetch(request))
        .await
        .expect("bulk transfer starts")
        .into_inner();
    let received = Arc::new(AtomicU32::new(0));
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let drain = tokio::spawn({
        let received = received.clone();
        async move {
            let mut started_tx = Some(started_tx);
            while let Some(_reply) = bulk.message().await.expect("bulk reply") {
                received.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    within("bulk transfer under way", started)
        .await
        .expect("first bulk reply");

    // `Urgent` is declared CRITICAL.
    let mut urgent = client.clone();
    for i in 0..5 {
        let start = Instant::now();
        let reply = within("critical call", urgent.urgent(echo("now")))
            .await
            .expect("critical call")
            .into_inner();
        assert_eq!(reply.priority, "critical");
        println!(
            "critical call {i}: {:?}, with {} of {REPLIES} bulk replies received",
            start.elapsed(),
            received.load(Ordering::Relaxed)
        );
    }
    assert!(
        !drain.is_finished(),
        "the bulk transfer ended before the critical calls: they waited behind it"
    );
    let before = received.load(Ordering::Relaxed);
    within("bulk transfer ends", drain)
        .await
        .expect("bulk transfer");
    assert!(before < REPLIES);
    assert_eq!(received.load(Ordering::Relaxed), REPLIES);
    let (up, down) = lab.counts();
    println!("link: client -> server {up}; server -> client {down}");
}
