//! `quicrpc-bench`: unary load against quicrpc over QUIC, quicrpc over its TCP fallback, and
//! plain tonic over TCP+TLS (the comparator), measured in the same run.
//!
//! ```text
//! cargo run --release -p quicrpc-benches -- compare --scenario latency
//! cargo run --release -p quicrpc-benches -- compare --scenario inflight --concurrency 1,50,256,1000
//! ```
//!
//! `compare` starts each server and each client in its own process, pinned to separate cores
//! with `taskset` (server on core 0, client on core 1), warms up, measures, repeats, and
//! prints a Markdown table per scenario: calls/s, p50/p99/p99.9 latency and CPU per call as
//! the median of the repetitions with their min and max, and ratios to tonic computed within
//! each repetition. `serve` and `load` are the two halves it runs.

#[allow(missing_docs, unreachable_pub)] // generated code
mod helloworld {
    quicrpc::include_proto!("helloworld");
}

mod agents;
mod chart;
mod dial;
mod hol;
mod memory;
mod report;
mod setup;
mod stream;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use helloworld::greeter_client::GreeterClient;
use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};
use quicrpc_examples::agents::agent_control_server::AgentControlServer;
use quicrpc_examples::service::Agents;

use dial::{Dialed, GrpcChannel, dial};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Unary load: quicrpc over QUIC and TCP against plain tonic")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve Greeter until standard input closes; prints `LISTENING <port>`.
    Serve {
        #[arg(long, value_enum)]
        server: ServerKind,
        /// Directory with cert.pem and key.pem.
        #[arg(long)]
        certs: PathBuf,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        addr: std::net::IpAddr,
        /// QUIC congestion controller (quicrpc only).
        #[arg(long, value_enum, default_value_t = Cc::Bbr)]
        cc: Cc,
        /// The most calls in flight per connection (both servers' own default if absent).
        #[arg(long)]
        max_streams: Option<u32>,
    },
    /// Load a server; prints one `RESULT` line.
    Load(LoadArgs),
    /// Connect afresh `count` times (scenario 4); prints one `SETUP` line.
    Setup {
        #[arg(long, value_enum)]
        mode: setup::SetupMode,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "localhost")]
        host: String,
        #[arg(long)]
        certs: PathBuf,
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// Stream 64 KiB messages (scenario 3); prints one `STREAM` line.
    Stream(stream::StreamArgs),
    /// Hold streams or connections open (scenario 7); prints `READY`, holds until standard
    /// input closes.
    Hold(memory::HoldArgs),
    /// Run the agents workload (scenario 8); prints an `AGENTS` line per method.
    Agents(agents::AgentsArgs),
    /// Draw an SVG chart per scenario, link and metric from the medians `compare --csv` kept.
    Chart {
        /// The CSV file `compare --csv` appended to.
        #[arg(long)]
        csv: PathBuf,
        /// Directory for the SVG files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a scenario over every transport, in separate pinned processes, repeatedly.
    Compare(Run),
}

/// An emulated link between client and server (quicrpc-netlab), instead of loopback.
#[derive(clap::Args, Clone, Debug)]
struct LinkArgs {
    /// One-way delay in ms (RTT = 2x).
    #[arg(long)]
    delay_ms: Option<f64>,
    /// Loss in percent, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss_pct: f64,
    /// Bottleneck rate in Mbit/s.
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// Drop every UDP packet (scenario `fallback`).
    #[arg(long)]
    block_udp: bool,
}

impl LinkArgs {
    fn config(&self) -> Option<quicrpc_netlab::LinkConfig> {
        if self.delay_ms.is_none()
            && self.loss_pct == 0.0
            && self.rate_mbit.is_none()
            && !self.block_udp
        {
            return None;
        }
        Some(quicrpc_netlab::LinkConfig {
            delay: Duration::from_secs_f64(self.delay_ms.unwrap_or(0.0) / 1000.0),
            loss: self.loss_pct / 100.0,
            rate: self.rate_mbit.map(|m| (m * 1e6) as u64),
            block_udp: self.block_udp,
            ..quicrpc_netlab::LinkConfig::default()
        })
    }

    /// A short label for tables and charts: "loopback" or "RTT 50 ms; loss 1 %; ...".
    fn label(&self) -> String {
        let Some(c) = self.config() else {
            return "loopback".into();
        };
        let mut parts = vec![format!("RTT {} ms", c.delay.as_secs_f64() * 2000.0)];
        if c.loss > 0.0 {
            parts.push(format!("loss {} %", c.loss * 100.0));
        }
        if let Some(rate) = c.rate {
            parts.push(format!("{} Mbit/s", rate as f64 / 1e6));
        }
        if c.block_udp {
            parts.push("UDP blocked".into());
        }
        parts.join("; ")
    }
}

/// QUIC congestion controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Cc {
    Cubic,
    NewReno,
    Bbr,
}

impl Cc {
    fn quicrpc(self) -> quicrpc::CongestionControl {
        match self {
            Self::Cubic => quicrpc::CongestionControl::Cubic,
            Self::NewReno => quicrpc::CongestionControl::NewReno,
            Self::Bbr => quicrpc::CongestionControl::Bbr,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Self::Cubic => "cubic",
            Self::NewReno => "new-reno",
            Self::Bbr => "bbr",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    /// quicrpc::Server: QUIC on UDP and gRPC on TCP, same port.
    Quicrpc,
    /// tonic's own server, TCP+TLS.
    Tonic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClientKind {
    /// quicrpc over QUIC.
    Quic,
    /// quicrpc's TCP fallback (tonic's channel under quicrpc's).
    QuicrpcTcp,
    /// Plain tonic channel, TCP+TLS.
    Tonic,
    /// Plain tonic, one TCP+TLS connection per call in flight (the head-of-line control).
    TonicPool,
}

impl ClientKind {
    const ALL: [ClientKind; 3] = [ClientKind::Quic, ClientKind::QuicrpcTcp, ClientKind::Tonic];
    /// Scenario 5's transports: the three, and tonic with a connection per call in flight.
    const HOL: [ClientKind; 4] = [
        ClientKind::Quic,
        ClientKind::QuicrpcTcp,
        ClientKind::Tonic,
        ClientKind::TonicPool,
    ];

    fn server(self) -> ServerKind {
        match self {
            Self::Quic | Self::QuicrpcTcp => ServerKind::Quicrpc,
            Self::Tonic | Self::TonicPool => ServerKind::Tonic,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Quic => "quicrpc QUIC",
            Self::QuicrpcTcp => "quicrpc TCP fallback",
            Self::Tonic => "tonic TCP+TLS",
            Self::TonicPool => "tonic, a connection per call",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::QuicrpcTcp => "quicrpc-tcp",
            Self::Tonic => "tonic",
            Self::TonicPool => "tonic-pool",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Scenario 1: one call in flight, loopback.
    Latency,
    /// Scenario 2: N calls in flight on one connection, loopback.
    Inflight,
    /// Scenario 3: streaming throughput, 64 KiB messages on 1 or more streams.
    Stream,
    /// Scenario 4: time from a fresh connection to the first response (use with a link).
    Setup,
    /// Scenario 5: head-of-line blocking: open-loop load at a fraction of tonic's capacity.
    Hol,
    /// Scenario 6: time to the first response when UDP is blocked (use with `--block-udp`).
    Fallback,
    /// Scenario 7: resident memory with many streams, or many idle connections.
    Memory,
    /// Scenario 8: the agents workload, latency per method.
    Agents,
}

#[derive(clap::Args, Clone, Debug)]
struct LoadArgs {
    #[command(flatten)]
    target: dial::Target,
    /// Calls in flight (closed loop), or the cap on calls in flight (open loop).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open loop: Poisson arrivals at this many calls per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Bytes in each request's name field.
    #[arg(long, default_value_t = 16)]
    payload: usize,
}

#[derive(Default)]
struct Greeting;

#[tonic::async_trait]
impl Greeter for Greeting {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        Ok(tonic::Response::new(HelloReply {
            message: request.into_inner().name,
        }))
    }
}

fn main() -> Result<(), BoxError> {
    match Cli::parse().command {
        Cmd::Serve {
            server,
            certs,
            addr,
            cc,
            max_streams,
        } => current_thread()?.block_on(serve(server, &certs, addr, cc, max_streams)),
        Cmd::Setup {
            mode,
            port,
            host,
            certs,
            count,
        } => {
            let (times, early) =
                current_thread()?.block_on(setup::run(mode, &host, port, &certs, count))?;
            let times: Vec<String> = times.iter().map(u64::to_string).collect();
            println!("SETUP times_us={} early={early}", times.join(","));
            Ok(())
        }
        Cmd::Load(args) => {
            let result = current_thread()?.block_on(load(&args))?;
            println!("{}", result.line());
            Ok(())
        }
        Cmd::Stream(args) => {
            let result = current_thread()?.block_on(stream::run(&args))?;
            println!("{}", result.line());
            Ok(())
        }
        Cmd::Hold(args) => current_thread()?.block_on(memory::hold(&args)),
        Cmd::Agents(args) => current_thread()?.block_on(agents::run(&args)),
        Cmd::Chart { csv, out } => {
            for file in chart::draw_all(&csv, &out)? {
                println!("{}", out.join(file).display());
            }
            Ok(())
        }
        Cmd::Compare(run) => compare(&run),
    }
}

/// One core per side: each process runs a single-threaded runtime.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn serve(
    kind: ServerKind,
    certs: &Path,
    addr: std::net::IpAddr,
    cc: Cc,
    max_streams: Option<u32>,
) -> Result<(), BoxError> {
    let cert = std::fs::read(certs.join("cert.pem"))?;
    let key = std::fs::read(certs.join("key.pem"))?;
    match kind {
        ServerKind::Quicrpc => {
            let mut builder = quicrpc::Server::builder();
            if let Some(streams) = max_streams {
                builder = builder.max_concurrent_streams(streams);
            }
            let server = builder
                .tls(quicrpc::tls::Identity::from_pem(cert, key)?)
                .add_service(GreeterServer::new(Greeting))
                .add_service(AgentControlServer::new(Agents::default()))
                .congestion_control(cc.quicrpc())
                .bind((addr, 0))
                .await?;
            announce(server.local_addr().port())?;
            server.serve_with_shutdown(stdin_closed()).await?;
        }
        ServerKind::Tonic => {
            let listener = tokio::net::TcpListener::bind((addr, 0)).await?;
            announce(listener.local_addr()?.port())?;
            let tls = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key));
            tonic::transport::Server::builder()
                .max_concurrent_streams(max_streams)
                .tls_config(tls)?
                .add_service(GreeterServer::new(Greeting))
                .add_service(AgentControlServer::new(Agents::default()))
                .serve_with_incoming_shutdown(
                    // TCP_NODELAY, as quicrpc's TCP side and grpc-go set it: without it,
                    // Nagle's algorithm holds small response frames for a round trip.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stdin_closed(),
                )
                .await?;
        }
    }
    Ok(())
}

/// Completes when standard input closes: how the parent process says "stop".
async fn stdin_closed() {
    // Blocking read on a helper thread: the runtime stays single-threaded.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lines().count();
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// The `key=value` fields of an output line that starts with `prefix`.
fn parse_fields<'a>(
    line: &'a str,
    prefix: &str,
) -> Option<std::collections::HashMap<&'a str, &'a str>> {
    Some(
        line.strip_prefix(prefix)?
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .collect(),
    )
}

fn announce(port: u16) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {port}")?;
    out.flush()
}

/// What one load run measured.
#[derive(Clone, Debug)]
struct LoadResult {
    calls: u64,
    /// Calls including the warm-up: the divisor of CPU per call, whose CPU time covers both.
    all_calls: u64,
    errors: u64,
    secs: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    /// Client CPU over warm-up and measurement; `compare` adds the server's.
    cpu_ms: f64,
}

impl LoadResult {
    fn line(&self) -> String {
        format!(
            "RESULT calls={} all_calls={} errors={} secs={:.3} p50_us={} p99_us={} p999_us={} cpu_ms={:.1}",
            self.calls,
            self.all_calls,
            self.errors,
            self.secs,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.cpu_ms
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let fields = parse_fields(line, "RESULT ")?;
        Some(Self {
            calls: fields.get("calls")?.parse().ok()?,
            all_calls: fields.get("all_calls")?.parse().ok()?,
            errors: fields.get("errors")?.parse().ok()?,
            secs: fields.get("secs")?.parse().ok()?,
            p50_us: fields.get("p50_us")?.parse().ok()?,
            p99_us: fields.get("p99_us")?.parse().ok()?,
            p999_us: fields.get("p999_us")?.parse().ok()?,
            cpu_ms: fields.get("cpu_ms")?.parse().ok()?,
        })
    }
}

async fn load(args: &LoadArgs) -> Result<LoadResult, BoxError> {
    // The control for head-of-line blocking: one connection per call in flight.
    let connections = match args.target.client {
        ClientKind::TonicPool => args.concurrency,
        _ => 1,
    };
    let (mut over_quicrpc, mut over_tonic) = (Vec::new(), Vec::new());
    for _ in 0..connections {
        match dial(&args.target).await? {
            Dialed::Quicrpc(channel) => over_quicrpc.push(GreeterClient::new(channel)),
            Dialed::Tonic(channel) => over_tonic.push(GreeterClient::new(channel)),
        }
    }
    if over_tonic.is_empty() {
        run_load(&over_quicrpc, args).await
    } else {
        run_load(&over_tonic, args).await
    }
}

async fn run_load<T: GrpcChannel>(
    clients: &[GreeterClient<T>],
    args: &LoadArgs,
) -> Result<LoadResult, BoxError> {
    let name = "x".repeat(args.payload);
    let cpu_before = cpu_ms_of("self");
    let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    // Warm-up: the same load, not in the latency figures; its calls count for CPU per call.
    let (warmup, _) = closed_loop(clients, &name, args.concurrency, warmup_end).await;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let (histogram, errors) = match args.rate {
        None => closed_loop(clients, &name, args.concurrency, end).await,
        Some(rate) => open_loop(clients, &name, rate, args.concurrency, end).await,
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu_ms = cpu_ms_of("self")
        .zip(cpu_before)
        .map_or(f64::NAN, |(after, before)| after - before);
    Ok(LoadResult {
        calls: histogram.len(),
        all_calls: histogram.len() + warmup.len(),
        errors,
        secs,
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        cpu_ms,
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// `concurrency` callers, each making calls back to back until `end`, spread over `clients`.
async fn closed_loop<T: GrpcChannel>(
    clients: &[GreeterClient<T>],
    name: &str,
    concurrency: usize,
    end: Instant,
) -> (Histogram<u64>, u64) {
    let callers = (0..concurrency).map(|i| {
        let mut client = clients[i % clients.len()].clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut errors = 0;
            while Instant::now() < end {
                let started = Instant::now();
                match client.say_hello(HelloRequest { name: name.clone() }).await {
                    Ok(_) => histogram.saturating_record(
                        started.elapsed().as_micros().try_into().unwrap_or(u64::MAX),
                    ),
                    Err(_) => errors += 1,
                }
            }
            (histogram, errors)
        })
    });
    let mut total = new_histogram();
    let mut errors = 0;
    for caller in futures_util::future::join_all(callers).await {
        let (histogram, e) = caller.expect("caller task");
        total.add(&histogram).expect("same bounds");
        errors += e;
    }
    (total, errors)
}

/// Poisson arrivals at `rate` per second until `end`; latency counts from each call's
/// scheduled start, so queueing behind a slow call is measured (no coordinated omission).
/// At most `cap` calls are in flight; arrivals beyond that are counted as errors. Calls take
/// `clients` in turn.
async fn open_loop<T: GrpcChannel>(
    clients: &[GreeterClient<T>],
    name: &str,
    rate: f64,
    cap: usize,
    end: Instant,
) -> (Histogram<u64>, u64) {
    let mut rng = quicrpc_netlab::Rng::new(0x5eed_1234);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(cap));
    let mut calls = tokio::task::JoinSet::new();
    let mut errors = 0;
    let mut next = Instant::now();
    let mut turn = 0;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let scheduled = next;
        next += Duration::from_secs_f64(rng.exponential(1.0 / rate));
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            errors += 1;
            continue;
        };
        let mut client = clients[turn % clients.len()].clone();
        turn += 1;
        let name = name.to_owned();
        calls.spawn(async move {
            let result = client.say_hello(HelloRequest { name }).await;
            drop(slot);
            result.is_ok().then(|| scheduled.elapsed())
        });
    }
    let mut histogram = new_histogram();
    while let Some(done) = calls.join_next().await {
        match done.expect("call task") {
            Some(latency) => {
                histogram.saturating_record(latency.as_micros().try_into().unwrap_or(u64::MAX));
            }
            None => errors += 1,
        }
    }
    (histogram, errors)
}

/// CPU time (user + system) of a process so far, in milliseconds, from `/proc/<pid>/stat`.
fn cpu_ms_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000.0 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A server process, stopped (by closing its standard input) when dropped.
struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    fn start(kind: ServerKind, run: &Run, place: &Placement) -> Result<Self, BoxError> {
        let kind = match kind {
            ServerKind::Quicrpc => "quicrpc",
            ServerKind::Tonic => "tonic",
        };
        let mut args = [
            "serve",
            "--server",
            kind,
            "--certs",
            &place.certs.display().to_string(),
            "--addr",
            &place.server_ip,
            "--cc",
            run.cc.arg(),
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(streams) = run.max_streams {
            args.extend(["--max-streams".to_owned(), streams.to_string()]);
        }
        let mut child = pinned(place.server_core, place.ns.as_deref(), &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("server said {line:?}"))?
            .parse()?;
        Ok(Self { child, port })
    }

    fn cpu_ms(&self) -> Option<f64> {
        cpu_ms_of(&self.child.id().to_string())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// This executable with `args`, under `taskset -c <core>` when pinning, inside the network
/// namespace `ns` when given.
fn pinned(core: Option<&str>, ns: Option<&str>, args: &[String]) -> Command {
    let exe = std::env::current_exe().expect("own executable");
    let mut line: Vec<std::ffi::OsString> = Vec::new();
    if let Some(ns) = ns {
        line.extend(["ip", "netns", "exec", ns].map(Into::into));
    }
    if let Some(core) = core {
        line.extend(["taskset", "-c", core].map(Into::into));
    }
    line.push(exe.into());
    line.extend(args.iter().map(Into::into));
    let mut command = Command::new(&line[0]);
    command.args(&line[1..]);
    command
}

/// What `compare` runs: the scenario and its settings.
#[derive(clap::Args, Debug)]
struct Run {
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Repetitions (the median and range are reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds per run, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Calls in flight, comma-separated (scenario `inflight`).
    #[arg(long, value_delimiter = ',', default_value = "1,50,256,1000")]
    concurrency: Vec<usize>,
    /// QUIC congestion controller, both sides (TCP uses the host's).
    #[arg(long, value_enum, default_value_t = Cc::Bbr)]
    cc: Cc,
    /// Bytes in each request's name field.
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// Streams on the connection, comma-separated (scenario `stream`).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    streams: Vec<usize>,
    /// Open-loop load as a fraction of what tonic carries closed-loop on this link
    /// (scenario `hol`).
    #[arg(long, default_value_t = 0.3)]
    load_fraction: f64,
    /// Streams or connections held (scenario `memory`).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Agents at once (scenario `agents`).
    #[arg(long, default_value_t = 100)]
    agents: u64,
    /// Rounds of agents, one after another (scenario `agents`).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Append the medians to this CSV file, for `chart`.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The servers' limit on calls in flight per connection (their defaults if absent).
    #[arg(long)]
    max_streams: Option<u32>,
    #[command(flatten)]
    link: LinkArgs,
}

impl Run {
    /// The levels of calls in flight (or streams) that get a table each.
    fn levels(&self) -> Vec<usize> {
        match self.scenario {
            Scenario::Inflight => self.concurrency.clone(),
            Scenario::Hol => self.concurrency[..1].to_vec(),
            Scenario::Stream => self.streams.clone(),
            _ => vec![1],
        }
    }

    /// Appends chart rows to the CSV file, if one was asked for.
    fn keep(&self, rows: &[report::Row]) -> Result<(), BoxError> {
        if let Some(csv) = &self.csv {
            report::append_csv(csv, rows)?;
        }
        Ok(())
    }

    fn scenario_name(&self) -> String {
        format!("{:?}", self.scenario).to_lowercase()
    }
}

/// Where the processes run.
struct Placement {
    certs: PathBuf,
    server_core: Option<&'static str>,
    client_core: Option<&'static str>,
    /// The server's namespace and address, behind an emulated link.
    ns: Option<String>,
    server_ip: String,
    host: String,
}

fn compare(run: &Run) -> Result<(), BoxError> {
    let certs = std::env::temp_dir().join(format!("quicrpc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&certs)?;
    let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
    std::fs::write(certs.join("cert.pem"), cert.cert_pem())?;
    std::fs::write(certs.join("key.pem"), cert.key_pem())?;
    std::fs::write(certs.join("ca.pem"), cert.ca_pem())?;

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pin = cores >= 2 && Command::new("taskset").arg("-V").output().is_ok();
    let lab = match run.link.config() {
        Some(config) => Some(quicrpc_netlab::Netlab::start(config)?),
        None => None,
    };
    let place = Placement {
        certs: certs.clone(),
        server_core: pin.then_some("0"),
        client_core: pin.then_some("1"),
        ns: lab.as_ref().map(|lab| lab.ns.clone()),
        server_ip: lab
            .as_ref()
            .map_or_else(|| "127.0.0.1".into(), |lab| lab.server_ip.to_string()),
        host: lab
            .as_ref()
            .map_or_else(|| "localhost".into(), |lab| lab.server_ip.to_string()),
    };
    let link = match &run.link.config() {
        Some(c) => format!(
            "emulated link: RTT {:?}, loss {} % each way, rate {}",
            c.delay * 2,
            c.loss * 100.0,
            c.rate.map_or_else(
                || "unlimited".into(),
                |r| format!("{} Mbit/s", r as f64 / 1e6)
            )
        ),
        None => "loopback".into(),
    };
    println!(
        "# {:?}: {} repetitions of {} s (+{} s warm-up); {link}; QUIC congestion control {:?}; {}-byte requests; {}",
        run.scenario,
        run.reps,
        run.duration,
        run.warmup,
        run.cc,
        run.payload,
        if pin {
            "server pinned to core 0, client to core 1"
        } else {
            "not pinned (taskset or a second core missing)"
        }
    );
    let result = match run.scenario {
        Scenario::Latency | Scenario::Inflight => load_tables(run, &place, lab.as_ref()),
        Scenario::Hol => hol::tables(run, &place, lab.as_ref()),
        Scenario::Stream => stream::tables(run, &place),
        Scenario::Setup => setup_table(run, &place, &setup::SetupMode::ALL),
        Scenario::Fallback => setup_table(run, &place, &setup::SetupMode::FALLBACK),
        Scenario::Memory => memory::tables(run, &place),
        Scenario::Agents => agents::tables(run, &place),
    };
    if let Some(lab) = &lab {
        let (up, down) = lab.counts();
        println!("\nlink: client -> server {up}; server -> client {down}");
    }
    let _ = std::fs::remove_dir_all(&certs);
    result
}

/// Scenarios 1 and 2: closed-loop load at each level of calls in flight.
fn load_tables(
    run: &Run,
    place: &Placement,
    lab: Option<&quicrpc_netlab::Netlab>,
) -> Result<(), BoxError> {
    for concurrency in run.levels() {
        let mut runs: Vec<Vec<(ClientKind, LoadResult)>> = Vec::new();
        for _ in 0..run.reps {
            let mut rep = Vec::new();
            for kind in ClientKind::ALL {
                rep.push((kind, measure(kind, concurrency, None, run, place)?));
            }
            runs.push(rep);
        }
        println!(
            "{}",
            report::table(&format!("{concurrency} in flight"), &runs)
        );
        run.keep(&report::load_rows(
            &run.scenario_name(),
            &run.link.label(),
            &concurrency.to_string(),
            &runs,
        ))?;
        if let Some(lab) = lab {
            let (up, down) = lab.counts();
            println!("link so far: client -> server {up}; server -> client {down}\n");
        }
    }
    Ok(())
}

/// Scenarios 4 and 6: each set-up mode, `reps` times 20 fresh connections against a fresh
/// server; a table of times to the first response, in ms and in round trips.
fn setup_table(run: &Run, place: &Placement, modes: &[setup::SetupMode]) -> Result<(), BoxError> {
    let rtt_ms = run
        .link
        .config()
        .map_or(0.0, |c| c.delay.as_secs_f64() * 2000.0);
    println!("\n| set-up | p50 ms | p50 ÷ RTT | min ms | max ms | calls as 0-RTT |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for &mode in modes {
        let mut times = Vec::new();
        let mut early = 0;
        for _ in 0..run.reps {
            let server = ServerProcess::start(mode.server(), run, place)?;
            let line = run_client(
                &server,
                place,
                &["setup", "--mode", mode.arg()],
                mode.name(),
                |l| l.strip_prefix("SETUP ").map(str::to_owned),
            )?
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
            &run.scenario_name(),
            &run.link.label(),
            mode.name(),
            mode.name(),
            "time to first response (ms)",
            p50,
        ));
    }
    run.keep(&rows)
}

/// Runs this executable's client subcommand `args` against `server` (pinned to the client
/// core), adding the server's port, host and certificates, and returns what `parse` made of
/// each line of its output that it accepted (at least one).
fn run_client<T>(
    server: &ServerProcess,
    place: &Placement,
    args: &[&str],
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, BoxError> {
    let mut line: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    line.extend([
        "--port".into(),
        server.port.to_string(),
        "--host".into(),
        place.host.clone(),
        "--certs".into(),
        place.certs.display().to_string(),
    ]);
    let output = pinned(place.client_core, None, &line).output()?;
    let found: Vec<T> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(parse)
        .collect();
    if found.is_empty() {
        return Err(format!("{what} failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(found)
}

/// Runs client subcommand `args` (a `--client` and `--cc` are added) as `kind` against a
/// fresh server; returns what `parse` accepted and the server's CPU time over the run, in ms.
fn on_fresh_server<T>(
    kind: ClientKind,
    run: &Run,
    place: &Placement,
    args: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<(Vec<T>, f64), BoxError> {
    let server = ServerProcess::start(kind.server(), run, place)?;
    let server_cpu = server.cpu_ms();
    let mut args = args.to_vec();
    args.extend(["--client", kind.arg(), "--cc", run.cc.arg()]);
    let what = format!("{} {}", kind.name(), args[0]);
    let found = run_client(&server, place, &args, &what, parse)?;
    let cpu_ms = server_cpu
        .zip(server.cpu_ms())
        .map_or(f64::NAN, |(before, after)| after - before);
    Ok((found, cpu_ms))
}

/// One load run of `kind` against a fresh server: closed loop, or open loop at `rate`.
fn measure(
    kind: ClientKind,
    concurrency: usize,
    rate: Option<f64>,
    run: &Run,
    place: &Placement,
) -> Result<LoadResult, BoxError> {
    let (concurrency, duration, warmup, payload) = (
        concurrency.to_string(),
        run.duration.to_string(),
        run.warmup.to_string(),
        run.payload.to_string(),
    );
    let mut args = vec![
        "load",
        "--concurrency",
        &concurrency,
        "--duration",
        &duration,
        "--warmup",
        &warmup,
        "--payload",
        &payload,
    ];
    let rate = rate.map(|r| r.to_string());
    if let Some(rate) = &rate {
        args.extend(["--rate", rate]);
    }
    let (mut results, server_cpu_ms) = on_fresh_server(kind, run, place, &args, LoadResult::parse)?;
    let mut result = results.remove(0);
    // Server CPU over the same span as the client's: warm-up and measurement.
    result.cpu_ms += server_cpu_ms;
    Ok(result)
}
