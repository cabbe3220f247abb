//! The `mixed` scenario: priority under load. On one connection, `--bulk` uploads (the agents
//! service's client-streaming `BulkTransfer`, priority BULK) send 16 KiB messages back to
//! back while `--urgent` callers each alternate a HIGH unary call (`Spawn`) and a CRITICAL one
//! (`Terminate`, of the agent just spawned), both with messages of a few bytes. The
//! priorities are the methods' `(quicrpc.priority)` options in `proto/agents/agents.proto`;
//! over TCP (quicrpc's fallback, and tonic) they do nothing. Reported: the urgent calls'
//! latency per priority, urgent calls/s and bulk MB/s, each against tonic in the same
//! repetition.

use std::time::Instant;

use hdrhistogram::Histogram;
use quicrpc_examples::agents::agent_control_client::AgentControlClient;
use quicrpc_examples::agents::agent_control_methods::{BULK_TRANSFER, SPAWN, TERMINATE};
use quicrpc_examples::agents::{SpawnRequest, TerminateRequest};

use crate::BoxError;
use crate::cli::{Common, Timing};
use crate::compare::Run;
use crate::dial::{Dialed, GrpcChannel, Target, dial};
use crate::load::{DEFAULT_PAYLOAD, new_histogram, record};
use crate::process::{on_fresh_server, parse_fields};
use crate::report;
use crate::stream::{BulkTransfer, upload};
use crate::transport::ClientKind;

/// Bytes in each bulk message.
pub(crate) const BULK_MESSAGE: usize = 16 * 1024;

/// How much of each kind of call runs at once: the `mixed` subcommand's flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Mix {
    /// Bulk uploads on the connection, each sending 16 KiB messages back to back.
    #[arg(long, default_value_t = 32)]
    pub(crate) bulk: usize,
    /// Callers alternating a HIGH and a CRITICAL unary call, each call after the last.
    #[arg(long, default_value_t = 8)]
    pub(crate) urgent: usize,
}

/// The `mixed` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct MixedArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    #[command(flatten)]
    pub(crate) mix: Mix,
    #[command(flatten)]
    pub(crate) timing: Timing,
}

/// `compare mixed`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CompareArgs {
    /// Bulk uploads on the connection, comma-separated: a table each.
    #[arg(long, value_delimiter = ',', default_value = "0,8,32,128")]
    pub(crate) bulk: Vec<usize>,
    /// Callers alternating a HIGH and a CRITICAL unary call.
    #[arg(long, default_value_t = 8)]
    pub(crate) urgent: usize,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// One priority's calls over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Latencies {
    pub(crate) calls: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
}

impl Latencies {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            calls: histogram.len(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
        }
    }

    /// `name_calls=.. name_p50_us=.. name_p99_us=.. name_p999_us=..`
    fn fields(&self, name: &str) -> String {
        format!(
            "{name}_calls={} {name}_p50_us={} {name}_p99_us={} {name}_p999_us={}",
            self.calls, self.p50_us, self.p99_us, self.p999_us
        )
    }

    fn parse(fields: &std::collections::HashMap<&str, &str>, name: &str) -> Option<Self> {
        let field = |key: &str| fields.get(format!("{name}_{key}").as_str())?.parse().ok();
        Some(Self {
            calls: field("calls")?,
            p50_us: field("p50_us")?,
            p99_us: field("p99_us")?,
            p999_us: field("p999_us")?,
        })
    }
}

/// What one mixed run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MixedResult {
    /// The CRITICAL calls (`Terminate`).
    pub(crate) critical: Latencies,
    /// The HIGH calls (`Spawn`).
    pub(crate) high: Latencies,
    /// Urgent calls that failed, and bulk uploads that failed.
    pub(crate) errors: u64,
    /// From the start to the last urgent caller's last answer.
    pub(crate) urgent_secs: f64,
    /// Bytes the server counted, all uploads.
    pub(crate) bulk_bytes: u64,
    /// From the start to the last upload's answer.
    pub(crate) bulk_secs: f64,
}

impl MixedResult {
    pub(crate) fn line(&self) -> String {
        format!(
            "MIXED {} {} errors={} urgent_secs={:.3} bulk_bytes={} bulk_secs={:.3}",
            self.critical.fields("critical"),
            self.high.fields("high"),
            self.errors,
            self.urgent_secs,
            self.bulk_bytes,
            self.bulk_secs
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        let fields = parse_fields(line, "MIXED ")?;
        Some(Self {
            critical: Latencies::parse(&fields, "critical")?,
            high: Latencies::parse(&fields, "high")?,
            errors: fields.get("errors")?.parse().ok()?,
            urgent_secs: fields.get("urgent_secs")?.parse().ok()?,
            bulk_bytes: fields.get("bulk_bytes")?.parse().ok()?,
            bulk_secs: fields.get("bulk_secs")?.parse().ok()?,
        })
    }

    /// Urgent calls (both priorities) per second.
    pub(crate) fn urgent_per_s(&self) -> f64 {
        (self.critical.calls + self.high.calls) as f64 / self.urgent_secs
    }

    /// Bulk megabytes (10^6 bytes) per second.
    pub(crate) fn bulk_mb_per_s(&self) -> f64 {
        self.bulk_bytes as f64 / 1e6 / self.bulk_secs
    }
}

/// Connects as `args.target` says and runs the mix: a warm-up, then the measured run.
pub(crate) async fn run(args: &MixedArgs) -> Result<MixedResult, BoxError> {
    match dial(&args.target).await? {
        Dialed::Quicrpc(channel) => measure(channel, args).await,
        Dialed::Tonic(channel) => measure(channel, args).await,
    }
}

async fn measure<T: GrpcChannel>(channel: T, args: &MixedArgs) -> Result<MixedResult, BoxError> {
    mix(&channel, &args.mix, args.timing.warmup_end()).await?;
    mix(&channel, &args.mix, args.timing.measured_end()).await
}

/// The uploads and the urgent callers, all until `end`.
async fn mix<T: GrpcChannel>(
    channel: &T,
    mix: &Mix,
    end: Instant,
) -> Result<MixedResult, BoxError> {
    let start = Instant::now();
    let uploads = BulkTransfer::new(channel.clone(), BULK_MESSAGE);
    let streams = mix.bulk;
    let bulk = tokio::spawn(async move { upload(uploads, streams, end).await });
    let callers = (0..mix.urgent).map(|_| {
        let client = AgentControlClient::new(channel.clone());
        tokio::spawn(urgent_caller(client, end))
    });
    let (mut critical, mut high, mut errors) = (new_histogram(), new_histogram(), 0);
    for caller in futures_util::future::join_all(callers).await {
        let (c, h, e) = caller?;
        critical.add(&c).expect("same bounds");
        high.add(&h).expect("same bounds");
        errors += e;
    }
    let urgent_secs = start.elapsed().as_secs_f64();
    // A failed upload counts as an error, not as a failed run: the urgent figures still hold.
    let bulk_bytes = bulk.await?.unwrap_or_else(|_| {
        errors += 1;
        0
    });
    Ok(MixedResult {
        critical: Latencies::of(&critical),
        high: Latencies::of(&high),
        errors,
        urgent_secs,
        bulk_bytes,
        bulk_secs: start.elapsed().as_secs_f64(),
    })
}

/// Spawns an agent (HIGH) and terminates it (CRITICAL), again and again until `end`; the
/// latencies of each, and the calls that failed.
async fn urgent_caller<T: GrpcChannel>(
    mut client: AgentControlClient<T>,
    end: Instant,
) -> (Histogram<u64>, Histogram<u64>, u64) {
    let (mut critical, mut high, mut errors) = (new_histogram(), new_histogram(), 0);
    let name = "x".repeat(DEFAULT_PAYLOAD);
    while Instant::now() < end {
        let started = Instant::now();
        let spawn = SpawnRequest {
            name: name.clone(),
            model: String::new(),
        };
        let agent_id = match client.spawn(spawn).await {
            Ok(reply) => {
                record(&mut high, started.elapsed());
                reply.into_inner().agent_id
            }
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        let started = Instant::now();
        match client.terminate(TerminateRequest { agent_id }).await {
            Ok(_) => record(&mut critical, started.elapsed()),
            Err(_) => errors += 1,
        }
    }
    (critical, high, errors)
}

/// A priority's name as the tables write it: `CRITICAL`.
fn upper(method: &quicrpc::MethodInfo) -> String {
    method.priority().as_str().to_uppercase()
}

/// `compare mixed`: a table per number of bulk uploads.
pub(crate) fn tables(run: &Run, args: &CompareArgs) -> Result<(), BoxError> {
    let (critical, high) = (upper(&TERMINATE), upper(&SPAWN));
    // Charts are per link and number of urgent callers; their x axis is the bulk uploads.
    let chart = run.common.with_windows(format!(
        "{}; {} urgent callers",
        run.common.link.label(),
        args.urgent
    ));
    for &n in &args.bulk {
        let mut child = vec!["mixed".to_owned(), "--bulk".into(), n.to_string()];
        child.extend(["--urgent".into(), args.urgent.to_string()]);
        child.extend(run.common.timing.flags());
        let runs = run.repeat(&ClientKind::ALL, |kind| {
            let (mut results, _) = on_fresh_server(kind, run, &child, MixedResult::parse)?;
            Ok(results.remove(0))
        })?;
        println!(
            "\n## {n} {} uploads of {} KiB messages, {} callers alternating {high} and {critical} \
             unary calls, {}\n",
            upper(&BULK_TRANSFER),
            BULK_MESSAGE / 1024,
            args.urgent,
            run.common.label()
        );
        println!("{}", table(&runs, &critical, &high));
        let mut rows = Vec::new();
        for kind in ClientKind::ALL {
            let (results, _) = report::of_kind(&runs, kind);
            let median = |f: &dyn Fn(&MixedResult) -> f64| {
                report::spread(results.iter().map(|r| f(r)).collect()).0
            };
            let metrics = [
                (
                    format!("{critical} p99 latency (ms)"),
                    median(&|r| r.critical.p99_us as f64 / 1000.0),
                ),
                (
                    format!("{high} p99 latency (ms)"),
                    median(&|r| r.high.p99_us as f64 / 1000.0),
                ),
                (
                    "urgent calls per second".to_owned(),
                    median(&|r| r.urgent_per_s()),
                ),
                (
                    "bulk MB per second".to_owned(),
                    median(&|r| r.bulk_mb_per_s()),
                ),
            ];
            for (metric, value) in metrics {
                rows.push(report::Row::new(
                    run.scenario,
                    &chart,
                    &format!("{n} bulk"),
                    kind.name(),
                    &metric,
                    value,
                ));
            }
        }
        run.keep(&rows)?;
    }
    Ok(())
}

/// The table of one level: a row per transport; latencies in ms.
fn table(runs: &[Vec<(ClientKind, MixedResult)>], critical: &str, high: &str) -> String {
    let mut columns: Vec<String> = Vec::new();
    columns.push("transport".into());
    for priority in [critical, high] {
        for percentile in ["p50", "p99", "p99.9"] {
            columns.push(format!("{priority} {percentile} ms"));
        }
    }
    columns.extend([
        "urgent calls/s".into(),
        "bulk MB/s".into(),
        format!("{critical} p99 ÷ tonic"),
        format!("{high} p99 ÷ tonic"),
        "urgent calls/s ÷ tonic".into(),
        "bulk MB/s ÷ tonic".into(),
        "errors".into(),
    ]);
    let mut lines = vec![
        report::markdown_row(&columns),
        format!("|{}", "---|".repeat(columns.len())),
    ];
    let ms = |us: u64| us as f64 / 1000.0;
    for kind in ClientKind::ALL {
        let (results, pairs) = report::of_kind(runs, kind);
        if results.is_empty() {
            continue;
        }
        let mut cells = vec![kind.name().to_owned()];
        for latencies in [|r: &MixedResult| r.critical, |r: &MixedResult| r.high] {
            let of = |f: fn(&Latencies) -> u64| -> Vec<f64> {
                results.iter().map(|r| ms(f(&latencies(r)))).collect()
            };
            cells.push(report::cell(of(|l| l.p50_us), 2));
            cells.push(report::cell(of(|l| l.p99_us), 2));
            cells.push(report::cell(of(|l| l.p999_us), 2));
        }
        let ratio = |f: fn(&MixedResult) -> f64| -> Vec<f64> {
            pairs.iter().map(|(m, t)| f(m) / f(t)).collect()
        };
        cells.extend([
            report::cell(results.iter().map(|r| r.urgent_per_s()).collect(), 0),
            report::cell(results.iter().map(|r| r.bulk_mb_per_s()).collect(), 1),
            report::cell(ratio(|r| r.critical.p99_us.max(1) as f64), 2),
            report::cell(ratio(|r| r.high.p99_us.max(1) as f64), 2),
            report::cell(ratio(MixedResult::urgent_per_s), 2),
            report::cell(ratio(MixedResult::bulk_mb_per_s), 2),
            results.iter().map(|r| r.errors).sum::<u64>().to_string(),
        ]);
        lines.push(report::markdown_row(&cells));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use quicrpc::Priority;
    use quicrpc_examples::agents::agent_control_methods::{BULK_TRANSFER, SPAWN, TERMINATE};

    use super::{Latencies, MixedResult, table};
    use crate::transport::ClientKind;

    fn result(critical_p99_us: u64, bulk_bytes: u64) -> MixedResult {
        MixedResult {
            critical: Latencies {
                calls: 1000,
                p50_us: 200,
                p99_us: critical_p99_us,
                p999_us: critical_p99_us * 2,
            },
            high: Latencies {
                calls: 1000,
                p50_us: 300,
                p99_us: 900,
                p999_us: 1500,
            },
            errors: 0,
            urgent_secs: 2.0,
            bulk_bytes,
            bulk_secs: 2.5,
        }
    }

    /// The scenario relies on these priorities from `proto/agents/agents.proto`.
    #[test]
    fn the_methods_have_the_priorities_the_scenario_names() {
        assert_eq!(TERMINATE.priority(), Priority::Critical);
        assert_eq!(SPAWN.priority(), Priority::High);
        assert_eq!(BULK_TRANSFER.priority(), Priority::Bulk);
        assert_eq!(super::upper(&TERMINATE), "CRITICAL");
    }

    #[test]
    fn lines_parse_back_to_what_was_printed() {
        let printed = result(66_000, 1_000_000_000);
        assert_eq!(
            printed.line(),
            "MIXED critical_calls=1000 critical_p50_us=200 critical_p99_us=66000 \
             critical_p999_us=132000 high_calls=1000 high_p50_us=300 high_p99_us=900 \
             high_p999_us=1500 errors=0 urgent_secs=2.000 bulk_bytes=1000000000 bulk_secs=2.500"
        );
        assert_eq!(MixedResult::parse(&printed.line()), Some(printed));
        assert_eq!(printed.urgent_per_s(), 1000.0);
        assert_eq!(printed.bulk_mb_per_s(), 400.0);
    }

    #[test]
    fn other_lines_are_not_results() {
        let line = result(1, 2).line();
        for other in [
            "",
            "RESULT calls=1",
            "STREAM bytes=1 all_bytes=1 secs=1 cpu_ms=1",
            &line.replace("MIXED ", "MIXED"),
            &line.replace(" high_p99_us=900", ""),
            &line.replace("bulk_bytes=2", "bulk_bytes=-2"),
            &line.replace("critical_calls=1000", "critical_calls=many"),
        ] {
            assert_eq!(MixedResult::parse(other), None, "{other}");
        }
    }

    #[test]
    fn tables_divide_by_tonic_and_leave_no_bulk_undivided() {
        let runs = vec![vec![
            (ClientKind::Quic, result(66_000, 1_000_000_000)),
            (ClientKind::Tonic, result(4_000, 2_500_000_000)),
        ]];
        let text = table(&runs, "CRITICAL", "HIGH");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "| transport | CRITICAL p50 ms | CRITICAL p99 ms | CRITICAL p99.9 ms | HIGH p50 ms \
             | HIGH p99 ms | HIGH p99.9 ms | urgent calls/s | bulk MB/s | CRITICAL p99 ÷ tonic \
             | HIGH p99 ÷ tonic | urgent calls/s ÷ tonic | bulk MB/s ÷ tonic | errors |"
        );
        assert!(
            lines[2].starts_with("| quicrpc QUIC | 0.20 [0.20–0.20] | 66.00 [66.00–66.00] |"),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].ends_with(
                "| 16.50 [16.50–16.50] | 1.00 [1.00–1.00] | 1.00 [1.00–1.00] | 0.40 [0.40–0.40] \
                 | 0 |"
            ),
            "{}",
            lines[2]
        );
        // Without bulk uploads there is no bulk ratio to take.
        let idle = vec![vec![
            (ClientKind::Quic, result(300, 0)),
            (ClientKind::Tonic, result(300, 0)),
        ]];
        let text = table(&idle, "CRITICAL", "HIGH");
        assert!(
            text.lines().nth(2).unwrap().ends_with("| — | 0 |"),
            "{text}"
        );
    }
}
