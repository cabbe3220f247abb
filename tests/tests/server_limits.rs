//! Server-wide limits: what a client sees when it hits each one, and that the server frees
//! what it held. (Concurrent streams per connection and the metadata size limit are tested
//! in `limits.rs`.)

use std::time::Duration;

use quicrpc::Fallback;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::raw::RecordingRelay;
use quicrpc_tests::{TestOptions, TestServer, echo, until, within};
use tonic::Code;

async fn first_call(builder: quicrpc::ChannelBuilder) -> Result<(), tonic::Status> {
    let mut client = EchoClient::new(builder.connect_lazy().expect("build channel"));
    within("first call", client.unary(echo("hello")))
        .await
        .map(drop)
}

#[tokio::test]
async fn max_connections_turns_the_next_one_away_on_either_transport() {
    let server = TestServer::start_with(TestOptions::default(), |b| b.max_connections(2)).await;
    let quic = server.channel_builder();
    let tcp = server.any_transport_builder().fallback(Fallback::TcpOnly);

    // One connection per transport: the limit counts both together.
    let first = quic.clone().connect_lazy().expect("channel");
    first_call_on(&first).await.expect("first QUIC connection");
    let second = tcp.clone().connect_lazy().expect("channel");
    first_call_on(&second).await.expect("first TCP connection");
    assert_eq!(server.stats.connections(), 2);

    for (what, builder) in [("QUIC", quic.clone()), ("TCP", tcp.clone())] {
        let status = first_call(builder).await.expect_err("over the limit");
        assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
        println!("{what} over the limit: {}", status.message());
    }
    assert_eq!(
        server.stats.connections(),
        2,
        "nothing counted for refused clients"
    );

    // Once a connection goes, a new one gets in.
    drop(first);
    until(
        "QUIC connection closed",
        || server.stats.quic_connections(),
        0,
    )
    .await;
    first_call(quic).await.expect("room again");
}

async fn first_call_on(channel: &quicrpc::Channel) -> Result<(), tonic::Status> {
    let mut client = EchoClient::new(channel.clone());
    within("call", client.unary(echo("hello"))).await.map(drop)
}

#[tokio::test]
async fn a_stalled_quic_handshake_is_dropped_after_the_handshake_timeout() {
    // An idle timeout far beyond the test's bound: only the handshake timeout can free it.
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.handshake_timeout(Duration::from_millis(300))
            .idle_timeout(Duration::from_secs(120))
    })
    .await;
    // The server's answers never reach this client, so its handshake cannot complete.
    let relay = RecordingRelay::black_hole(server.addr).await;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let config = quicrpc_tests::raw::client_config(&server.cert.ca_certificate());
    let _connecting = endpoint
        .connect_with(config, relay.addr, "localhost")
        .expect("start handshake");
    until("handshake under way", || server.stats.quic_connections(), 1).await;
    until(
        "stalled handshake dropped",
        || server.stats.quic_connections(),
        0,
    )
    .await;

    // Others are served all along.
    let mut client = server.client().await;
    within("call", client.unary(echo("ok")))
        .await
        .expect("served");
}

/// A TCP connection that never says a word, once the server has started its TLS handshake.
async fn silent_tcp_connection(server: &TestServer) -> tokio::net::TcpStream {
    let before = server.stats.tcp_handshakes();
    let silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    until(
        "TLS handshake under way",
        || server.stats.tcp_handshakes(),
        before + 1,
    )
    .await;
    silent
}

#[tokio::test]
async fn a_stalled_tls_handshake_on_tcp_is_dropped_after_the_handshake_timeout() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.handshake_timeout(Duration::from_millis(300))
    })
    .await;
    let _silent = silent_tcp_connection(&server).await;
    assert_eq!(
        server.stats.tcp_connections(),
        0,
        "a handshake under way does not count as a connection"
    );
    until(
        "silent connection dropped",
        || server.stats.tcp_handshakes(),
        0,
    )
    .await;
    assert_eq!(server.stats.tcp_connections(), 0);
}

#[tokio::test]
async fn retry_switches_on_under_a_flood_of_handshakes_and_off_after() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.address_validation(quicrpc::AddressValidation::UnderLoad { handshakes: 5 })
            .handshake_timeout(Duration::from_millis(500))
    })
    .await;
    // No load: no Retry.
    let mut client = server.client().await;
    within("call", client.unary(echo("calm")))
        .await
        .expect("served");
    assert_eq!(server.stats.retries_sent(), 0);

    // A flood of handshakes that never complete (the clients never hear back).
    let relay = RecordingRelay::black_hole(server.addr).await;
    let config = quicrpc_tests::raw::client_config(&server.cert.ca_certificate());
    let mut flood = Vec::new();
    for _ in 0..5 {
        let endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
        let connecting = endpoint
            .connect_with(config.clone(), relay.addr, "localhost")
            .expect("start handshake");
        flood.push((endpoint, connecting));
    }
    until("flood under way", || server.stats.quic_handshakes(), 5).await;

    // A new client now has to prove its address, which a real client does transparently.
    let mut client = EchoClient::new(server.channel_builder().connect_lazy().expect("channel"));
    within("call under load", client.unary(echo("validated")))
        .await
        .expect("served after a Retry");
    assert!(server.stats.retries_sent() >= 1, "a Retry was sent");

    // When the stalled handshakes time out, Retry switches off again.
    until("flood over", || server.stats.quic_handshakes(), 0).await;
    let before = server.stats.retries_sent();
    let mut client = EchoClient::new(server.channel_builder().connect_lazy().expect("channel"));
    within("call after the flood", client.unary(echo("calm again")))
        .await
        .expect("served");
    assert_eq!(server.stats.retries_sent(), before, "no Retry without load");
}

/// The idle timeout holds on TCP as on QUIC: a TLS connection with HTTP/2 set up that then
/// says nothing (a client without keep-alives, after one call) is closed once the timeout
/// passes with no byte either way, and stops counting against the connection limit.
#[tokio::test]
async fn an_idle_tcp_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.idle_timeout(Duration::from_millis(500))
    })
    .await;
    let channel = server
        .any_transport_builder()
        .fallback(Fallback::TcpOnly)
        .keep_alive_interval(None)
        .connect();
    let mut client = EchoClient::new(within("connect", channel).await.expect("connect"));
    within("a call", client.unary(echo("then silence")))
        .await
        .expect("call");
    assert_eq!(server.stats.tcp_connections(), 1);
    until(
        "idle connection closed",
        || server.stats.tcp_connections(),
        0,
    )
    .await;
}

/// ...while a client that sends HTTP/2 keep-alive PINGs keeps its connection: it is not
/// idle. The wait is the thing under test: three idle timeouts pass.
#[tokio::test]
async fn a_kept_alive_tcp_connection_outlives_the_idle_timeout() {
    // Ten PINGs to an idle timeout: a busy test machine that delays a few still keeps it.
    let idle = Duration::from_secs(1);
    let server = TestServer::start_with(TestOptions::default(), |b| b.idle_timeout(idle)).await;
    let channel = server
        .any_transport_builder()
        .fallback(Fallback::TcpOnly)
        .keep_alive_interval(Some(Duration::from_millis(100)))
        .connect();
    let mut client = EchoClient::new(within("connect", channel).await.expect("connect"));
    within("a call", client.unary(echo("before")))
        .await
        .expect("call");
    tokio::time::sleep(idle * 3).await;
    assert_eq!(
        server.stats.tcp_connections(),
        1,
        "the connection was closed"
    );
    within("a call", client.unary(echo("after")))
        .await
        .expect("call");
    assert_eq!(server.stats.tcp_connections(), 1);
}

/// With a maximum connection age, the server ends a connection once it is that old (GOAWAY,
/// then close when its calls are done), on both transports, and the client's next call
/// goes on a new connection.
#[tokio::test]
async fn connections_end_at_their_maximum_age_and_clients_reconnect() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.max_connection_age(Duration::from_millis(300))
    })
    .await;
    for policy in [Fallback::QuicOnly, Fallback::TcpOnly] {
        let count = || match policy {
            Fallback::QuicOnly => server.stats.quic_connections(),
            _ => server.stats.tcp_connections(),
        };
        let mut client = server.client_over(policy).await;
        within("a call", client.unary(echo("young")))
            .await
            .unwrap_or_else(|s| panic!("{policy:?}: {s:?}"));
        until(
            &format!("{policy:?}: the aged connection is closed"),
            count,
            0,
        )
        .await;
        // The server closes once its GOAWAY is out; a call the client starts before it has
        // read the close can still meet it (UNAVAILABLE, the status to retry on). Any other
        // failure is one.
        within("a call on a new connection", async {
            loop {
                match client.unary(echo("again")).await {
                    Ok(_) => break,
                    Err(s) if s.code() == tonic::Code::Unavailable => {}
                    Err(s) => panic!("{policy:?}: {s:?}"),
                }
            }
        })
        .await;
        assert_eq!(count(), 1, "{policy:?}");
    }
}

/// ...and a call that never ends does not keep an aged connection alive past the drain
/// timeout: the server closes it, on both transports.
#[tokio::test]
async fn an_aged_connection_is_closed_after_the_drain_timeout_whatever_its_calls() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.max_connection_age(Duration::from_millis(300))
            .drain_timeout(Duration::from_millis(300))
    })
    .await;
    for policy in [Fallback::QuicOnly, Fallback::TcpOnly] {
        let mut client = server.client_over(policy).await;
        let hanging = tokio::spawn(async move { client.hang(echo("for ever")).await });
        let result = within(&format!("{policy:?}: the hanging call ends"), hanging)
            .await
            .expect("joined");
        assert!(result.is_err(), "{policy:?}: {result:?}");
    }
}

/// Only connections that completed their TLS handshake count against `max_connections`:
/// a silent TCP connection does not lock a real client out of the last place.
#[tokio::test]
async fn a_tls_handshake_under_way_does_not_take_a_connection_place() {
    let server = TestServer::start_with(TestOptions::default(), |b| b.max_connections(1)).await;
    let _silent = silent_tcp_connection(&server).await;
    let mut client = server.client_over(Fallback::TcpOnly).await;
    within("call", client.unary(echo("the one place")))
        .await
        .expect("served beside a handshake under way");
    assert_eq!(server.stats.tcp_connections(), 1);
    assert_eq!(
        server.stats.tcp_handshakes(),
        1,
        "the silent one still waits"
    );
}

/// With a limit per address, one address gets that many connections, QUIC and TCP
/// together; its next is refused on either transport (UNAVAILABLE), and gets in again once
/// one of its connections has closed.
#[tokio::test]
async fn max_connections_per_address_holds_on_both_transports() {
    let server =
        TestServer::start_with(TestOptions::default(), |b| b.max_connections_per_address(2)).await;
    let quic = server.channel_builder();
    let tcp = server.any_transport_builder().fallback(Fallback::TcpOnly);
    let first = quic.clone().connect_lazy().expect("channel");
    first_call_on(&first).await.expect("first QUIC connection");
    let second = tcp.clone().connect_lazy().expect("channel");
    first_call_on(&second).await.expect("first TCP connection");
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    assert_eq!(server.stats.connections_from(loopback), 2);
    for (what, builder) in [("QUIC", quic.clone()), ("TCP", tcp.clone())] {
        let status = first_call(builder).await.expect_err("over the limit");
        assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
    }
    assert_eq!(server.stats.connections(), 2);
    drop(second);
    until(
        "TCP connection closed",
        || server.stats.tcp_connections(),
        0,
    )
    .await;
    assert_eq!(server.stats.connections_from(loopback), 1);
    first_call(tcp).await.expect("room again");
}

/// Neither transport can take every place: with room for 10 connections, TCP gets at most
/// 9, and a QUIC client still gets in.
#[tokio::test]
async fn one_transport_cannot_take_every_connection_place() {
    let server = TestServer::start_with(TestOptions::default(), |b| b.max_connections(10)).await;
    let tcp = server.any_transport_builder().fallback(Fallback::TcpOnly);
    let mut held = Vec::new();
    for n in 0..9 {
        let channel = tcp.clone().connect_lazy().expect("channel");
        first_call_on(&channel)
            .await
            .unwrap_or_else(|s| panic!("TCP connection {n}: {s:?}"));
        held.push(channel);
    }
    let status = first_call(tcp).await.expect_err("TCP past its share");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    first_call(server.channel_builder())
        .await
        .expect("QUIC has room");
    assert_eq!(server.stats.tcp_connections(), 9);
}

/// The server's accepted TCP sockets have SO_KEEPALIVE on, so the kernel finds a peer that
/// vanished without a FIN even while a call keeps the connection from being idle. Read off
/// the kernel's socket table (`/proc/net/tcp`): an idle established socket with keep-alive
/// has its keep-alive timer armed (`tr` 2).
#[tokio::test]
async fn accepted_tcp_sockets_have_keepalive_on() {
    let server = TestServer::start().await;
    let channel = server.channel_over(Fallback::TcpOnly).await;
    let mut client = EchoClient::new(channel);
    within("a call", client.unary(echo("hello")))
        .await
        .expect("served");
    let port = format!("{:04X}", server.addr.port());
    // The server's end: local address 127.0.0.1 at the server's port, established (01).
    let timer_of_server_sockets = || -> Vec<String> {
        std::fs::read_to_string("/proc/net/tcp")
            .expect("/proc/net/tcp")
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local = fields.get(1)?;
                let state = fields.get(3)?;
                let timer = fields.get(5)?;
                (local.ends_with(&format!(":{port}")) && *state == "01")
                    .then(|| timer.split(':').next().unwrap_or_default().to_owned())
            })
            .collect()
    };
    within("the keep-alive timer armed", async {
        loop {
            let timers = timer_of_server_sockets();
            if timers.iter().any(|timer| timer == "02") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The established TCP connections of `port` as `ss -tinH` reports them: for the server's end
/// and the client's end of each, in that order, the congestion controller's name; and `ss`'s
/// whole output, to show when an assertion fails. Other tests' sockets may use the same port
/// number as their own ephemeral port (the server binds it with SO_REUSEADDR), so a
/// connection is known by both of its ends.
fn tcp_controllers(port: u16) -> (Vec<(String, String)>, String) {
    // `ss -tinH`: a line per socket (queues, local address, peer address), then a line of its
    // TCP info that begins with the congestion controller's name.
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let out = std::process::Command::new("ss")
        .args(["-tinH", "state", "established", &filter])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let port_of = |address: &str| address.rsplit(':').next()?.parse::<u16>().ok();
    // (local port, peer port, controller) of each socket.
    let sockets: Vec<(u16, u16, String)> = lines
        .chunks(2)
        .filter_map(|pair| {
            let mut words = pair.first()?.split_whitespace().skip(2);
            let local = port_of(words.next()?)?;
            let peer = port_of(words.next()?)?;
            Some((
                local,
                peer,
                pair.get(1)?.split_whitespace().next()?.to_owned(),
            ))
        })
        .collect();
    let connections = sockets
        .iter()
        .filter(|client| client.1 == port)
        .filter_map(|client| {
            let server = sockets
                .iter()
                .find(|server| server.0 == port && server.1 == client.0)?;
            Some((server.2.clone(), client.2.clone()))
        })
        .collect();
    (connections, text)
}

/// `tcp_congestion_control` on both builders sets the controller of the TCP side's sockets:
/// the server's accepted socket (through its listener) and the client's, as `ss` reports
/// them. "reno" is neither CI's nor these VMs' default, and every Linux kernel has it.
#[tokio::test]
async fn tcp_congestion_control_is_set_on_both_ends() {
    let server =
        TestServer::start_with(TestOptions::default(), |b| b.tcp_congestion_control("reno")).await;
    let channel = within(
        "connect over TCP",
        server
            .any_transport_builder()
            .fallback(Fallback::TcpOnly)
            .tcp_congestion_control("reno")
            .connect(),
    )
    .await
    .expect("connected");
    within("a call", EchoClient::new(channel).unary(echo("hello")))
        .await
        .expect("served");
    let (connections, text) = tcp_controllers(server.addr.port());
    assert_eq!(
        connections,
        [("reno".to_owned(), "reno".to_owned())],
        "(server's end, client's end); ss:\n{text}"
    );
}

/// The server's controller is on its listener from the moment `bind` returns, before the
/// server is served: the kernel completes a TCP handshake without waiting for accept(), and a
/// connection it took in earlier would keep the host's controller. (CI saw it: serving began
/// on a busy runtime after the test's client had connected.)
#[tokio::test]
async fn tcp_congestion_control_holds_from_bind() {
    let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
    let server = quicrpc::Server::builder()
        .identity(cert.identity())
        .tcp_congestion_control("reno")
        .bind("127.0.0.1:0")
        .await
        .expect("bound");
    let port = server.local_addr().port();
    // Connected, and never served: the connection waits in the listener's accept queue.
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connected");
    let (connections, text) = tcp_controllers(port);
    let client_port = client.local_addr().expect("client's address").port();
    assert!(
        text.contains(&format!(":{client_port}")),
        "the client's connection is listed; ss:\n{text}"
    );
    assert_eq!(
        connections.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["reno"],
        "the server's end; ss:\n{text}"
    );
    drop(server);
}
