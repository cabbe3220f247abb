//! Unary load: the `load` subcommand makes Greeter calls (bare quinn: echoes of the same
//! size), closed loop (N callers back to back) or open loop (Poisson arrivals), and prints one
//! `RESULT` line; [`measure`] is `compare`'s side of it, one run against a fresh server.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::cli::Timing;
use crate::compare::Run;
use crate::dial::{self, Dialed, GrpcChannel, dial};
use crate::helloworld::HelloRequest;
use crate::helloworld::greeter_client::GreeterClient;
use crate::process::{cpu_ms_of, on_fresh_server, parse_fields};
use crate::transport::ClientKind;
use crate::{BoxError, bare};

/// `--payload`'s default.
pub(crate) const DEFAULT_PAYLOAD: usize = 16;

/// What each call sends: `load`'s flag, and `compare`'s for the scenarios that run `load`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Requests {
    /// Bytes in each request's name field.
    #[arg(long, default_value_t = DEFAULT_PAYLOAD)]
    pub(crate) payload: usize,
}

/// The `load` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    pub(crate) target: dial::Target,
    /// Calls in flight (closed loop), or the cap on calls in flight (open loop).
    #[arg(long, default_value_t = 1)]
    pub(crate) concurrency: usize,
    #[command(flatten)]
    pub(crate) timing: Timing,
    /// Open loop: Poisson arrivals at this many calls per second.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    #[command(flatten)]
    pub(crate) requests: Requests,
}

/// What one load run measured.
#[derive(Clone, Debug)]
pub(crate) struct LoadResult {
    pub(crate) calls: u64,
    /// Calls including the warm-up: the divisor of CPU per call, whose CPU time covers both.
    pub(crate) all_calls: u64,
    pub(crate) errors: u64,
    pub(crate) secs: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    /// Client CPU over warm-up and measurement; `compare` adds the server's.
    pub(crate) cpu_ms: f64,
}

impl LoadResult {
    pub(crate) fn line(&self) -> String {
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

    pub(crate) fn parse(line: &str) -> Option<Self> {
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

pub(crate) async fn load(args: &LoadArgs) -> Result<LoadResult, BoxError> {
    if args.target.client == ClientKind::Quinn {
        let connection = bare::Connection::connect(&args.target.server, bare::ECHO).await?;
        let request = vec![b'x'; bare::grpc_message_len(args.requests.payload)];
        let echo = Echo {
            connection: connection.clone(),
            request: request.into(),
        };
        let result = run_load(&[echo], args).await;
        connection.close().await;
        return result;
    }
    // The control for head-of-line blocking: one connection per call in flight.
    let connections = match args.target.client {
        ClientKind::TonicPool => args.concurrency,
        _ => 1,
    };
    let name = "x".repeat(args.requests.payload);
    let (mut over_quicrpc, mut over_tonic) = (Vec::new(), Vec::new());
    for _ in 0..connections {
        match dial(&args.target).await? {
            Dialed::Quicrpc(channel) => over_quicrpc.push(Greeting::new(channel, &name)),
            Dialed::Tonic(channel) => over_tonic.push(Greeting::new(channel, &name)),
        }
    }
    if over_tonic.is_empty() {
        run_load(&over_quicrpc, args).await
    } else {
        run_load(&over_tonic, args).await
    }
}

/// One unary call of the load, made again and again: Greeter over gRPC, or an echo over bare
/// quinn.
trait Caller: Clone + Send + 'static {
    /// Makes one call; whether it succeeded.
    fn call(&mut self) -> impl Future<Output = bool> + Send;
}

/// Greeter's `SayHello` with a fixed name.
#[derive(Clone)]
struct Greeting<T> {
    client: GreeterClient<T>,
    name: String,
}

impl<T: GrpcChannel> Greeting<T> {
    fn new(channel: T, name: &str) -> Self {
        Self {
            client: GreeterClient::new(channel),
            name: name.to_owned(),
        }
    }
}

impl<T: GrpcChannel> Caller for Greeting<T> {
    async fn call(&mut self) -> bool {
        let request = HelloRequest {
            name: self.name.clone(),
        };
        self.client.say_hello(request).await.is_ok()
    }
}

/// Bare quinn's echo of a request as long as Greeter's on gRPC's wire.
#[derive(Clone)]
struct Echo {
    connection: bare::Connection,
    request: Bytes,
}

impl Caller for Echo {
    async fn call(&mut self) -> bool {
        self.connection.echo(&self.request).await.is_ok()
    }
}

async fn run_load<C: Caller>(callers: &[C], args: &LoadArgs) -> Result<LoadResult, BoxError> {
    let cpu_before = cpu_ms_of("self");
    // Warm-up: the same load, not in the latency figures; its calls count for CPU per call.
    let (warmup, _) = closed_loop(callers, args.concurrency, args.timing.warmup_end()).await;
    let start = Instant::now();
    let end = args.timing.measured_end();
    let (histogram, errors) = match args.rate {
        None => closed_loop(callers, args.concurrency, end).await,
        Some(rate) => open_loop(callers, rate, args.concurrency, end).await,
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

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Records `latency` in `histogram`, in microseconds.
pub(crate) fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(latency.as_micros().try_into().unwrap_or(u64::MAX));
}

/// `concurrency` callers, each making calls back to back until `end`, spread over `callers`'
/// connections.
async fn closed_loop<C: Caller>(
    callers: &[C],
    concurrency: usize,
    end: Instant,
) -> (Histogram<u64>, u64) {
    let tasks = (0..concurrency).map(|i| {
        let mut caller = callers[i % callers.len()].clone();
        tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut errors = 0;
            while Instant::now() < end {
                let started = Instant::now();
                if caller.call().await {
                    record(&mut histogram, started.elapsed());
                } else {
                    errors += 1;
                }
            }
            (histogram, errors)
        })
    });
    let mut total = new_histogram();
    let mut errors = 0;
    for task in futures_util::future::join_all(tasks).await {
        let (histogram, e) = task.expect("caller task");
        total.add(&histogram).expect("same bounds");
        errors += e;
    }
    (total, errors)
}

/// Poisson arrivals at `rate` per second until `end`; latency counts from each call's
/// scheduled start, so queueing behind a slow call is measured (no coordinated omission).
/// At most `cap` calls are in flight; arrivals beyond that are counted as errors. Calls take
/// `callers` in turn.
async fn open_loop<C: Caller>(
    callers: &[C],
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
        let mut caller = callers[turn % callers.len()].clone();
        turn += 1;
        calls.spawn(async move {
            let ok = caller.call().await;
            drop(slot);
            ok.then(|| scheduled.elapsed())
        });
    }
    let mut histogram = new_histogram();
    while let Some(done) = calls.join_next().await {
        match done.expect("call task") {
            Some(latency) => record(&mut histogram, latency),
            None => errors += 1,
        }
    }
    (histogram, errors)
}

/// One load run of `kind` against a fresh server, `payload` bytes a request: closed loop, or
/// open loop at `rate`.
pub(crate) fn measure(
    kind: ClientKind,
    concurrency: usize,
    rate: Option<f64>,
    payload: usize,
    run: &Run,
) -> Result<LoadResult, BoxError> {
    let mut args = vec![
        "load".to_owned(),
        "--concurrency".into(),
        concurrency.to_string(),
        "--payload".into(),
        payload.to_string(),
    ];
    args.extend(run.common.timing.flags());
    if let Some(rate) = rate {
        args.extend(["--rate".into(), rate.to_string()]);
    }
    let (mut results, server_cpu_ms) = on_fresh_server(kind, run, &args, LoadResult::parse)?;
    let mut result = results.remove(0);
    // Server CPU over the same span as the client's: warm-up and measurement.
    result.cpu_ms += server_cpu_ms;
    Ok(result)
}
