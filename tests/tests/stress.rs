//! Soak: mixed load over QUIC and TCP for a while, then a check that nothing leaked.
//!
//! Not run by default. For the figures in docs/benchmarks.md:
//!
//! ```sh
//! QUICRPC_SOAK_SECS=600 cargo test --release -p quicrpc-tests --test stress -- --ignored --nocapture
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quicrpc::Fallback;
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, until, within};
use tonic::Code;

/// Resident set size of this process (server and clients both), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Outcomes by what was tried and how it ended.
type Tally = Arc<Mutex<BTreeMap<(&'static str, String), u64>>>;

fn count(tally: &Tally, what: &'static str, outcome: String) {
    *tally
        .lock()
        .expect("tally")
        .entry((what, outcome))
        .or_default() += 1;
}

fn outcome<T>(result: &Result<T, tonic::Status>) -> String {
    match result {
        Ok(_) => "OK".into(),
        Err(status) => format!("{:?}", status.code()),
    }
}

fn stream_of(n: usize, text: &str) -> impl tokio_stream::Stream<Item = EchoRequest> + use<> {
    tokio_stream::iter((0..n).map(|_| echo(text)).collect::<Vec<_>>())
}

/// One worker: calls of every kind, in turn, on one transport, with a new channel now and
/// then.
async fn worker(
    server: Arc<TestServer>,
    policy: Fallback,
    until_at: Instant,
    reconnect_every: u64,
    tally: Tally,
) {
    let connect = || {
        let builder = server.any_transport_builder().fallback(policy);
        EchoClient::new(builder.connect_lazy().expect("channel"))
    };
    let mut client = connect();
    let mut i: u64 = 0;
    while Instant::now() < until_at {
        i += 1;
        if reconnect_every > 0 && i.is_multiple_of(reconnect_every) {
            // A reconnect: the old channel (and its connection) goes away.
            client = connect();
            count(&tally, "reconnect", "OK".into());
        }
        match i % 6 {
            0 => {
                let r = client.unary(echo("unary")).await;
                count(&tally, "unary", outcome(&r));
            }
            1 => {
                let request = EchoRequest {
                    response_count: 10,
                    response_size: 1024,
                    ..echo("server stream")
                };
                let r = async {
                    let mut stream = client.server_stream(request).await?.into_inner();
                    let mut n = 0;
                    while stream.message().await?.is_some() {
                        n += 1;
                    }
                    assert_eq!(n, 10);
                    Ok::<_, tonic::Status>(())
                }
                .await;
                count(&tally, "server_stream", outcome(&r));
            }
            2 => {
                let r = client.client_stream(stream_of(10, "c")).await;
                if let Ok(reply) = &r {
                    assert_eq!(reply.get_ref().index, 10);
                }
                count(&tally, "client_stream", outcome(&r));
            }
            3 => {
                let r = async {
                    let mut replies = client.bidi(stream_of(10, "b")).await?.into_inner();
                    let mut n = 0;
                    while replies.message().await?.is_some() {
                        n += 1;
                    }
                    assert_eq!(n, 10);
                    Ok::<_, tonic::Status>(())
                }
                .await;
                count(&tally, "bidi", outcome(&r));
            }
            4 => {
                // Cancelled by the caller: the call future is dropped mid-flight.
                let hang = client.hang(echo("cancel me"));
                let r = tokio::time::timeout(Duration::from_millis(5), hang).await;
                assert!(r.is_err(), "Hang never answers");
                count(&tally, "cancelled", "dropped".into());
            }
            _ => {
                let mut request = tonic::Request::new(EchoRequest {
                    delay_ms: 50,
                    ..echo("too slow")
                });
                request.set_timeout(Duration::from_millis(10));
                let r = client.unary(request).await;
                if let Err(status) = &r
                    && status.code() != Code::DeadlineExceeded
                {
                    eprintln!("{policy:?}: deadline call ended {status:?}");
                }
                count(&tally, "deadline", outcome(&r));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: see the command in this file's header"]
async fn stress_mixed_load_over_both_transports() {
    let secs: u64 = std::env::var("QUICRPC_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let options = quicrpc_tests::TestOptions {
        no_run_log: true,
        ..Default::default()
    };
    let server = Arc::new(TestServer::start_with(options, |b| b).await);
    let tally: Tally = Arc::default();
    let start = Instant::now();
    let until_at = start + Duration::from_secs(secs);
    let rss_start = rss_kib();
    // Knobs for narrowing a problem down: which transports, and how often to reconnect.
    let transports = std::env::var("QUICRPC_SOAK_TRANSPORTS").unwrap_or_else(|_| "both".into());
    let reconnect_every: u64 = std::env::var("QUICRPC_SOAK_RECONNECT_EVERY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut workers = Vec::new();
    for n in 0..8 {
        let policy = match (transports.as_str(), n % 2) {
            ("quic", _) | ("both", 0) => Fallback::QuicOnly,
            _ => Fallback::TcpOnly,
        };
        workers.push(tokio::spawn(worker(
            server.clone(),
            policy,
            until_at,
            reconnect_every,
            tally.clone(),
        )));
    }
    // RSS along the way, once the load has warmed up.
    let mut samples = Vec::new();
    while Instant::now() < until_at {
        tokio::time::sleep(Duration::from_secs((secs / 10).max(1))).await;
        samples.push((start.elapsed().as_secs(), rss_kib()));
    }
    for worker in workers {
        within("worker ends", worker).await.expect("worker");
    }
    // Everything the clients opened goes away with them.
    until("connections closed", || server.stats.connections(), 0).await;
    until("calls finished", || server.stats.calls(), 0).await;
    let rss_end = rss_kib();

    println!(
        "soak: {secs} s, 8 workers, transports {transports}, a new channel every {reconnect_every} calls (0: never)"
    );
    println!("RSS: start {rss_start} KiB, end {rss_end} KiB; samples (s, KiB): {samples:?}");
    let mut unexpected = 0;
    for ((what, outcome), n) in tally.lock().expect("tally").iter() {
        let expected = matches!(
            (*what, outcome.as_str()),
            (_, "OK") | ("cancelled", "dropped") | ("deadline", "DeadlineExceeded")
        );
        if !expected {
            unexpected += n;
        }
        println!(
            "{what:>14} {outcome:<18} {n:>9}{}",
            if expected { "" } else { "  UNEXPECTED" }
        );
    }
    println!(
        "after the load: {} connections, {} calls open",
        server.stats.connections(),
        server.stats.calls()
    );
    assert_eq!(unexpected, 0, "every call ended as it should");
    let deadlines = tally
        .lock()
        .expect("tally")
        .get(&("deadline", format!("{:?}", Code::DeadlineExceeded)))
        .copied()
        .unwrap_or(0);
    assert!(deadlines > 0, "deadlines were exercised");
    // Flat: the mean of the last third of the samples is within a quarter of the middle
    // third's. Allocators hand memory back in steps, so single samples swing by several MB
    // either way; the leak this once caught grew by 12 MB a minute. Too short a run (under two
    // minutes) is dominated by warm-up and is not judged.
    if secs >= 120 {
        let third = samples.len() / 3;
        let mean = |s: &[(u64, u64)]| s.iter().map(|&(_, kib)| kib).sum::<u64>() / s.len() as u64;
        let middle = mean(&samples[third..2 * third]);
        let last = mean(&samples[2 * third..]);
        assert!(
            last <= middle + middle / 4,
            "RSS grew from {middle} KiB (mean, middle third) to {last} KiB (last third)"
        );
    }
}
