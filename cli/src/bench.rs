//! `quicrpc bench`: a load test of one method, ghz-style.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use quicrpc::{Channel, Priority};
use quicrpc_schema::escape;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::call::{CallSpec, Invocation, invoke, parse_priority};
use crate::error::{CliError, code_name};
use crate::input::{parse_duration, parse_rate};
use crate::schema::SchemaArgs;
use crate::target::TargetArgs;

/// `quicrpc bench`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  quicrpc bench localhost:50051 quicrpc.testing.Echo/Unary -d '{\"message\": \"hi\"}' -c 50 -z 10s
  quicrpc bench localhost:50051 quicrpc.testing.Echo/Unary --rate 2000 -z 30s --transport tcp

Closed loop (the default): --concurrency calls are kept in flight, each started as the last
one ends. Open loop (--rate R): calls start at R per second whatever the server's pace, up to
--concurrency in flight, until -z is over (calls still due then are not made); a call that
has to wait for a free slot counts its latency from when it was due, so the wait counts too.
The summary goes to standard output; the progress bar, shown only on a terminal, to standard
error. The exit code is 0 once the test has run, whatever the calls' statuses (see the status
table).")]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// The method: package.Service/Method.
    #[arg(value_name = "METHOD")]
    method: String,

    /// Each call's request: JSON text, @FILE or @-; for streaming requests, one JSON object
    /// per line. Default: {}.
    #[arg(short = 'd', long = "data", value_name = "JSON|@FILE|@-")]
    data: Option<String>,

    /// Request metadata, 'key: value'. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "KEY: VALUE")]
    headers: Vec<String>,

    /// Calls in flight at once (closed loop), or at most (with --rate).
    #[arg(short = 'c', long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,

    /// Connections to spread the calls over (each its own QUIC or TCP connection).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,

    /// How long to send calls for, e.g. 10s or 1m; at most 8760h (365 days).
    #[arg(short = 'z', long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// Open loop: start this many calls per second (a positive number; fractions such as
    /// 0.5 allowed, down to one call in 365 days).
    #[arg(long, value_name = "CALLS_PER_SECOND", value_parser = parse_rate)]
    rate: Option<f64>,

    /// Each call's deadline; at most 8760h (365 days).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    timeout: Duration,

    /// Overrides the method's send priority: critical, high, normal, low or bulk.
    #[arg(long, value_name = "PRIORITY", value_parser = parse_priority)]
    priority: Option<Priority>,

    #[command(flatten)]
    schema: SchemaArgs,
}

/// Latencies and status codes, shared by every call.
#[derive(Debug)]
struct Stats {
    /// Microseconds.
    latency: Histogram<u64>,
    codes: BTreeMap<i32, u64>,
    /// The first message seen for each failing code.
    first_message: BTreeMap<i32, String>,
}

impl Stats {
    fn record(&mut self, latency: Duration, result: &Result<(), tonic::Status>) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency.saturating_record(micros);
        let code = result.as_ref().err().map_or(tonic::Code::Ok, |s| s.code());
        *self.codes.entry(code as i32).or_default() += 1;
        if let Err(status) = result {
            self.first_message
                .entry(code as i32)
                .or_insert_with(|| status.message().to_owned());
        }
    }
}

/// What every call task needs.
struct Load {
    channels: Vec<Channel>,
    invocation: Invocation,
    stats: Mutex<Stats>,
    done: AtomicU64,
}

impl Load {
    /// One call on the `n`th connection (modulo their number), its latency counted from
    /// `started`.
    async fn one_call(&self, n: usize, started: Instant) {
        let channel = self.channels[n % self.channels.len()].clone();
        let result = invoke(channel, &self.invocation, |_| Ok(())).await;
        let result = match result {
            Ok(_) => Ok(()),
            Err(CliError::Status(status)) => Err(status),
            Err(other) => Err(tonic::Status::unknown(other.to_string())),
        };
        let latency = started.elapsed();
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(latency, &result);
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `quicrpc bench`.
pub(crate) async fn run(args: BenchArgs) -> Result<(), CliError> {
    let spec = CallSpec {
        method: &args.method,
        data: args.data.as_deref(),
        headers: &args.headers,
        timeout: Some(args.timeout),
        priority: args.priority,
        schema: &args.schema,
        stream_stdin: false,
    };
    let (channel, invocation) = spec.prepare(&args.target).await?;
    let mut channels = vec![channel.clone()];
    let more = (1..args.connections).map(|_| args.target.connect());
    channels.extend(futures_util::future::try_join_all(more).await?);
    let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| CliError::Usage(format!("latency histogram: {e}")))?;
    let load = Arc::new(Load {
        channels,
        invocation,
        stats: Mutex::new(Stats {
            latency,
            codes: BTreeMap::new(),
            first_message: BTreeMap::new(),
        }),
        done: AtomicU64::new(0),
    });

    let bar = progress_bar(args.duration);
    let start = Instant::now();
    // -z is at most a year (see `parse_duration`), so this holds; checked all the same.
    let end = start.checked_add(args.duration).ok_or_else(|| {
        CliError::Usage(format!("-z {:?}: too long for the clock", args.duration))
    })?;
    let ticker = tokio::spawn(tick(bar.clone(), load.clone(), start, end));
    match args.rate {
        None => closed_loop(&load, args.concurrency, end).await,
        Some(rate) => open_loop(&load, args.concurrency, rate, start, end).await,
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();

    let stats = load.stats.lock().unwrap_or_else(|p| p.into_inner());
    let mut load_line = match args.rate {
        None => format!("{} calls in flight (closed loop)", args.concurrency),
        Some(rate) => format!(
            "{rate} calls/s offered (open loop, at most {} in flight)",
            args.concurrency
        ),
    };
    if args.connections > 1 {
        load_line.push_str(&format!(" on {} connections", args.connections));
    }
    print!(
        "{}",
        summary(
            &stats,
            &args.method,
            channel.transport(),
            &load_line,
            elapsed
        )
    );
    Ok(())
}

/// `concurrency` workers, each starting its next call when the last one ends, until `end`.
async fn closed_loop(load: &Arc<Load>, concurrency: u32, end: Instant) {
    let mut workers = JoinSet::new();
    for worker in 0..concurrency as usize {
        let load = load.clone();
        workers.spawn(async move {
            while Instant::now() < end {
                load.one_call(worker, Instant::now()).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// A call every `1/rate` seconds until `end`, at most `concurrency` in flight. A call that
/// had to wait for a free slot counts its latency from when it was due (the server is
/// behind, and the wait is part of what a client would see); others from when they were
/// sent, so the timer's own lateness (up to a millisecond) is not counted against the
/// server. Sending stops at `end` even when the calls are behind their schedule (a rate
/// the server cannot keep up with): the calls still due then are not made.
async fn open_loop(load: &Arc<Load>, concurrency: u32, rate: f64, start: Instant, end: Instant) {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let mut calls = JoinSet::new();
    for n in 0u64.. {
        // `rate` is at least one call a year and `n / rate` stops past `end`, a year at
        // most after `start` (see `parse_rate`), so neither step fails; ending is the
        // safe answer if one does.
        let due = Duration::try_from_secs_f64(n as f64 / rate)
            .ok()
            .and_then(|offset| start.checked_add(offset));
        let Some(due) = due.filter(|due| *due < end) else {
            break;
        };
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let (slot, started) = match slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, Instant::now()),
            Err(_) => match slots.clone().acquire_owned().await {
                Ok(_) if Instant::now() >= end => break,
                Ok(slot) => (slot, due),
                Err(_) => break,
            },
        };
        let load = load.clone();
        let n = usize::try_from(n).unwrap_or_default();
        calls.spawn(async move {
            load.one_call(n, started).await;
            drop(slot);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

/// A bar over the test's duration on a terminal; a hidden one otherwise.
fn progress_bar(duration: Duration) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{wide_bar}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Moves the bar along and shows the calls so far, ten times a second.
async fn tick(bar: ProgressBar, load: Arc<Load>, start: Instant, end: Instant) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let now = Instant::now().min(end);
        bar.set_position(u64::try_from((now - start).as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!("{} calls", load.done.load(Ordering::Relaxed)));
    }
}

fn summary(
    stats: &Stats,
    method: &str,
    transport: quicrpc::Transport,
    load: &str,
    elapsed: Duration,
) -> String {
    let calls: u64 = stats.codes.values().sum();
    let rate = calls as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut text = format!(
        "Summary:\n  method:    {method} over {transport}\n  load:      {load}\n  \
         elapsed:   {:.2} s\n  calls:     {calls} ({rate:.1} calls/s)\n\nLatency:\n",
        elapsed.as_secs_f64()
    );
    let h = &stats.latency;
    if calls > 0 {
        for (label, quantile) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            text.push_str(&format!(
                "  {label:<9}  {}\n",
                micros_text(h.value_at_quantile(quantile))
            ));
        }
        text.push_str(&format!("  {:<9}  {}\n", "max", micros_text(h.max())));
    } else {
        text.push_str("  (no calls completed)\n");
    }
    text.push_str("\nStatus codes:\n");
    for (&code, &count) in &stats.codes {
        let code = tonic::Code::from_i32(code);
        let name = format!("{} ({})", code_name(code), code as i32);
        text.push_str(&format!("  {name:<24} {count:>10}"));
        if let Some(message) = stats.first_message.get(&(code as i32)) {
            text.push_str(&format!("   first: {}", escape(message)));
        }
        text.push('\n');
    }
    text
}

/// `850 µs`, `12.34 ms`, `1.234 s`.
fn micros_text(micros: u64) -> String {
    match micros {
        0..1_000 => format!("{micros} µs"),
        1_000..1_000_000 => format!("{:.2} ms", micros as f64 / 1e3),
        _ => format!("{:.3} s", micros as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_units() {
        assert_eq!(micros_text(850), "850 µs");
        assert_eq!(micros_text(12_340), "12.34 ms");
        assert_eq!(micros_text(1_234_000), "1.234 s");
    }
}
