//! Fallback over a real network path that drops UDP: a server in a network namespace of the
//! test's own, behind an nftables rule. Needs root (CI runs as root); fails loudly otherwise.

use std::time::{Duration, Instant};

use quicrpc::Transport;
use quicrpc_tests::netns::NetNs;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, transport_of, within};

#[tokio::test]
async fn udp_dropped_falls_back_to_tcp_and_returns_to_quic_when_it_passes_again() {
    let ns = NetNs::create();
    ns.block_udp();
    let ip = ns.ns_ip;
    let server = TestServer::start_in(&ns).await;

    let builder = quicrpc::Channel::builder(format!("https://{}:{}", ip, server.addr.port()))
        .ca_certificate(server.cert.ca_certificate())
        .domain_name("localhost")
        .connect_timeout(Duration::from_secs(2))
        .quic_probe_interval(Duration::from_millis(200));

    // UDP vanishes without a trace: the first call goes over TCP after the head start, not
    // after QUIC's handshake timeout.
    let start = Instant::now();
    let channel = within("connect", builder.connect())
        .await
        .expect("falls back to TCP");
    let mut client = EchoClient::new(channel.clone());
    assert_eq!(transport_of(&mut client).await, Transport::Tcp);
    println!(
        "UDP dropped: first call answered over TCP after {:?}",
        start.elapsed()
    );

    // Calls in flight on TCP are not disturbed when QUIC comes back.
    let request = quicrpc_tests::pb::EchoRequest {
        response_count: 4,
        delay_ms: 100,
        ..echo("long")
    };
    let mut stream = within("open", client.server_stream(request))
        .await
        .unwrap()
        .into_inner();

    ns.unblock_udp();
    let back = Instant::now();
    within("back on QUIC", async {
        while transport_of(&mut client).await != Transport::Quic {
            // Pace the polling calls; the probe runs every 200 ms.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    println!(
        "UDP passes again: calls back on QUIC after {:?}",
        back.elapsed()
    );
    assert_eq!(channel.transport(), Transport::Quic);

    let mut n = 0;
    while within("stream on TCP", stream.message())
        .await
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    assert_eq!(n, 4, "the TCP stream in flight finished whole");
}

#[tokio::test]
async fn udp_dropped_after_a_session_began_falls_back_from_a_resumed_connection() {
    let ns = NetNs::create();
    let ip = ns.ns_ip;
    let server = TestServer::start_in(&ns).await;
    let builder = quicrpc::Channel::builder(format!("https://{}:{}", ip, server.addr.port()))
        .ca_certificate(server.cert.ca_certificate())
        .domain_name("localhost")
        .connect_timeout(Duration::from_secs(2))
        .quic_probe_interval(Duration::from_secs(60));

    // A first channel over QUIC leaves a session ticket behind.
    let channel = within("connect", builder.clone().connect())
        .await
        .expect("connect over QUIC");
    let mut first = EchoClient::new(channel);
    assert_eq!(transport_of(&mut first).await, Transport::Quic);
    drop(first);

    // Then UDP vanishes. A new channel resumes the session at once and sends its calls into
    // the void: the replay-safe one as early data, the other waiting for the handshake. The
    // handshake never completes, so after the head start TCP is tried, and both calls are
    // answered over TCP.
    ns.block_udp();
    let mut client = EchoClient::new(builder.connect_lazy().expect("build channel"));
    let mut other = client.clone();
    let start = Instant::now();
    let (lookup, unary) = within("calls on a resumed channel", async {
        tokio::join!(client.lookup(echo("early")), other.unary(echo("later")))
    })
    .await;
    let lookup = lookup.expect("replay-safe call answered over TCP");
    let unary = unary.expect("other call answered over TCP");
    println!(
        "UDP dropped after resumption: calls answered over TCP after {:?}",
        start.elapsed()
    );
    assert_eq!(
        lookup.extensions().get::<Transport>(),
        Some(&Transport::Tcp)
    );
    assert_eq!(unary.extensions().get::<Transport>(), Some(&Transport::Tcp));
    let mut methods: Vec<String> = server.runs().into_iter().map(|r| r.method).collect();
    methods.sort();
    assert_eq!(methods, ["Lookup", "Unary", "Unary"], "each call ran once");
}

/// A balanced channel whose one server is behind a path that drops UDP reaches that server
/// over TCP and the other over QUIC: each server has its own fallback.
#[tokio::test]
async fn a_balanced_channel_falls_back_for_one_server_only() {
    let ns = NetNs::create();
    ns.block_udp();
    let behind = TestServer::start_in(&ns).await;
    let open = TestServer::start().await;
    let endpoints = [
        quicrpc::Channel::builder(format!("https://{}:{}", ns.ns_ip, behind.addr.port()))
            .ca_certificate(behind.cert.ca_certificate())
            .domain_name("localhost")
            .connect_timeout(Duration::from_secs(2)),
        open.any_transport_builder(),
    ];
    let client = EchoClient::new(quicrpc::Balance::RoundRobin.list(endpoints));
    let mut transports = Vec::new();
    for i in 0..10 {
        let response = within("call", client.clone().unary(echo(&format!("c{i}"))))
            .await
            .expect("served");
        transports.push(*response.extensions().get::<Transport>().expect("transport"));
    }
    assert!(transports.contains(&Transport::Tcp), "{transports:?}");
    assert!(transports.contains(&Transport::Quic), "{transports:?}");
    assert_eq!(
        (
            behind.stats.quic_connections(),
            behind.stats.tcp_connections()
        ),
        (0, 1),
        "the server without UDP, over TCP"
    );
    assert_eq!(
        (open.stats.quic_connections(), open.stats.tcp_connections()),
        (1, 0),
        "the other, over QUIC"
    );
}
