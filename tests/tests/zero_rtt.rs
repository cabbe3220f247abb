//! 0-RTT: resumed connections send replay-safe calls as early data, and nothing else; the
//! server never runs a call that is not replay-safe from early data, replayed or not.

use quicrpc::{NoZeroRtt, ZeroRtt};
use quicrpc_tests::pb::EchoReply;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::raw::{self, RawClient, RecordingRelay};
use quicrpc_tests::{Run, TestOptions, TestServer, echo, until, within};
use quicrpc_wire::code::ErrorCode;

const UNARY: &str = "/quicrpc.testing.Echo/Unary";
const LOOKUP: &str = "/quicrpc.testing.Echo/Lookup";

/// A full handshake and one call, so that the process holds a session ticket for `server`
/// (the ticket comes before the first response).
async fn warm_up(server: &TestServer) {
    let mut client = server.client().await;
    let response = within("first call", client.unary(echo("warm up")))
        .await
        .expect("first call");
    assert_eq!(
        response.extensions().get::<ZeroRtt>(),
        Some(&ZeroRtt::NotUsed)
    );
}

/// A client on a new channel: it resumes the warmed-up session when its first call
/// connects.
fn resumed_client(server: &TestServer) -> EchoClient<quicrpc::Channel> {
    EchoClient::new(
        server
            .channel_builder()
            .connect_lazy()
            .expect("build channel"),
    )
}

fn run(method: &str, early_data: bool) -> Run {
    Run {
        method: method.into(),
        early_data,
    }
}

#[tokio::test]
async fn resumed_channel_sends_replay_safe_calls_as_early_data() {
    let server = TestServer::start().await;
    warm_up(&server).await;

    let mut client = resumed_client(&server);
    let response = within("early call", client.lookup(echo("early")))
        .await
        .expect("0-RTT call");
    assert_eq!(
        response.extensions().get::<ZeroRtt>(),
        Some(&ZeroRtt::Accepted)
    );
    assert!(response.get_ref().early_data, "server saw it as early data");
    assert_eq!(response.get_ref().message, "early");

    // Once the handshake is over, calls go as usual.
    let response = within("later call", client.lookup(echo("later")))
        .await
        .expect("1-RTT call");
    assert!(!response.get_ref().early_data);
    assert_eq!(
        server.runs(),
        [
            run("Unary", false),
            run("Lookup", true),
            run("Lookup", false)
        ]
    );
}

#[tokio::test]
async fn other_calls_wait_for_the_handshake() {
    let server = TestServer::start().await;
    warm_up(&server).await;

    // Not declared replay-safe: waits for the handshake, even on a resumed connection.
    let mut client = resumed_client(&server);
    let response = within("unary on a resumed channel", client.unary(echo("unsafe")))
        .await
        .expect("call");
    assert_eq!(
        response.extensions().get::<ZeroRtt>(),
        Some(&ZeroRtt::NotUsed)
    );
    assert!(!response.get_ref().early_data);

    // Replay-safe, but opted out for this call.
    let mut client = resumed_client(&server);
    let mut request = tonic::Request::new(echo("opted out"));
    request.extensions_mut().insert(NoZeroRtt);
    let response = within("opted-out call", client.lookup(request))
        .await
        .expect("call");
    assert!(!response.get_ref().early_data);

    // 0-RTT turned off on the channel.
    let mut client = EchoClient::new(
        server
            .channel_builder()
            .zero_rtt(false)
            .connect_lazy()
            .expect("build channel"),
    );
    let response = within("call without 0-RTT", client.lookup(echo("off")))
        .await
        .expect("call");
    assert!(!response.get_ref().early_data);

    assert!(
        server.runs().iter().all(|r| !r.early_data),
        "{:?}",
        server.runs()
    );
}

#[tokio::test]
async fn server_without_zero_rtt_takes_calls_after_the_handshake() {
    let server = TestServer::start_with(Default::default(), |b| b.zero_rtt(false)).await;
    warm_up(&server).await;
    let mut client = resumed_client(&server);
    let response = within("call", client.lookup(echo("no early data")))
        .await
        .expect("call");
    // The session ticket allows no early data, so the client sends none.
    assert_eq!(
        response.extensions().get::<ZeroRtt>(),
        Some(&ZeroRtt::NotUsed)
    );
    assert_eq!(server.runs(), [run("Unary", false), run("Lookup", false)]);
}

#[tokio::test]
async fn rejected_early_data_is_sent_again_after_the_handshake() {
    let mut first = TestServer::start().await;
    warm_up(&first).await;
    // A restarted server has forgotten its sessions: it rejects the early data.
    within("first server shut down", first.begin_shutdown())
        .await
        .expect("join")
        .expect("shutdown");
    let options = TestOptions {
        addr: Some(first.addr),
        cert: Some(first.cert.clone()),
        ..TestOptions::default()
    };
    let server = TestServer::start_with(options, |b| b).await;

    let mut client = resumed_client(&server);
    let response = within("call", client.lookup(echo("sent twice")))
        .await
        .expect("call");
    assert_eq!(
        response.extensions().get::<ZeroRtt>(),
        Some(&ZeroRtt::Retried)
    );
    assert!(!response.get_ref().early_data);
    assert_eq!(server.runs(), [run("Lookup", false)]);
}

/// A raw client's config that holds a session ticket for `server`.
async fn raw_config_with_ticket(server: &TestServer) -> quinn::ClientConfig {
    let config = raw::client_config(&server.cert.ca_certificate());
    let client = RawClient::connect_with(server.addr, config.clone()).await;
    let (_send, recv) = client.call(UNARY, &echo("warm up")).await;
    let response = within("raw first call", raw::read_response(recv)).await;
    assert_eq!(response.code(), Some(tonic::Code::Ok));
    client.conn.close(0u32.into(), b"done");
    config
}

#[tokio::test]
async fn server_refuses_early_data_for_methods_that_are_not_replay_safe() {
    let server = TestServer::start().await;
    let config = raw_config_with_ticket(&server).await;

    // A client that ignores the rules: a non-idempotent call as early data.
    let (client, accepted) = RawClient::connect_early(server.addr, config);
    let (_s1, unsafe_recv) = client.call(UNARY, &echo("replayable")).await;
    let (_s2, safe_recv) = client.call(LOOKUP, &echo("harmless")).await;
    assert!(
        within("0-RTT verdict", accepted).await,
        "server accepted the early data"
    );

    let refused = within("refused call", raw::read_response(unsafe_recv)).await;
    assert_eq!(refused.reset, Some(ErrorCode::TooEarly.to_u32().into()));
    assert!(refused.head.is_none(), "no response for a refused call");
    let answered = within("replay-safe call", raw::read_response(safe_recv)).await;
    assert_eq!(answered.code(), Some(tonic::Code::Ok));

    // After the handshake the same call runs.
    let (_s3, recv) = client.call(UNARY, &echo("now safe")).await;
    let response = within("call after the handshake", raw::read_response(recv)).await;
    assert_eq!(response.code(), Some(tonic::Code::Ok));

    assert_eq!(
        server.runs(),
        [
            run("Unary", false),
            run("Lookup", true),
            run("Unary", false)
        ]
    );
}

#[tokio::test]
async fn replayed_early_data_runs_nothing() {
    let server = TestServer::start().await;
    let config = raw_config_with_ticket(&server).await;

    // An early connection through a relay that records what the client sends: its first
    // flight holds the ClientHello and both calls as 0-RTT data.
    let relay = RecordingRelay::start(server.addr).await;
    let (client, accepted) = RawClient::connect_early(relay.addr, config);
    let (_s1, unsafe_recv) = client.call(UNARY, &echo("replayable")).await;
    let (_s2, safe_recv) = client.call(LOOKUP, &echo("harmless")).await;
    assert!(within("0-RTT verdict", accepted).await);
    let refused = within("refused call", raw::read_response(unsafe_recv)).await;
    assert_eq!(refused.reset, Some(ErrorCode::TooEarly.to_u32().into()));
    let answered = within("replay-safe call", raw::read_response(safe_recv)).await;
    assert_eq!(answered.code(), Some(tonic::Code::Ok));
    client.conn.close(0u32.into(), b"done");
    let before = server.runs();
    assert_eq!(before, [run("Unary", false), run("Lookup", true)]);

    // An attacker replays the recorded datagrams from another address.
    let recorded = relay.recorded();
    assert!(!recorded.is_empty());
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // The server takes the replay for a new connection once it has forgotten the original
    // one (after QUIC's draining period); until then it drops the datagrams as duplicates.
    // So the replay is repeated until the server answers it, which shows that the server has
    // processed the replayed handshake and early data.
    let mut buf = vec![0; 65536];
    let answered = async {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = every.tick() => {
                    for datagram in &recorded {
                        attacker.send_to(datagram, server.addr).await.expect("replay");
                    }
                }
                answer = attacker.recv_from(&mut buf) => return answer.expect("server answered"),
            }
        }
    };
    within("server's answer to the replay", answered).await;

    // A later call from a legitimate client, after the replayed packets.
    let mut client = server.client().await;
    let reply: EchoReply = within("call after the replay", client.lookup(echo("after")))
        .await
        .expect("call")
        .into_inner();
    assert_eq!(reply.message, "after");
    let after = server.runs();
    assert_eq!(
        after[before.len()..],
        [run("Lookup", false)],
        "replayed calls ran: {after:?}"
    );
}

/// A connection that closes during its handshake runs none of its early calls that are not
/// replay-safe. quinn calls a stream accepted after the connection closed not 0-RTT, so an
/// attacker who replays a client's first flight (ClientHello and a 0-RTT call) followed by
/// its CONNECTION_CLOSE would otherwise have the call run: the server decides from whether
/// the handshake completed.
#[tokio::test]
async fn early_calls_of_a_connection_closed_during_its_handshake_do_not_run() {
    let server = TestServer::start().await;
    let config = raw_config_with_ticket(&server).await;
    let before = server.runs();

    // The client's datagrams go to a socket that never answers: its first flight, with a
    // call as 0-RTT data, and then its CONNECTION_CLOSE, sent in the Initial space.
    let hole = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let connecting = endpoint
        .connect_with(config, hole.local_addr().expect("address"), "localhost")
        .expect("connect");
    let Ok((conn, _accepted)) = connecting.into_0rtt() else {
        panic!("no session ticket to resume with");
    };
    let (mut send, _recv) = conn.open_bi().await.expect("open stream");
    let mut call = raw::request_head(UNARY, &[]).to_vec();
    call.extend_from_slice(&raw::data_message(&echo("replayable")));
    send.write_all(&call).await.expect("write");
    send.finish().expect("finish");
    let mut buf = vec![0; 65536];
    let (n, _) = within("first flight", hole.recv_from(&mut buf))
        .await
        .expect("first flight");
    let mut datagrams = vec![buf[..n].to_vec()];
    conn.close(0u32.into(), b"gone");
    // The close is out once the endpoint is idle; loopback has delivered everything by then.
    within("client idle", endpoint.wait_idle()).await;
    while let Ok((n, _)) = hole.try_recv_from(&mut buf) {
        datagrams.push(buf[..n].to_vec());
    }
    assert!(datagrams.len() >= 2, "the first flight and the close");

    // The attacker sends them all to the server at once.
    let opened = server.stats.connections_opened();
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for datagram in &datagrams {
        attacker
            .send_to(datagram, server.addr)
            .await
            .expect("replay");
    }
    // The server has taken the connection...
    until(
        "connection taken",
        || server.stats.connections_opened(),
        opened + 1,
    )
    .await;
    // ...and has dropped it, and finished every call it took from it.
    until("connection gone", || server.stats.quic_connections(), 0).await;
    until("calls done", || server.stats.calls(), 0).await;
    assert_eq!(
        server.runs()[before.len()..],
        [],
        "an early call ran after its connection closed during the handshake"
    );
}

/// Calls sent as 0-RTT early data to a server that rejects it (a replica that shares the
/// name and certificate of the one that issued the ticket, not its ticket keys, or a server
/// restarted with new keys) are all sent again, and all answered. quinn gives the replayed
/// streams the rejected ones' ids, and dropping a rejected stream's handle cleared the waker
/// of the new stream with its id: one of three concurrent calls hung.
#[tokio::test]
async fn concurrent_calls_are_all_answered_after_the_server_rejects_early_data() {
    let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
    let options = || TestOptions {
        cert: Some(cert.clone()),
        ..TestOptions::default()
    };
    let issuer = TestServer::start_with(options(), |b| b).await;
    let other = TestServer::start_with(options(), |b| b).await;
    {
        // Two calls, so that the session tickets have come before the channel goes.
        let mut client = issuer.client().await;
        for _ in 0..2 {
            within("a call", client.lookup(echo("ticket")))
                .await
                .expect("served");
        }
    }
    let channel = other.channel_builder().connect_lazy().expect("channel");
    let client = EchoClient::new(channel);
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move { client.lookup(echo(&format!("c{i}"))).await })
        })
        .collect();
    for call in calls {
        let reply = within("a replayed call", call)
            .await
            .expect("joined")
            .expect("answered");
        assert_eq!(
            reply.extensions().get::<quicrpc::ZeroRtt>(),
            Some(&quicrpc::ZeroRtt::Retried),
            "it went as early data, and again"
        );
    }
}
