//! Abuse over real sockets: clients that hold streams open and say nothing, garbage
//! datagrams, clients that vanish, clients that never read. The server stays up, serves
//! everyone else, and frees or bounds what the abusers hold.

use std::time::Duration;

use futures_util::FutureExt;
use quicrpc_netlab::Rng;
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::raw::{self, RawClient, RecordingRelay};
use quicrpc_tests::{TestOptions, TestServer, echo, until, within};

/// Twenty calls from a well-behaved client.
async fn others_are_served(server: &TestServer) {
    let mut client = server.client().await;
    for i in 0..20 {
        let reply = within("call", client.unary(echo(&format!("call {i}"))))
            .await
            .expect("served")
            .into_inner();
        assert_eq!(reply.message, format!("call {i}"));
    }
}

#[tokio::test]
async fn clients_holding_every_stream_open_and_silent_do_not_starve_others() {
    const STREAMS: u32 = 8;
    const HOGS: usize = 10;
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.max_concurrent_streams(STREAMS)
    })
    .await;
    let mut hogs = Vec::new();
    for _ in 0..HOGS {
        let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
        let mut streams = Vec::new();
        for _ in 0..STREAMS {
            // The first byte of a HEADERS frame, and then nothing.
            streams.push(client.send(&[0x01], false).await);
        }
        hogs.push((client, streams));
    }
    // Every hog stream has reached the server, which holds each as a call waiting for its
    // head; and every hog has used up its stream credit.
    let held = HOGS * STREAMS as usize;
    until("hog streams held", || server.stats.calls(), held).await;
    assert_eq!(server.stats.quic_connections(), HOGS);
    for (client, _) in &hogs {
        assert!(
            client.conn.open_bi().now_or_never().is_none(),
            "a hog could open another stream: it was not holding them all"
        );
    }

    others_are_served(&server).await;

    // The hogs held on throughout: the server freed none of their streams to serve others
    // (their count would stay below `held`).
    until("only hog streams held", || server.stats.calls(), held).await;
}

#[tokio::test]
async fn garbage_datagrams_and_random_stream_bytes_do_not_stop_the_server() {
    let server = TestServer::start().await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut rng = Rng::new(7);
    let mut random_bytes =
        |len: usize| -> Vec<u8> { (0..len).map(|_| (rng.unit() * 256.0) as u8).collect() };
    for i in 0..2000 {
        let mut datagram = random_bytes(1 + i % 1400);
        // Half of them look like QUIC long-header packets (Initial, version 1).
        if i % 2 == 0 && datagram.len() > 5 {
            datagram[0] = 0xc0 | (datagram[0] & 0x0f);
            datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
        }
        socket.send_to(&datagram, server.addr).await.expect("send");
    }
    // Random bytes on valid streams of a real connection.
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    for len in [1, 7, 100, 5000] {
        let (_send, recv) = client.send(&random_bytes(len), true).await;
        let response = within("garbage stream", raw::read_response(recv)).await;
        assert!(
            response.code().is_some() || response.reset.is_some(),
            "the garbage stream ended with a status or a reset: {response:?}"
        );
    }
    others_are_served(&server).await;
}

#[tokio::test]
async fn a_client_that_vanishes_is_freed_after_the_idle_timeout() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.idle_timeout(Duration::from_millis(500))
    })
    .await;
    let relay = RecordingRelay::start(server.addr).await;
    let client = RawClient::connect_with(
        relay.addr,
        raw::client_config(&server.cert.ca_certificate()),
    )
    .await;
    let (_send, recv) = client
        .call("/quicrpc.testing.Echo/Unary", &echo("still here"))
        .await;
    let response = within("call", raw::read_response(recv)).await;
    assert_eq!(response.code(), Some(tonic::Code::Ok));
    assert_eq!(server.stats.quic_connections(), 1);

    // The path disappears: no close, no packets, ever again.
    drop(relay);
    until(
        "vanished client freed",
        || server.stats.quic_connections(),
        0,
    )
    .await;
    drop(client);
    others_are_served(&server).await;
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_make_the_server_buffer_without_bound() {
    const REPLY: u32 = 64 * 1024;
    // What may sit between the handler and the unread client: the client's stream receive
    // window (1.25 MB, quinn's default), quinn's send buffer for the stream, tonic's encoder
    // and the handler's channel (4 replies).
    const BOUND: u64 = 4 * 1024 * 1024;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        response_count: 100_000,
        response_size: REPLY,
        ..echo("never read")
    };
    // 6.5 GB on offer; the client reads one reply and then nothing.
    let mut stream = within("open", client.server_stream(request))
        .await
        .expect("stream")
        .into_inner();
    within("first reply", stream.message())
        .await
        .expect("reply")
        .expect("one");
    within("server fills the window", async {
        while server.produced_bytes() < 1024 * 1024 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Watch the producer for a second: flow control must hold it.
    let mut most = 0;
    for _ in 0..100 {
        most = most.max(server.produced_bytes());
        assert!(
            most <= BOUND,
            "the server buffered {most} bytes for a client that reads nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("unread stream: the handler got {most} bytes out, then flow control held it");
    // Reading again lets it go on.
    within("more replies", async {
        for _ in 0..100 {
            stream.message().await.expect("reply").expect("more");
        }
    })
    .await;
    others_are_served(&server).await;
}

/// A stream whose head never completes is ended after the handshake timeout (the time a
/// client has to say what it wants), not held as a call for ever: the server stops and
/// resets it with DEADLINE_EXCEEDED, and the call slot is free again.
#[tokio::test]
async fn a_request_head_that_never_completes_is_ended() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.handshake_timeout(Duration::from_millis(300))
    })
    .await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    // The first byte of a HEADERS frame, and then nothing.
    let (_send, mut recv) = client.send(&[0x01], false).await;
    until("the stream is held as a call", || server.stats.calls(), 1).await;
    let read = within("the server ends the stream", recv.read_chunk(1024, true)).await;
    match read {
        Err(quinn::ReadError::Reset(code)) => {
            assert_eq!(code.into_inner(), 0x4, "DEADLINE_EXCEEDED's code");
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    until("no call held", || server.stats.calls(), 0).await;
    others_are_served(&server).await;
}
