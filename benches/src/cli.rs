//! The command line: the subcommands `compare` runs in its child processes, `chart`, and
//! `compare` itself with its settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::BoxError;
use crate::transport::Cc;
use crate::{agents, chart, load, memory, report, serve, setup, stream};

#[derive(Parser)]
#[command(about = "Unary load: quicrpc over QUIC and TCP against plain tonic")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Serve Greeter until standard input closes; prints `LISTENING <port>`.
    Serve(serve::ServeArgs),
    /// Load a server; prints one `RESULT` line.
    Load(load::LoadArgs),
    /// Connect afresh `count` times (scenario 4); prints one `SETUP` line.
    Setup(setup::SetupArgs),
    /// Stream 64 KiB messages (scenario 3); prints one `STREAM` line.
    Stream(stream::StreamArgs),
    /// Hold streams or connections open (scenario 7); prints `READY`, holds until standard
    /// input closes.
    Hold(memory::HoldArgs),
    /// Run the agents workload (scenario 8); prints an `AGENTS` line per method.
    Agents(agents::AgentsArgs),
    /// Draw an SVG chart per scenario, link and metric from the medians `compare --csv` kept.
    Chart(chart::ChartArgs),
    /// Run a scenario over every transport, in separate pinned processes, repeatedly.
    Compare(Run),
}

/// An emulated link between client and server (quicrpc-netlab), instead of loopback.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct LinkArgs {
    /// One-way delay in ms (RTT = 2x).
    #[arg(long)]
    pub(crate) delay_ms: Option<f64>,
    /// Loss in percent, each direction.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) loss_pct: f64,
    /// Bottleneck rate in Mbit/s.
    #[arg(long)]
    pub(crate) rate_mbit: Option<f64>,
    /// Drop every UDP packet (scenario `fallback`).
    #[arg(long)]
    pub(crate) block_udp: bool,
}

impl LinkArgs {
    pub(crate) fn config(&self) -> Option<quicrpc_netlab::LinkConfig> {
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
    pub(crate) fn label(&self) -> String {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
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

/// What `compare` runs: the scenario and its settings.
#[derive(clap::Args, Debug)]
pub(crate) struct Run {
    #[arg(long, value_enum)]
    pub(crate) scenario: Scenario,
    /// Repetitions (the median and range are reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) reps: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Warm-up seconds per run, not measured.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Calls in flight, comma-separated (scenario `inflight`).
    #[arg(long, value_delimiter = ',', default_value = "1,50,256,1000")]
    pub(crate) concurrency: Vec<usize>,
    /// QUIC congestion controller, both sides (TCP uses the host's).
    #[arg(long, value_enum, default_value_t = Cc::Bbr)]
    pub(crate) cc: Cc,
    /// Bytes in each request's name field.
    #[arg(long, default_value_t = 16)]
    pub(crate) payload: usize,
    /// Streams on the connection, comma-separated (scenario `stream`).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub(crate) streams: Vec<usize>,
    /// Open-loop load as a fraction of what tonic carries closed-loop on this link
    /// (scenario `hol`).
    #[arg(long, default_value_t = 0.3)]
    pub(crate) load_fraction: f64,
    /// Streams or connections held (scenario `memory`).
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    /// Agents at once (scenario `agents`).
    #[arg(long, default_value_t = 100)]
    pub(crate) agents: u64,
    /// Rounds of agents, one after another (scenario `agents`).
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: usize,
    /// Append the medians to this CSV file, for `chart`.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// The servers' limit on calls in flight per connection (their defaults if absent).
    #[arg(long)]
    pub(crate) max_streams: Option<u32>,
    #[command(flatten)]
    pub(crate) link: LinkArgs,
}

impl Run {
    /// The levels of calls in flight (or streams) that get a table each.
    pub(crate) fn levels(&self) -> Vec<usize> {
        match self.scenario {
            Scenario::Inflight => self.concurrency.clone(),
            Scenario::Hol => self.concurrency[..1].to_vec(),
            Scenario::Stream => self.streams.clone(),
            _ => vec![1],
        }
    }

    /// Appends chart rows to the CSV file, if one was asked for.
    pub(crate) fn keep(&self, rows: &[report::Row]) -> Result<(), BoxError> {
        if let Some(csv) = &self.csv {
            report::append_csv(csv, rows)?;
        }
        Ok(())
    }

    pub(crate) fn scenario_name(&self) -> String {
        format!("{:?}", self.scenario).to_lowercase()
    }
}
