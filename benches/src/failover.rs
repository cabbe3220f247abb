//! The `failover` scenario: one balanced client over three servers, each a process of its
//! own, while `--callers` callers make Greeter calls back to back (`SayHello` is declared
//! `NO_SIDE_EFFECTS`, so it is replay-safe). A third of the way into the measured time one
//! server is drained (its standard input closes: `serve_with_shutdown`), killed (SIGKILL: no
//! CONNECTION_CLOSE, no FIN over UDP; over TCP the kernel still resets the connections) or
//! frozen (SIGSTOP: a hung server, answering no call on either transport). The
//! client is quicrpc's `Channel::balance_list` (over QUIC, or over its TCP fallback) or tonic's
//! `Channel::balance_list`, both picking by power of two choices. Reported: calls/s before the
//! event, the calls that failed, the slowest call after the event (what a caller waited for the
//! failover), the longest gap in successful calls after it, calls/s in the
//! second after it against before, and each server's share of the calls before it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::BoxError;
use crate::cli::{Common, Timing, arg};
use crate::compare::Run;
use crate::dial::GrpcChannel;
use crate::helloworld::HelloRequest;
use crate::helloworld::greeter_client::GreeterClient;
use crate::process::{ServerProcess, parse_fields, pinned};
use crate::report::{self, cell, markdown_row};
use crate::transport::{Cc, ClientKind};

/// Servers behind the balanced client.
const SERVERS: usize = 3;

/// A call's own bound: a caller never waits longer than this for one answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What happens to the first server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Event {
    /// Its standard input closes: a graceful shutdown, GOAWAY and all.
    Drain,
    /// SIGKILL.
    Kill,
    /// SIGSTOP: the process stays, its sockets open, and answers no call: a hung server. Its
    /// kernel still acknowledges TCP; QUIC's acknowledgements stop with the process, as
    /// they would for a machine that vanished. Killed once the client is done.
    Freeze,
}

/// The `failover` subcommand's arguments: the client half.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct FailoverArgs {
    #[arg(long, value_enum)]
    pub(crate) client: ClientKind,
    /// The servers' ports, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) ports: Vec<u16>,
    /// The servers' host (their certificate is for localhost).
    #[arg(long, default_value = "localhost")]
    pub(crate) host: String,
    /// Directory with the CA certificate, ca.pem.
    #[arg(long)]
    pub(crate) certs: PathBuf,
    /// QUIC congestion controller (quicrpc only).
    #[arg(long, value_enum, default_value_t = Cc::Bbr)]
    pub(crate) cc: Cc,
    /// Callers, each making one call after another.
    #[arg(long, default_value_t = 16)]
    pub(crate) callers: usize,
    #[command(flatten)]
    pub(crate) timing: Timing,
}

/// `compare failover`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CompareArgs {
    /// What happens to one server, comma-separated: a table each.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "drain,kill,freeze"
    )]
    pub(crate) event: Vec<Event>,
    /// Callers, each making one call after another.
    #[arg(long, default_value_t = 16)]
    pub(crate) callers: usize,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// What one failover run measured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FailoverResult {
    /// Successful calls per second from the start of the measurement to the event.
    pub(crate) before_per_s: f64,
    /// Successful calls per second in the second after the event.
    pub(crate) after_per_s: f64,
    /// Calls that failed (an error, or no answer within [`CALL_TIMEOUT`]).
    pub(crate) failed: u64,
    /// The longest any call took that ended after the event (counted from the event for a
    /// call already under way at it): how long a caller waited for the failover.
    pub(crate) slowest_ms: f64,
    /// The longest time after the event with no call succeeding.
    pub(crate) gap_ms: f64,
    /// Each server's share of the successful calls before the event, in percent.
    pub(crate) shares: Vec<f64>,
}

impl FailoverResult {
    pub(crate) fn line(&self) -> String {
        let shares: Vec<String> = self.shares.iter().map(|s| format!("{s:.1}")).collect();
        format!(
            "FAILOVER before_per_s={:.0} after_per_s={:.0} failed={} slowest_ms={:.1} \
             gap_ms={:.1} shares={}",
            self.before_per_s,
            self.after_per_s,
            self.failed,
            self.slowest_ms,
            self.gap_ms,
            shares.join("/")
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        let fields = parse_fields(line, "FAILOVER ")?;
        let number = |key: &str| fields.get(key)?.parse().ok();
        Some(Self {
            before_per_s: number("before_per_s")?,
            after_per_s: number("after_per_s")?,
            failed: fields.get("failed")?.parse().ok()?,
            slowest_ms: number("slowest_ms")?,
            gap_ms: number("gap_ms")?,
            shares: fields
                .get("shares")?
                .split('/')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        })
    }
}

/// One call: when it started and ended, and which server answered (`None`: it failed).
#[derive(Clone, Debug)]
struct Call {
    start: Instant,
    end: Instant,
    server: Option<usize>,
    /// Why it failed.
    error: Option<String>,
}

/// The client half: warms up, prints `READY`, reads the event's moment from its standard
/// input (a line), measures for `--duration` from `READY`, and prints one `FAILOVER` line.
pub(crate) async fn run(args: &FailoverArgs) -> Result<FailoverResult, BoxError> {
    let ca = std::fs::read(args.certs.join("ca.pem"))?;
    let uris: Vec<String> = args
        .ports
        .iter()
        .map(|port| format!("https://{}:{port}", args.host))
        .collect();
    match args.client {
        ClientKind::Quic | ClientKind::QuicrpcTcp => {
            let fallback = if args.client == ClientKind::Quic {
                quicrpc::Fallback::QuicOnly
            } else {
                quicrpc::Fallback::TcpOnly
            };
            let mut builders = Vec::new();
            for uri in uris {
                builders.push(
                    quicrpc::Channel::builder(uri)
                        .ca_certificate(quicrpc::tls::Certificate::from_pem(ca.clone())?)
                        .domain_name("localhost")
                        .congestion_control(args.cc.quicrpc())
                        .fallback(fallback),
                );
            }
            measure(quicrpc::Channel::balance_list(builders), args).await
        }
        ClientKind::Tonic => {
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("localhost");
            let mut endpoints = Vec::new();
            for uri in uris {
                endpoints.push(
                    tonic::transport::Endpoint::from_shared(uri)?
                        .tls_config(tls.clone())?
                        .tcp_nodelay(true),
                );
            }
            measure(
                tonic::transport::Channel::balance_list(endpoints.into_iter()),
                args,
            )
            .await
        }
        other => Err(format!("failover runs quic, quicrpc-tcp and tonic, not {other:?}").into()),
    }
}

async fn measure<T: GrpcChannel>(
    channel: T,
    args: &FailoverArgs,
) -> Result<FailoverResult, BoxError> {
    let warm_end = args.timing.warmup_end();
    let end = warm_end + Duration::from_secs_f64(args.timing.duration);
    let callers: Vec<_> = (0..args.callers)
        .map(|_| tokio::spawn(caller(GreeterClient::new(channel.clone()), warm_end, end)))
        .collect();
    tokio::time::sleep_until(warm_end.into()).await;
    println!("READY");
    std::io::stdout().flush()?;
    let event = event_line().await;
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(caller.await?);
    }
    let event = event.ok_or("the parent never said when the event happened")?;
    report_errors(&calls, event);
    Ok(summarise(&calls, warm_end, event, end))
}

/// Each distinct error, with how many calls got it and when the first came (after the
/// event), on standard error: what the table's failed calls were.
fn report_errors(calls: &[Call], event: Instant) {
    let mut seen: Vec<(String, usize, f64)> = Vec::new();
    for call in calls {
        let Some(error) = &call.error else { continue };
        let at = call.end.saturating_duration_since(event).as_secs_f64() * 1e3;
        match seen.iter_mut().find(|(e, _, _)| e == error) {
            Some((_, n, _)) => *n += 1,
            None => seen.push((error.clone(), 1, at)),
        }
    }
    for (error, n, at) in seen {
        eprintln!("  {n} calls failed, the first {at:.0} ms after the event: {error}");
    }
    let mut after: Vec<&Call> = calls.iter().filter(|c| c.end >= event).collect();
    after.sort_by_key(|c| std::cmp::Reverse(c.end - c.start));
    let slowest: Vec<String> = after
        .iter()
        .take(3)
        .map(|c| {
            let took = (c.end - c.start).as_secs_f64() * 1e3;
            // When it started, from the event: negative for a call already under way.
            let from = (c.start.saturating_duration_since(event).as_secs_f64()
                - event.saturating_duration_since(c.start).as_secs_f64())
                * 1e3;
            match c.server {
                Some(s) => format!("{took:.0} ms from {from:+.0} ms on s{s}"),
                None => format!("{took:.0} ms from {from:+.0} ms, failed"),
            }
        })
        .collect();
    eprintln!(
        "  the slowest calls after the event: {}",
        slowest.join("; ")
    );
}

/// One caller: calls back to back until `end`, keeping those that started after `from`.
async fn caller<T: GrpcChannel>(
    mut client: GreeterClient<T>,
    from: Instant,
    end: Instant,
) -> Vec<Call> {
    let mut calls = Vec::new();
    loop {
        let start = Instant::now();
        if start >= end {
            return calls;
        }
        let request = HelloRequest {
            name: "failover".into(),
        };
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.say_hello(request)).await;
        let (server, error) = match answer {
            Ok(Ok(reply)) => (server_of(&reply.into_inner().message), None),
            Ok(Err(status)) => (
                None,
                Some(format!("{:?}: {}", status.code(), status.message())),
            ),
            Err(_) => (None, Some(format!("no answer within {CALL_TIMEOUT:?}"))),
        };
        if start >= from {
            calls.push(Call {
                start,
                end: Instant::now(),
                server,
                error,
            });
        }
    }
}

/// The server index in a reply from a server started with `--name sN`.
fn server_of(message: &str) -> Option<usize> {
    message.strip_prefix('s')?.parse().ok()
}

/// When the parent's line arrives on standard input (`None` if it closes first).
async fn event_line() -> Option<Instant> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().read_line(&mut line);
        let _ = tx.send(matches!(read, Ok(n) if n > 0).then(Instant::now));
    });
    rx.await.ok().flatten()
}

fn summarise(calls: &[Call], start: Instant, event: Instant, end: Instant) -> FailoverResult {
    let secs = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64();
    let succeeded = |from: Instant, to: Instant| {
        calls
            .iter()
            .filter(|c| c.server.is_some() && c.end >= from && c.end < to)
            .count() as f64
    };
    let second_after = (event + Duration::from_secs(1)).min(end);
    let mut shares = [0_u64; SERVERS];
    for call in calls.iter().filter(|c| c.end < event) {
        if let Some(share) = call.server.and_then(|s| shares.get_mut(s)) {
            *share += 1;
        }
    }
    let total: u64 = shares.iter().sum();
    let slowest = calls
        .iter()
        .filter(|c| c.end >= event)
        .map(|c| secs(c.start.max(event), c.end))
        .fold(0.0, f64::max);
    let mut ends: Vec<Instant> = calls
        .iter()
        .filter(|c| c.server.is_some() && c.end >= event)
        .map(|c| c.end)
        .collect();
    ends.sort();
    let mut gap = 0.0_f64;
    let mut last = event;
    for at in ends.into_iter().chain([end]) {
        gap = gap.max(secs(last, at));
        last = at;
    }
    FailoverResult {
        before_per_s: succeeded(start, event) / secs(start, event),
        after_per_s: succeeded(event, second_after) / secs(event, second_after),
        failed: calls.iter().filter(|c| c.server.is_none()).count() as u64,
        slowest_ms: slowest * 1e3,
        gap_ms: gap * 1e3,
        shares: shares
            .iter()
            .map(|&n| 100.0 * n as f64 / total.max(1) as f64)
            .collect(),
    }
}

/// `compare failover`: a table per event.
pub(crate) fn tables(run: &Run, args: &CompareArgs) -> Result<(), BoxError> {
    for &event in &args.event {
        let runs = run.repeat(&ClientKind::ALL, |kind| measure_one(run, args, kind, event))?;
        println!("{}", table(event, args.callers, &runs));
    }
    Ok(())
}

/// One run: three fresh servers, the client, and the event a third of the way in.
fn measure_one(
    run: &Run,
    args: &CompareArgs,
    kind: ClientKind,
    event: Event,
) -> Result<FailoverResult, BoxError> {
    let mut servers = Vec::new();
    for n in 0..SERVERS {
        let name = ["--name".to_owned(), format!("s{n}")];
        servers.push(ServerProcess::start_with(kind.server(), run, &name)?);
    }
    let ports: Vec<String> = servers.iter().map(|s| s.port.to_string()).collect();
    let place = &run.place;
    let mut line = vec![
        "failover".to_owned(),
        "--client".into(),
        arg(kind),
        "--ports".into(),
        ports.join(","),
        "--host".into(),
        place.host.clone(),
        "--certs".into(),
        place.certs.display().to_string(),
        "--cc".into(),
        arg(run.common.cc),
        "--callers".into(),
        args.callers.to_string(),
    ];
    line.extend(run.common.timing.flags());
    let mut client = pinned(place.client_core, None, &line)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(client.stdout.take().ok_or("no stdout")?);
    let mut ready = String::new();
    out.read_line(&mut ready)?;
    if ready.trim() != "READY" {
        let _ = client.kill();
        return Err(format!("{} failover client said {ready:?}", kind.name()).into());
    }
    // A benchmark's schedule, not a synchronisation: the event a third of the way in.
    std::thread::sleep(Duration::from_secs_f64(run.common.timing.duration / 3.0));
    match event {
        Event::Drain => servers[0].close_input(),
        Event::Kill => servers[0].kill()?,
        Event::Freeze => servers[0].signal("STOP")?,
    }
    let mut input = client.stdin.take().ok_or("no stdin")?;
    writeln!(input, "EVENT")?;
    drop(input);
    let mut result = None;
    for line in out.lines() {
        if let Some(found) = FailoverResult::parse(&line?) {
            result = Some(found);
        }
    }
    client.wait()?;
    if event == Event::Freeze {
        // A stopped server never exits on its own.
        servers[0].kill()?;
    }
    result.ok_or_else(|| format!("{} failover client printed no result", kind.name()).into())
}

fn table(event: Event, callers: usize, runs: &[Vec<(ClientKind, FailoverResult)>]) -> String {
    let what = match event {
        Event::Drain => "one of three servers drained (graceful shutdown)",
        Event::Kill => "one of three servers killed (SIGKILL)",
        Event::Freeze => "one of three servers frozen (SIGSTOP): it answers no call",
    };
    let mut out = format!(
        "\n## Failover: {what}, {callers} callers\n\n{}\n{}\n",
        markdown_row(&[
            "Transport".into(),
            "calls/s before".into(),
            "failed calls".into(),
            "slowest call after (ms)".into(),
            "longest gap (ms)".into(),
            "calls/s in the next second ÷ before".into(),
            "shares before (%)".into(),
        ]),
        markdown_row(&vec!["---".to_owned(); 7]),
    );
    for &kind in &ClientKind::ALL {
        let (results, _) = report::of_kind(runs, kind);
        if results.is_empty() {
            continue;
        }
        let column = |f: fn(&FailoverResult) -> f64| results.iter().map(|r| f(r)).collect();
        let shares: Vec<String> = results
            .iter()
            .map(|r| {
                let each: Vec<String> = r.shares.iter().map(|s| format!("{s:.0}")).collect();
                each.join("/")
            })
            .collect();
        out.push_str(&markdown_row(&[
            kind.name().into(),
            cell(column(|r| r.before_per_s), 0),
            cell(column(|r| r.failed as f64), 0),
            cell(column(|r| r.slowest_ms), 0),
            cell(column(|r| r.gap_ms), 0),
            cell(column(|r| r.after_per_s / r.before_per_s), 2),
            shares.join(", "),
        ]));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Call, FailoverResult, summarise};

    /// The line a client prints is the result the parent reads.
    #[test]
    fn result_line_round_trips() {
        let result = FailoverResult {
            before_per_s: 12000.0,
            after_per_s: 9000.0,
            failed: 3,
            slowest_ms: 1043.5,
            gap_ms: 12.25,
            shares: vec![33.3, 33.4, 33.3],
        };
        let parsed = FailoverResult::parse(&result.line()).expect("parses");
        assert_eq!(parsed.failed, 3);
        assert_eq!(parsed.shares, vec![33.3, 33.4, 33.3]);
        assert!((parsed.slowest_ms - 1043.5).abs() < 0.1);
    }

    /// The slowest call after the event counts from the event for calls under way at it;
    /// the gap is the longest stretch after it with nothing succeeding; shares count calls
    /// before it.
    #[test]
    fn summary_of_calls_around_an_event() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let call = |start, end, server: Option<usize>| Call {
            start: at(start),
            end: at(end),
            server,
            error: server.is_none().then(|| "failed".to_owned()),
        };
        let calls = [
            call(0, 100, Some(0)),
            call(0, 200, Some(1)),
            call(0, 300, Some(2)),
            call(900, 1_800, Some(1)), // caught by the event at 1000, done 800 ms after
            call(950, 1_100, None),    // caught, failed
            call(1_100, 1_500, Some(2)), // 400 ms, all after the event
            call(1_800, 1_900, Some(1)),
        ];
        let result = summarise(&calls, t0, at(1_000), at(2_000));
        assert_eq!(result.failed, 1);
        assert!((result.slowest_ms - 800.0).abs() < 1.0, "{result:?}");
        // Nothing succeeded from 1000 to 1500.
        assert!((result.gap_ms - 500.0).abs() < 1.0, "{result:?}");
        assert_eq!(result.shares.len(), 3);
        assert!(result.shares.iter().all(|s| (s - 100.0 / 3.0).abs() < 0.1));
    }
}
