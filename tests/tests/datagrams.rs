//! The size of QUIC's datagrams: over loopback larger than Ethernet allows, unless either
//! side sets the largest UDP payload, which then bounds them. A relay between the client and
//! the server records the size of every datagram the client sends.

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::raw::RecordingRelay;
use quicrpc_tests::{TestOptions, TestServer, within};

/// The largest UDP payload an Ethernet frame carries over IPv4: quinn's default limit.
const ETHERNET_PAYLOAD: usize = 1_472;

/// quicrpc's default largest UDP payload over loopback (`LOOPBACK_UDP_PAYLOAD`).
const LOOPBACK_PAYLOAD: usize = 4_000;

/// A request that fills many datagrams.
fn large() -> EchoRequest {
    EchoRequest {
        message: "large".into(),
        payload: vec![0xab; 256 * 1024],
        ..EchoRequest::default()
    }
}

/// The largest datagram the client has sent through `relay`.
fn largest(relay: &RecordingRelay) -> usize {
    relay.recorded().iter().map(Vec::len).max().unwrap_or(0)
}

/// Makes large calls through `relay`, with a channel `configure`d, until the client has sent
/// a datagram larger than `above` (path MTU discovery has found a larger path); bounded by
/// the harness's timeout.
async fn call_until_larger_than(
    server: &TestServer,
    relay: &RecordingRelay,
    configure: impl FnOnce(quicrpc::ChannelBuilder) -> quicrpc::ChannelBuilder,
    above: usize,
) {
    let channel = quicrpc::Channel::builder(format!("https://127.0.0.1:{}", relay.addr.port()))
        .ca_certificate(server.cert.ca_certificate())
        .fallback(quicrpc::Fallback::QuicOnly);
    let channel = within("connect through the relay", configure(channel).connect())
        .await
        .expect("connected");
    let mut client = EchoClient::new(channel);
    within("a datagram larger than before", async {
        while largest(relay) <= above {
            client.unary(large()).await.expect("served");
        }
    })
    .await;
}

#[tokio::test]
async fn loopback_carries_datagrams_larger_than_ethernets() {
    let server = TestServer::start().await;
    let relay = RecordingRelay::start(server.addr).await;
    call_until_larger_than(&server, &relay, |b| b, ETHERNET_PAYLOAD).await;
    let largest = largest(&relay);
    assert!(
        largest <= LOOPBACK_PAYLOAD,
        "a datagram of {largest} bytes, over the default limit for loopback"
    );
}

#[tokio::test]
async fn the_clients_largest_udp_payload_bounds_its_datagrams() {
    let server = TestServer::start().await;
    let relay = RecordingRelay::start(server.addr).await;
    // Past QUIC's least (1,200 bytes): path MTU discovery has searched upwards.
    call_until_larger_than(&server, &relay, |b| b.max_udp_payload_size(1_400), 1_300).await;
    let largest = largest(&relay);
    assert!(largest <= 1_400, "a datagram of {largest} bytes");
}

#[tokio::test]
async fn the_servers_largest_udp_payload_bounds_what_clients_send() {
    // The server takes no more than it is set to (its `max_udp_payload_size` transport
    // parameter), whatever the client would send over loopback.
    let server =
        TestServer::start_with(TestOptions::default(), |b| b.max_udp_payload_size(1_400)).await;
    let relay = RecordingRelay::start(server.addr).await;
    call_until_larger_than(&server, &relay, |b| b, 1_300).await;
    let largest = largest(&relay);
    assert!(largest <= 1_400, "a datagram of {largest} bytes");
}
