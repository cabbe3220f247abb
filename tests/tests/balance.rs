//! Balanced channels (`Channel::balance_list`, `Balance`, `Channel::balance_channel`) over
//! several real servers: how calls spread by each policy, a server that is down, one drained
//! mid-load, one that comes back, servers added and removed, and errors that name the server.

use std::time::Duration;

use futures_util::StreamExt as _;
use quicrpc::{Balance, Change, Channel, ChannelBuilder, Fallback};
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::relay::Relay;
use quicrpc_tests::{TestOptions, TestServer, echo, until, within};

/// A builder for `server`, QUIC only, with a short connect timeout, so that a server that is
/// gone costs a call little time.
fn builder(server: &TestServer) -> ChannelBuilder {
    builder_for_port(server, server.addr.port())
}

fn builder_for_port(server: &TestServer, port: u16) -> ChannelBuilder {
    Channel::builder(format!("https://localhost:{port}"))
        .ca_certificate(server.cert.ca_certificate())
        .fallback(Fallback::QuicOnly)
        .connect_timeout(Duration::from_millis(500))
}

/// Three servers sharing one certificate, so that any of them can stand for the others.
async fn three_servers() -> Vec<TestServer> {
    three_servers_with(|_| TestOptions::default()).await
}

/// Three servers sharing one certificate, server `i` with `options(i)`.
async fn three_servers_with(options: impl Fn(usize) -> TestOptions) -> Vec<TestServer> {
    let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
    let mut servers = Vec::new();
    for i in 0..3 {
        let options = TestOptions {
            cert: Some(cert.clone()),
            ..options(i)
        };
        servers.push(TestServer::start_with(options, |b| b).await);
    }
    servers
}

/// Unary calls handled by each server so far.
fn handled(servers: &[TestServer]) -> Vec<usize> {
    servers
        .iter()
        .map(|s| s.runs().iter().filter(|r| r.method == "Unary").count())
        .collect()
}

/// A port nothing listens on (bound and released).
fn closed_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address").port()
}

/// `n` unary calls, `concurrency` at a time; every one must succeed.
async fn calls(client: &EchoClient<Channel>, n: usize, concurrency: usize) {
    let results = futures_util::stream::iter(0..n)
        .map(|i| {
            let mut client = client.clone();
            async move { client.unary(echo(&format!("c{i}"))).await }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
    for result in within("calls", results).await {
        result.expect("every call succeeds");
    }
}

#[tokio::test]
async fn round_robin_gives_each_server_its_turn() {
    let servers = three_servers().await;
    let channel = Balance::RoundRobin.list(servers.iter().map(builder));
    let mut client = EchoClient::new(channel);
    for i in 0..30 {
        within("call", client.unary(echo(&format!("c{i}"))))
            .await
            .expect("call");
    }
    assert_eq!(handled(&servers), [10, 10, 10]);
}

#[tokio::test]
async fn power_of_two_choices_spreads_calls_over_every_server() {
    let servers = three_servers().await;
    let client = EchoClient::new(Channel::balance_list(servers.iter().map(builder)));
    calls(&client, 600, 12).await;
    let counts = handled(&servers);
    assert_eq!(counts.iter().sum::<usize>(), 600);
    // A fair share is 200 each; p2c on outstanding calls keeps every server well within it.
    assert!(counts.iter().all(|&n| n >= 100), "{counts:?}");
}

#[tokio::test]
async fn pick_first_uses_the_first_server_while_it_is_up() {
    let servers = three_servers().await;
    let channel = Balance::PickFirst.list(servers.iter().map(builder));
    let client = EchoClient::new(channel);
    calls(&client, 50, 5).await;
    assert_eq!(handled(&servers), [50, 0, 0]);
}

/// A server that is down costs no failed call, whatever the method (the calls sent to it
/// never reached it), and once found out it gets no more calls until it comes back.
#[tokio::test]
async fn a_server_that_is_down_costs_no_failed_call() {
    let servers = three_servers().await;
    let dead = builder_for_port(&servers[0], closed_port()).connect_timeout(Duration::from_secs(2));
    let endpoints = [dead, builder(&servers[1]), builder(&servers[2])];
    let channel = Balance::RoundRobin.list(endpoints);
    let mut client = EchoClient::new(channel);
    // The first round finds the dead server out (its QUIC handshake times out after 2 s).
    for i in 0..3 {
        within("call", client.unary(echo(&format!("c{i}"))))
            .await
            .expect("no call fails");
    }
    // From then on it is not picked: a call that went to it would wait 2 s for a handshake,
    // past these calls' 1 s deadline.
    for i in 3..30 {
        let mut request = tonic::Request::new(echo(&format!("c{i}")));
        request.set_timeout(Duration::from_secs(1));
        within("call", client.unary(request))
            .await
            .expect("no call fails or goes to the dead server");
    }
    let counts = handled(&servers);
    assert_eq!(counts[1] + counts[2], 30, "{counts:?}");
}

type Caught<T> = tokio::task::JoinHandle<Result<tonic::Response<T>, tonic::Status>>;

/// Three replay-safe calls (`Lookup`) and a unary one that are not, each made with `barrier`
/// set, so that they stay under way on a server with a barrier.
fn caught_calls(
    client: &EchoClient<Channel>,
) -> (
    Vec<Caught<quicrpc_tests::pb::EchoReply>>,
    Caught<quicrpc_tests::pb::EchoReply>,
) {
    let caught = EchoRequest {
        barrier: true,
        ..echo("caught")
    };
    let lookups = (0..3)
        .map(|_| {
            let (mut client, request) = (client.clone(), caught.clone());
            tokio::spawn(async move { client.lookup(request).await })
        })
        .collect();
    let (mut client, request) = (client.clone(), caught);
    let unary = tokio::spawn(async move { client.unary(request).await });
    (lookups, unary)
}

/// The calls of [`caught_calls`], caught on the server at `port` when it died: within 3 s
/// each, the replay-safe ones served by another server, the other UNAVAILABLE naming it.
async fn failed_over(
    lookups: Vec<Caught<quicrpc_tests::pb::EchoReply>>,
    unary: Caught<quicrpc_tests::pb::EchoReply>,
    port: u16,
) {
    let bound = Duration::from_secs(3);
    for lookup in lookups {
        let reply = tokio::time::timeout(bound, lookup)
            .await
            .expect("a replay-safe call caught on the dead server ends within 3 s")
            .expect("joined")
            .expect("and is served by another server");
        assert_eq!(reply.into_inner().message, "caught");
    }
    let status = tokio::time::timeout(bound, unary)
        .await
        .expect("a call caught on the dead server ends within 3 s")
        .expect("joined")
        .expect_err("a call that is not replay-safe is not sent twice");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&format!("localhost:{port}")),
        "the error names the server: {status:?}"
    );
}

/// A server that dies without a word (a relay in front of it cut: no close, no reset, what a
/// process killed with SIGKILL leaves): calls caught on it end within 3 s, replay-safe ones
/// served by another server, the others UNAVAILABLE naming it; new calls go elsewhere.
#[tokio::test]
async fn a_server_that_dies_silently_is_found_out_within_seconds() {
    // Calls with `barrier` set wait on server 0 (a barrier nobody completes), and are
    // answered at once by the others.
    let servers = three_servers_with(|i| TestOptions {
        barrier: (i == 0).then_some(1_000),
        ..TestOptions::default()
    })
    .await;
    let relay = Relay::start(servers[0].addr).await;
    let endpoints = [
        builder_for_port(&servers[0], relay.addr.port()),
        builder(&servers[1]),
        builder(&servers[2]),
    ];
    let client = EchoClient::new(Balance::PickFirst.list(endpoints));
    calls(&client, 10, 2).await;
    let (lookups, unary) = caught_calls(&client);
    // The ten calls before, and the four caught: all on server 0 (the first).
    until(
        "the four calls are under way on server 0",
        || servers[0].runs().len(),
        14,
    )
    .await;
    relay.cut();
    failed_over(lookups, unary, relay.addr.port()).await;
    // New calls go to the servers that are alive, at once.
    let mut request = tonic::Request::new(echo("after"));
    request.set_timeout(Duration::from_secs(1));
    within("a call after", client.clone().unary(request))
        .await
        .expect("served elsewhere");
}

/// A server process killed with SIGKILL (no close, no reset over UDP): calls caught on it end
/// within 3 s, replay-safe ones served by another server, the others UNAVAILABLE naming it.
#[tokio::test]
async fn a_server_process_killed_abruptly_is_found_out_within_seconds() {
    use std::io::BufRead as _;
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--barrier", "1000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start echo-server");
    let stdout = process.stdout.take().expect("stdout");
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let first = within("the server's first line", first)
        .await
        .expect("joined")
        .expect("read");
    // {"port": PORT, "ca": "PEM with \n escapes"}
    let port: u16 = first
        .split("\"port\": ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    let ca = first
        .split("\"ca\": \"")
        .nth(1)
        .and_then(|rest| rest.rsplit_once('"'))
        .map(|(pem, _)| pem.replace("\\n", "\n"))
        .unwrap_or_else(|| panic!("no CA in {first:?}"));
    let ca = quicrpc::tls::Certificate::from_pem(ca).expect("CA");
    let others = three_servers().await;
    let endpoints = [
        Channel::builder(format!("https://localhost:{port}"))
            .ca_certificate(ca)
            .fallback(Fallback::QuicOnly),
        builder(&others[1]),
        builder(&others[2]),
    ];
    let client = EchoClient::new(Balance::PickFirst.list(endpoints));
    calls(&client, 5, 1).await;
    let (lookups, unary) = caught_calls(&client);
    // Nothing says when the four have reached the other process's handlers. Let their
    // tasks send them (a unary request goes out whole at its first poll), then make a call
    // behind them on the same connection: once it is answered, the server has read them.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    within(
        "a call behind the four",
        client.clone().unary(echo("behind")),
    )
    .await
    .expect("served");
    process.kill().expect("SIGKILL");
    let _ = process.wait();
    failed_over(lookups, unary, port).await;
}

/// A server drained with `serve_with_shutdown` while calls flow costs zero failed calls:
/// calls on it finish, calls it refuses (after its GOAWAY) go to another server.
#[tokio::test]
async fn draining_a_server_mid_load_fails_no_call() {
    let mut servers = three_servers().await;
    let client = EchoClient::new(Channel::balance_list(servers.iter().map(builder)));
    calls(&client, 60, 6).await;
    let before = handled(&servers)[0];
    assert!(before > 0, "the server to drain was used");
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            calls(&client, 600, 8).await;
        })
    };
    let serving = servers[0].begin_shutdown();
    within("the drain", serving)
        .await
        .expect("joined")
        .expect("a clean shutdown");
    within("the load", load).await.expect("no call failed");
    calls(&client, 60, 6).await;
}

/// A server that is out is tried again in the background. While that attempt is under way
/// (a connection resumed with 0-RTT to a server that is gone counts as under way until its
/// handshake times out), no call goes to it: every call is answered by a server that is up,
/// within a second, though the connect timeout is ten.
#[tokio::test]
async fn no_call_waits_on_a_server_being_tried_again() {
    let mut servers = three_servers().await;
    let patient = |s: &TestServer| builder(s).connect_timeout(Duration::from_secs(10));
    let client = EchoClient::new(Channel::balance_list(servers.iter().map(patient)));
    // Each server gets a connection, and so gives a ticket for 0-RTT.
    calls(&client, 60, 6).await;
    within("shutdown", servers[0].begin_shutdown())
        .await
        .expect("joined")
        .expect("clean");
    // Background attempts start every quarter second; each lasts the connect timeout.
    let callers = (0..4).map(|i| {
        let client = client.clone();
        async move {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                let mut request = tonic::Request::new(echo(&format!("c{i}")));
                request.set_timeout(Duration::from_secs(1));
                client
                    .clone()
                    .unary(request)
                    .await
                    .expect("answered within a second by a server that is up");
            }
        }
    });
    within("the calls", futures_util::future::join_all(callers)).await;
}

/// With health checks, a server whose health service says NOT_SERVING gets no new calls,
/// and gets them again once it says SERVING.
#[tokio::test]
async fn a_server_not_serving_by_its_health_checks_gets_no_calls() {
    type Echo = quicrpc_tests::pb::echo_server::EchoServer<quicrpc_tests::EchoService>;
    let servers = three_servers().await;
    let checked =
        |s: &TestServer| builder(s).health_check("quicrpc.testing.Echo", Duration::from_millis(50));
    let client = EchoClient::new(Balance::RoundRobin.list(servers.iter().map(checked)));
    calls(&client, 30, 3).await;
    servers[0].health.set_not_serving::<Echo>().await;
    // Once a check has seen it, a round of calls leaves it out.
    within("the server is left out", async {
        loop {
            let before = handled(&servers)[0];
            calls(&client, 30, 3).await;
            if handled(&servers)[0] == before {
                break;
            }
        }
    })
    .await;
    let left_out = handled(&servers)[0];
    calls(&client, 90, 3).await;
    assert_eq!(handled(&servers)[0], left_out, "no call reached it");
    servers[0].health.set_serving::<Echo>().await;
    within("the server gets calls again", async {
        while handled(&servers)[0] == left_out {
            calls(&client, 30, 3).await;
        }
    })
    .await;
}

/// A server that goes away and comes back on the same address gets calls again.
#[tokio::test]
async fn a_server_that_comes_back_gets_calls_again() {
    let mut servers = three_servers().await;
    let port = servers[0].addr.port();
    let cert = servers[0].cert.clone();
    let client = EchoClient::new(Balance::RoundRobin.list(servers.iter().map(builder)));
    calls(&client, 30, 3).await;
    within("shutdown", servers[0].begin_shutdown())
        .await
        .expect("joined")
        .expect("clean");
    calls(&client, 30, 3).await;
    let options = TestOptions {
        cert: Some(cert),
        addr: Some(format!("127.0.0.1:{port}").parse().expect("address")),
        ..TestOptions::default()
    };
    let back = TestServer::start_with(options, |b| b).await;
    within("calls reach the server again", async {
        while back.runs().is_empty() {
            client.clone().unary(echo("again")).await.expect("served");
        }
    })
    .await;
}

/// Servers added through `balance_channel` get calls; removed ones get no more.
#[tokio::test]
async fn servers_come_and_go_through_the_channel() {
    let servers = three_servers().await;
    let (channel, changes) = Balance::RoundRobin.channel(8);
    let client = EchoClient::new(channel);
    changes
        .send(Change::Insert("a", builder(&servers[0])))
        .await
        .expect("send");
    changes
        .send(Change::Insert("b", builder(&servers[1])))
        .await
        .expect("send");
    within("the first two servers in use", async {
        while handled(&servers)[..2].contains(&0) {
            client.clone().unary(echo("x")).await.expect("served");
        }
    })
    .await;
    changes
        .send(Change::Insert("c", builder(&servers[2])))
        .await
        .expect("send");
    within("the third server in use", async {
        while handled(&servers)[2] == 0 {
            client.clone().unary(echo("x")).await.expect("served");
        }
    })
    .await;
    changes.send(Change::Remove("a")).await.expect("send");
    // Once a call has gone to a server other than "a" twice in a row after the removal,
    // the change has been applied (changes are applied in order, before the next is read).
    within("the removal applied", async {
        let mut count = handled(&servers)[0];
        let mut steady = 0;
        while steady < 10 {
            client.clone().unary(echo("x")).await.expect("served");
            let now = handled(&servers)[0];
            steady = if now == count { steady + 1 } else { 0 };
            count = now;
        }
    })
    .await;
    let removed = handled(&servers)[0];
    calls(&client, 40, 4).await;
    assert_eq!(handled(&servers)[0], removed, "a removed server got calls");
}

/// With no server reachable, a call fails with UNAVAILABLE, and the message names the
/// server.
#[tokio::test]
async fn errors_name_the_server() {
    let server = TestServer::start().await;
    let port = closed_port();
    let channel = Channel::balance_list([builder_for_port(&server, port)]);
    let mut client = EchoClient::new(channel);
    let status = within("call", client.unary(echo("x")))
        .await
        .expect_err("nobody there");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains(&format!("localhost:{port}")),
        "{status:?}"
    );
}

/// A resolver whose answer the test changes.
#[derive(Clone, Default)]
struct Changing(std::sync::Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>);

impl Changing {
    fn set(&self, addrs: Vec<std::net::SocketAddr>) {
        *self.0.lock().expect("lock") = addrs;
    }
}

impl quicrpc::Resolve for Changing {
    fn resolve(
        &self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Vec<std::net::SocketAddr>, quicrpc::Error>>
                + Send
                + '_,
        >,
    > {
        let addrs = self.0.lock().expect("lock").clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// A resolved channel follows its resolver: servers that appear get calls, those that
/// disappear get no more.
#[tokio::test]
async fn a_resolved_channel_follows_its_resolver() {
    let servers = three_servers().await;
    let resolver = Changing::default();
    resolver.set(vec![servers[0].addr, servers[1].addr]);
    let template = builder_for_port(&servers[0], 0);
    let channel = Balance::RoundRobin
        .resolve(template, resolver.clone(), Duration::from_secs(1))
        .expect("channel");
    let client = EchoClient::new(channel);
    within("the first two servers in use", async {
        while handled(&servers)[..2].contains(&0) {
            client.clone().unary(echo("x")).await.expect("served");
        }
    })
    .await;
    resolver.set(vec![servers[1].addr, servers[2].addr]);
    within("the third server in use, at the next resolution", async {
        while handled(&servers)[2] == 0 {
            client.clone().unary(echo("x")).await.expect("served");
        }
    })
    .await;
    // The removal came before the addition: the first server is out already.
    let removed = handled(&servers)[0];
    calls(&client, 40, 4).await;
    assert_eq!(
        handled(&servers)[0],
        removed,
        "a server no longer resolved got calls"
    );
}

/// `Balance::dns` resolves the name in the URI: `localhost` here.
#[tokio::test]
async fn a_dns_channel_reaches_the_servers_of_a_name() {
    let server = TestServer::start().await;
    let channel = Balance::RoundRobin.dns(builder(&server)).expect("channel");
    let client = EchoClient::new(channel);
    calls(&client, 20, 2).await;
    assert_eq!(handled(std::slice::from_ref(&server)), [20]);
}
