//! Scenarios 4 and 6: connection set-up to the first response, each connection fresh; the
//! `setup` subcommand connects, `compare` makes the table.

use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::BoxError;
use crate::cli::arg;
use crate::compare::Run;
use crate::dial::ServerAddress;
use crate::helloworld::HelloRequest;
use crate::helloworld::greeter_client::GreeterClient;
use crate::process::{ServerProcess, run_client};
use crate::report;
use crate::transport::{ServerKind, Windows};

/// The `setup` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct SetupArgs {
    #[arg(long, value_enum)]
    pub(crate) mode: SetupMode,
    #[command(flatten)]
    pub(crate) server: ServerAddress,
    /// Connections timed, each from nothing to its first response.
    #[arg(long, default_value_t = 20)]
    pub(crate) count: usize,
    #[command(flatten)]
    pub(crate) windows: Windows,
}

/// How the client connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SetupMode {
    /// QUIC, full handshake (no session resumption).
    QuicCold,
    /// QUIC, resuming a session, no early data.
    QuicResumed,
    /// QUIC, resuming a session, the call sent as 0-RTT early data.
    Quic0rtt,
    /// quicrpc's TCP fallback: TCP, TLS 1.3, HTTP/2.
    QuicrpcTcp,
    /// Plain tonic: TCP, TLS 1.3, HTTP/2.
    Tonic,
    /// quicrpc's default policy (QUIC first, TCP after the fallback delay), with nothing
    /// remembered from earlier connections: the first contact with a server.
    AutoFirst,
    /// quicrpc's default policy, remembering that TCP won last time (as a channel does for
    /// five minutes by default).
    AutoRemembered,
}

impl SetupMode {
    pub(crate) const ALL: [SetupMode; 5] = [
        Self::QuicCold,
        Self::QuicResumed,
        Self::Quic0rtt,
        Self::QuicrpcTcp,
        Self::Tonic,
    ];

    /// Scenario 6 (with UDP blocked): the default policy, first and remembered, against
    /// going straight to TCP.
    pub(crate) const FALLBACK: [SetupMode; 4] = [
        Self::AutoFirst,
        Self::AutoRemembered,
        Self::QuicrpcTcp,
        Self::Tonic,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::QuicCold => "QUIC, full handshake",
            Self::QuicResumed => "QUIC, resumed (1-RTT)",
            Self::Quic0rtt => "QUIC, resumed, 0-RTT",
            Self::QuicrpcTcp => "quicrpc TCP fallback (TCP+TLS 1.3)",
            Self::Tonic => "tonic TCP+TLS 1.3",
            Self::AutoFirst => "quicrpc default, first contact",
            Self::AutoRemembered => "quicrpc default, TCP remembered",
        }
    }

    /// The server this mode connects to.
    pub(crate) fn server(self) -> ServerKind {
        match self {
            Self::Tonic => ServerKind::Tonic,
            _ => ServerKind::Quicrpc,
        }
    }
}

/// Connects as `args` says and prints one `SETUP` line: each time in microseconds, and how
/// many calls went as accepted early data.
pub(crate) async fn connect(args: &SetupArgs) -> Result<(), BoxError> {
    let (times, early) = run(args, args.count).await?;
    let times: Vec<String> = times.iter().map(u64::to_string).collect();
    println!("SETUP times_us={} early={early}", times.join(","));
    Ok(())
}

/// Connects `count` times (after one connection that leaves a session ticket), each time
/// from nothing to the first response; returns each time in microseconds, and how many calls
/// went as accepted early data.
async fn run(args: &SetupArgs, count: usize) -> Result<(Vec<u64>, usize), BoxError> {
    let (mode, server) = (args.mode, &args.server);
    let ca = server.ca_pem()?;
    let uri = server.uri();
    let mut times = Vec::with_capacity(count);
    let mut early = 0;
    for i in 0..=count {
        let start = Instant::now();
        let zero_rtt = match mode {
            SetupMode::Tonic => {
                let tls = tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
                    .domain_name("localhost");
                let channel = tonic::transport::Endpoint::from_shared(uri.clone())?
                    .tls_config(tls)?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                let mut client = GreeterClient::new(channel);
                client.say_hello(hello()).await?;
                None
            }
            _ => {
                let builder = args
                    .windows
                    .channel(quicrpc::Channel::builder(uri.clone()))
                    .ca_certificate(quicrpc::tls::Certificate::from_pem(&ca)?)
                    .domain_name("localhost");
                let builder = match mode {
                    SetupMode::QuicCold => builder
                        .fallback(quicrpc::Fallback::QuicOnly)
                        .session_cache(0),
                    SetupMode::QuicResumed => builder
                        .fallback(quicrpc::Fallback::QuicOnly)
                        .zero_rtt(false),
                    SetupMode::Quic0rtt => builder.fallback(quicrpc::Fallback::QuicOnly),
                    SetupMode::AutoFirst => builder.fallback_memory(Duration::ZERO),
                    SetupMode::AutoRemembered => builder,
                    _ => builder.fallback(quicrpc::Fallback::TcpOnly),
                };
                let mut client = GreeterClient::new(builder.connect_lazy()?);
                let response = client.say_hello(hello()).await?;
                response.extensions().get::<quicrpc::ZeroRtt>().copied()
            }
        };
        let elapsed = start.elapsed();
        // The first connection only leaves a session ticket behind.
        if i > 0 {
            times.push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
            if zero_rtt == Some(quicrpc::ZeroRtt::Accepted) {
                early += 1;
            }
        }
    }
    Ok((times, early))
}

/// Scenarios 4 and 6: each set-up mode, `reps` times 20 fresh connections against a fresh
/// server; a table of times to the first response, in ms and in round trips.
pub(crate) fn table(run: &Run, modes: &[SetupMode]) -> Result<(), BoxError> {
    let rtt_ms = run
        .common
        .link
        .config()
        .map_or(0.0, |c| c.delay.as_secs_f64() * 2000.0);
    println!("\n| set-up | p50 ms | p50 ÷ RTT | min ms | max ms | calls as 0-RTT |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for &mode in modes {
        let mut times = Vec::new();
        let mut early = 0;
        for _ in 0..run.common.reps {
            let server = ServerProcess::start(mode.server(), run)?;
            let mut args = vec!["setup".to_owned(), "--mode".to_owned(), arg(mode)];
            args.extend(run.common.windows.flags());
            let line = run_client(&server, &run.place, &args, mode.name(), |l| {
                l.strip_prefix("SETUP ").map(str::to_owned)
            })?
            .remove(0);
            for field in line.split(' ') {
                match field.split_once('=') {
                    Some(("times_us", list)) => times.extend(
                        list.split(',')
                            .filter_map(|t| t.parse::<u64>().ok())
                            .map(|us| us as f64 / 1000.0),
                    ),
                    Some(("early", n)) => early += n.parse::<usize>().unwrap_or(0),
                    _ => {}
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        let in_rtt = if rtt_ms > 0.0 {
            format!("{:.2}", p50 / rtt_ms)
        } else {
            "—".into()
        };
        println!(
            "| {} | {p50:.1} | {in_rtt} | {:.1} | {:.1} | {early} of {} |",
            mode.name(),
            times[0],
            times[times.len() - 1],
            times.len()
        );
        rows.push(report::Row::new(
            run.scenario,
            &run.common.label(),
            mode.name(),
            mode.name(),
            "time to first response (ms)",
            p50,
        ));
    }
    run.keep(&rows)
}

fn hello() -> HelloRequest {
    HelloRequest {
        name: "set-up".into(),
    }
}
