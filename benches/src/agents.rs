//! Scenario 8: the agents demo's workload (`quicrpc_examples::workload`, the same code the
//! `agents` example runs) over each transport: `rounds` times, `agents` agents at once, each
//! living a whole life of calls of mixed priority. Prints the latency of each method.

use std::io::Write;

use quicrpc_examples::agents::agent_control_client::AgentControlClient;
use quicrpc_examples::agents::agent_control_methods;
use quicrpc_examples::workload::{Stats, run_agent};

use crate::BoxError;
use crate::cli::Common;
use crate::compare::Run;
use crate::dial::{Dialed, GrpcChannel, Target, dial};
use crate::process::{on_fresh_server, parse_fields};
use crate::report;
use crate::transport::ClientKind;

/// How many agents live, and how often: the `agents` subcommand's flags, and `compare
/// agents`'s.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Workload {
    /// Agents alive at once in each round.
    #[arg(long, default_value_t = 100)]
    pub(crate) agents: u64,
    /// Rounds, one after another (more samples per method).
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: usize,
}

/// The `agents` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct AgentsArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    #[command(flatten)]
    pub(crate) workload: Workload,
}

/// `compare agents`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CompareArgs {
    #[command(flatten)]
    pub(crate) workload: Workload,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// One method's latencies over a run.
#[derive(Clone, Debug)]
pub(crate) struct MethodResult {
    /// The method's name (`Spawn`).
    pub(crate) method: String,
    pub(crate) calls: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
}

/// A line of the `agents` subcommand's output.
#[derive(Clone, Debug)]
enum Line {
    Method(MethodResult),
    /// Agents whose life failed.
    Errors(u64),
}

impl Line {
    fn parse(line: &str) -> Option<Self> {
        if let Some(fields) = parse_fields(line, "AGENTS_ERRORS ") {
            return Some(Self::Errors(fields.get("n")?.parse().ok()?));
        }
        let fields = parse_fields(line, "AGENTS ")?;
        Some(Self::Method(MethodResult {
            method: (*fields.get("method")?).to_owned(),
            calls: fields.get("calls")?.parse().ok()?,
            p50_us: fields.get("p50_us")?.parse().ok()?,
            p99_us: fields.get("p99_us")?.parse().ok()?,
        }))
    }
}

/// Runs the workload and prints an `AGENTS` line per method, and `AGENTS_ERRORS n=N`.
pub(crate) async fn run(args: &AgentsArgs) -> Result<(), BoxError> {
    let stats = Stats::default();
    let errors = match dial(&args.target).await? {
        Dialed::Quicrpc(channel) => rounds(channel, &args.workload, &stats).await,
        Dialed::Tonic(channel) => rounds(channel, &args.workload, &stats).await,
    };
    let mut out = std::io::stdout().lock();
    for info in agent_control_methods::ALL {
        let Some(h) = stats.histogram(info.path()) else {
            continue;
        };
        let method = info.path().rsplit('/').next().unwrap_or_default();
        writeln!(
            out,
            "AGENTS method={method} calls={} p50_us={} p99_us={}",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        )?;
    }
    writeln!(out, "AGENTS_ERRORS n={errors}")?;
    out.flush()?;
    Ok(())
}

/// The rounds; returns how many agents failed.
async fn rounds<T: GrpcChannel>(channel: T, args: &Workload, stats: &Stats) -> usize {
    let mut errors = 0;
    for round in 0..args.rounds as u64 {
        let agents = (0..args.agents).map(|n| {
            let client = AgentControlClient::new(channel.clone());
            tokio::spawn(run_agent(client, stats.clone(), round * args.agents + n))
        });
        for agent in futures_util::future::join_all(agents).await {
            if !matches!(agent, Ok(Ok(()))) {
                errors += 1;
            }
        }
    }
    errors
}

/// Per repetition, per transport: the methods' results; and how many agents failed in all.
type Runs = (Vec<Vec<(ClientKind, Vec<MethodResult>)>>, u64);

/// The workload on each transport against a fresh server, `reps` times.
fn measure(run: &Run, workload: &Workload) -> Result<Runs, BoxError> {
    let (agents, rounds) = (workload.agents.to_string(), workload.rounds.to_string());
    let args = ["agents", "--agents", &agents, "--rounds", &rounds];
    let mut errors = 0;
    let runs = run.repeat(&ClientKind::ALL, |kind| {
        let (lines, _) = on_fresh_server(kind, run, &args, Line::parse)?;
        let mut methods = Vec::new();
        for line in lines {
            match line {
                Line::Method(m) => methods.push(m),
                Line::Errors(n) => errors += n,
            }
        }
        Ok(methods)
    })?;
    Ok((runs, errors))
}

/// `compare agents`: per method, p50 and p99 on each transport, and the p99 ratio to tonic
/// within each repetition.
pub(crate) fn tables(run: &Run, workload: &Workload) -> Result<(), BoxError> {
    let (runs, errors) = measure(run, workload)?;
    let result = |rep: &Vec<(ClientKind, Vec<MethodResult>)>, kind, method: &str| {
        rep.iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, ms)| ms.iter().find(|m| m.method == method))
            .cloned()
    };
    println!(
        "\n## agents: {} rounds of {} agents, {}; {errors} agents failed\n",
        workload.rounds,
        workload.agents,
        run.common.label()
    );
    println!(
        "| method | priority | calls per run | QUIC p50 ms | QUIC p99 ms | TCP fallback p99 ms | tonic p50 ms | tonic p99 ms | p99 QUIC ÷ tonic |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for info in agent_control_methods::ALL {
        let method = info.path().rsplit('/').next().unwrap_or_default();
        let ms = |kind, p99: bool| -> Vec<f64> {
            runs.iter()
                .filter_map(|rep| result(rep, kind, method))
                .map(|m| (if p99 { m.p99_us } else { m.p50_us }) as f64 / 1000.0)
                .collect()
        };
        let ratios: Vec<f64> = runs
            .iter()
            .filter_map(|rep| {
                let quic = result(rep, ClientKind::Quic, method)?;
                let tonic = result(rep, ClientKind::Tonic, method)?;
                Some(quic.p99_us as f64 / tonic.p99_us.max(1) as f64)
            })
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let calls = runs
            .first()
            .and_then(|rep| result(rep, ClientKind::Quic, method))
            .map_or(0, |m| m.calls);
        println!(
            "| {method} | {} | {calls} | {} | {} | {} | {} | {} | {} |",
            info.priority().as_str(),
            report::cell(ms(ClientKind::Quic, false), 1),
            report::cell(ms(ClientKind::Quic, true), 1),
            report::cell(ms(ClientKind::QuicrpcTcp, true), 1),
            report::cell(ms(ClientKind::Tonic, false), 1),
            report::cell(ms(ClientKind::Tonic, true), 1),
            report::cell(ratios, 2),
        );
        for kind in ClientKind::ALL {
            rows.push(report::Row::new(
                run.scenario,
                &run.common.label(),
                method,
                kind.name(),
                "p99 latency (ms)",
                report::spread(ms(kind, true)).0,
            ));
        }
    }
    run.keep(&rows)
}
