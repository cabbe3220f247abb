//! The command line: `compare` with a subcommand per scenario, `chart`, and the subcommands
//! `compare` runs in its child processes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::transport::{Cc, ClientKind, ServerKind, Windows};
use crate::{agents, chart, failover, hol, inflight, load, memory, mixed, serve, setup, stream};

#[derive(Parser)]
#[command(
    about = "Benchmarks: quicrpc over QUIC and over its TCP fallback against plain tonic",
    after_help = "serve, load, setup, stream, hold, agents, mixed and failover are what compare runs in \
                  its child processes."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run a scenario over every transport, in separate pinned processes, repeatedly.
    #[command(
        subcommand,
        subcommand_value_name = "SCENARIO",
        subcommand_help_heading = "Scenarios",
        disable_help_subcommand = true
    )]
    Compare(Scenario),
    /// Draw an SVG chart per scenario, link and metric from the medians that
    /// `compare SCENARIO --csv` kept.
    Chart(chart::ChartArgs),
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
    /// Run bulk uploads and urgent calls on one connection (scenario `mixed`); prints one
    /// `MIXED` line.
    Mixed(mixed::MixedArgs),
    /// Call three servers through a balanced channel while the parent drains or kills one
    /// (scenario `failover`); prints `READY`, then one `FAILOVER` line.
    Failover(failover::FailoverArgs),
}

impl Cmd {
    /// Whether this process is plain tonic's side of a comparison: tonic's server, or a
    /// client on tonic's own channel.
    pub(crate) fn is_plain_tonic(&self) -> bool {
        let tonic = |kind: ClientKind| matches!(kind, ClientKind::Tonic | ClientKind::TonicPool);
        match self {
            Cmd::Serve(args) => matches!(args.server, ServerKind::Tonic),
            Cmd::Setup(args) => matches!(args.mode, setup::SetupMode::Tonic),
            Cmd::Load(args) => tonic(args.target.client),
            Cmd::Stream(args) => tonic(args.target.client),
            Cmd::Hold(args) => tonic(args.target.client),
            Cmd::Agents(args) => tonic(args.target.client),
            Cmd::Mixed(args) => tonic(args.target.client),
            Cmd::Failover(args) => tonic(args.client),
            Cmd::Compare(_) | Cmd::Chart(_) => false,
        }
    }
}

/// `compare`'s scenarios, each with its own flags and the common ones.
#[derive(Subcommand)]
pub(crate) enum Scenario {
    /// Scenario 1: one call in flight, loopback.
    Latency(inflight::LatencyArgs),
    /// Scenario 2: N calls in flight on one connection, loopback.
    Inflight(inflight::InflightArgs),
    /// Scenario 3: streaming throughput, 64 KiB messages on 1 or more streams.
    Stream(stream::CompareArgs),
    /// Scenario 4: time from a fresh connection to the first response (use with a link).
    Setup(Common),
    /// Scenario 5: head-of-line blocking: open-loop load at a fraction of tonic's capacity.
    Hol(hol::CompareArgs),
    /// Scenario 6: time to the first response when UDP is blocked (use with `--block-udp`).
    Fallback(Common),
    /// Scenario 7: resident memory with many streams, or many idle connections.
    Memory(memory::CompareArgs),
    /// Scenario 8: the agents workload, latency per method.
    Agents(agents::CompareArgs),
    /// Priority under load: BULK uploads and CRITICAL/HIGH unary calls on one connection.
    Mixed(mixed::CompareArgs),
    /// Fleets: a balanced client over three servers while one is drained or killed.
    Failover(failover::CompareArgs),
}

impl Scenario {
    /// The subcommand's name, as the header and the CSV rows name the scenario.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Latency(_) => "latency",
            Self::Inflight(_) => "inflight",
            Self::Stream(_) => "stream",
            Self::Setup(_) => "setup",
            Self::Hol(_) => "hol",
            Self::Fallback(_) => "fallback",
            Self::Memory(_) => "memory",
            Self::Agents(_) => "agents",
            Self::Mixed(_) => "mixed",
            Self::Failover(_) => "failover",
        }
    }

    /// The settings every scenario takes.
    pub(crate) fn common(&self) -> &Common {
        match self {
            Self::Latency(args) => &args.common,
            Self::Inflight(args) => &args.common,
            Self::Stream(args) => &args.common,
            Self::Setup(common) | Self::Fallback(common) => common,
            Self::Hol(args) => &args.common,
            Self::Memory(args) => &args.common,
            Self::Agents(args) => &args.common,
            Self::Mixed(args) => &args.common,
            Self::Failover(args) => &args.common,
        }
    }

    /// Bytes in each unary request's name field: the scenario's `--payload`, or the load
    /// generator's default for the scenarios without one (the header line states it for
    /// every scenario).
    pub(crate) fn payload(&self) -> usize {
        match self {
            Self::Latency(args) => args.requests.payload,
            Self::Inflight(args) => args.requests.payload,
            Self::Hol(args) => args.requests.payload,
            _ => load::DEFAULT_PAYLOAD,
        }
    }
}

/// The settings every scenario of `compare` takes.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Common options")]
pub(crate) struct Common {
    /// Repetitions (the median and range are reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) reps: usize,
    #[command(flatten)]
    pub(crate) timing: Timing,
    /// QUIC congestion controller, both sides (TCP uses the host's).
    #[arg(long, value_enum, default_value_t = Cc::Bbr)]
    pub(crate) cc: Cc,
    /// The servers' limit on calls in flight per connection (their defaults if absent).
    #[arg(long)]
    pub(crate) max_streams: Option<u32>,
    #[command(flatten)]
    pub(crate) windows: Windows,
    /// TCP congestion controller (Linux name, e.g. cubic) of every TCP transport, both ends:
    /// quicrpc's TCP side through its builders, tonic's sockets directly (the host's if
    /// absent). Scenarios that connect through `dial` and `serve` only (not setup, failover).
    #[arg(long, value_name = "NAME")]
    pub(crate) tcp_cc: Option<String>,
    /// Append the medians to this CSV file, for `chart`.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) link: LinkArgs,
}

impl Common {
    /// What names a table and a chart: the link, and the QUIC windows where they are not
    /// quicrpc's defaults.
    pub(crate) fn label(&self) -> String {
        self.with_windows(self.link.label())
    }

    /// `label`, followed by the QUIC windows where they are not quicrpc's defaults.
    pub(crate) fn with_windows(&self, label: String) -> String {
        let windows = self.windows.label();
        if windows.is_empty() {
            label
        } else {
            format!("{label}; {windows}")
        }
    }
}

/// How long each run warms up and measures: `compare`'s flags, and those of the client
/// subcommands that it passes them on to.
#[derive(clap::Args, Clone, Copy, Debug, PartialEq)]
pub(crate) struct Timing {
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Warm-up seconds per run, not measured.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
}

impl Timing {
    /// The flags that give a client subcommand this timing.
    pub(crate) fn flags(&self) -> [String; 4] {
        [
            "--duration".into(),
            self.duration.to_string(),
            "--warmup".into(),
            self.warmup.to_string(),
        ]
    }

    /// When the warm-up that starts now ends.
    pub(crate) fn warmup_end(&self) -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs_f64(self.warmup)
    }

    /// When the measurement that starts now ends.
    pub(crate) fn measured_end(&self) -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs_f64(self.duration)
    }
}

/// An emulated link between client and server (quicrpc-netlab), instead of loopback.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Emulated link (loopback if none is given)")]
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

/// How `value` is spelt on the command line (`ClientKind::QuicrpcTcp` as "quicrpc-tcp"):
/// what the driver writes for its children, who parse it back.
pub(crate) fn arg<T: ValueEnum>(value: T) -> String {
    // Only a variant marked `#[value(skip)]` has none, and none is.
    let value = value.to_possible_value().expect("every variant has a name");
    value.get_name().to_owned()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Cmd, Scenario, arg};
    use crate::memory::Held;
    use crate::setup::SetupMode;
    use crate::transport::{Cc, ClientKind, ServerKind, Windows};

    fn scenario(line: &str) -> Result<Scenario, clap::Error> {
        let words = ["quicrpc-bench", "compare"]
            .into_iter()
            .chain(line.split_whitespace());
        match Cli::try_parse_from(words)?.command {
            Cmd::Compare(scenario) => Ok(scenario),
            _ => unreachable!("compare parses as compare"),
        }
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn values_are_spelt_as_the_children_parse_them() {
        assert_eq!(arg(ClientKind::QuicrpcTcp), "quicrpc-tcp");
        assert_eq!(arg(ServerKind::Quicrpc), "quicrpc");
        assert_eq!(arg(Cc::NewReno), "new-reno");
        assert_eq!(arg(SetupMode::Quic0rtt), "quic0rtt");
        assert_eq!(arg(Held::Connections), "connections");
        assert_eq!(arg(ClientKind::Quinn), "quinn");
        assert_eq!(arg(ServerKind::Quinn), "quinn");
    }

    #[test]
    fn each_scenario_takes_its_own_flags_and_the_common_ones() {
        for line in [
            "latency --reps 1 --duration 1 --warmup 0.2",
            "latency --payload 1024 --delay-ms 25 --loss-pct 1",
            "inflight --reps 1 --duration 1 --warmup 0.2 --concurrency 50",
            "inflight --concurrency 32 --cc cubic --payload 1024 --csv x.csv",
            "stream --streams 1,8 --rate-mbit 100 --delay-ms 25",
            "setup --reps 5 --delay-ms 25",
            "hol --concurrency 32 --payload 4096 --load-fraction 0.3 --loss-pct 3",
            "fallback --delay-ms 25 --block-udp",
            "memory --count 1000 --max-streams 100",
            "agents --agents 10 --rounds 2 --delay-ms 25 --loss-pct 1",
            "latency --stream-window 8388608 --conn-window 268435456 --send-window 268435456",
            "inflight --concurrency 50 --send-window 18446744073709551615",
            "stream --streams 1 --conn-window 4294967295",
            "setup --stream-window 1",
            "hol --conn-window 1048576",
            "fallback --send-window 0 --block-udp",
            "memory --stream-window 65536",
            "agents --conn-window 268435456",
            "mixed --bulk 0,8 --reps 1 --duration 2",
            "mixed --bulk 32 --urgent 4 --stream-window 8388608 --send-window 268435456",
        ] {
            assert!(scenario(line).is_ok(), "{line}");
        }
    }

    #[test]
    fn another_scenarios_flags_are_refused() {
        for line in [
            "latency --concurrency 50",
            "inflight --streams 8",
            "stream --concurrency 50",
            "stream --payload 1024",
            "setup --count 10",
            "hol --concurrency 1,50",
            "fallback --payload 64",
            "memory --agents 10",
            "agents --count 10",
            "mixed --streams 8",
            "mixed --bulk many",
            "mixed --urgent 1,2",
            "latency --bulk 8",
            "stream --urgent 8",
            "--scenario latency",
            // Windows are bytes, within quinn's types: u32 for the receive windows.
            "latency --stream-window 4294967296",
            "latency --conn-window -1",
            "latency --send-window 8MiB",
            "latency --stream-window",
        ] {
            assert!(scenario(line).is_err(), "{line}");
        }
    }

    #[test]
    fn windows_are_parsed_and_absent_by_default() {
        for (line, stream, conn, send) in [
            ("latency", None, None, None),
            (
                "latency --stream-window 8388608",
                Some(8_388_608),
                None,
                None,
            ),
            (
                "inflight --conn-window 268435456",
                None,
                Some(268_435_456),
                None,
            ),
            (
                "stream --send-window 268435456 --stream-window 1",
                Some(1),
                None,
                Some(268_435_456),
            ),
        ] {
            let windows = scenario(line).unwrap().common().windows;
            let want = Windows {
                stream_window: stream,
                conn_window: conn,
                send_window: send,
                max_udp_payload: None,
            };
            assert_eq!(windows, want, "{line}");
        }
    }

    /// What `compare` writes for its children, each child parses back to the same windows.
    #[test]
    fn windows_reach_every_child_as_they_were_given() {
        let given = scenario(
            "latency --stream-window 8388608 --conn-window 268435456 --send-window 268435457 \
             --max-udp-payload 1452",
        )
        .unwrap()
        .common()
        .windows;
        assert_eq!(
            given.flags().join(" "),
            "--stream-window 8388608 --conn-window 268435456 --send-window 268435457 \
             --max-udp-payload 1452"
        );
        let address = "--port 1 --certs d";
        for child in [
            "serve --server quicrpc --certs d".to_owned(),
            format!("load --client quic {address}"),
            format!("stream --client quic {address}"),
            format!("agents --client quic {address}"),
            format!("hold --client quic --what streams {address}"),
            format!("setup --mode quic-cold {address}"),
            format!("mixed --client quic --bulk 8 {address}"),
        ] {
            let words = ["quicrpc-bench"]
                .into_iter()
                .chain(child.split_whitespace())
                .map(str::to_owned)
                .chain(given.flags());
            let parsed = match Cli::try_parse_from(words).expect(&child).command {
                Cmd::Serve(args) => args.windows,
                Cmd::Load(args) => args.target.windows,
                Cmd::Stream(args) => args.target.windows,
                Cmd::Agents(args) => args.target.windows,
                Cmd::Hold(args) => args.target.windows,
                Cmd::Setup(args) => args.windows,
                Cmd::Mixed(args) => args.target.windows,
                _ => unreachable!("{child}"),
            };
            assert_eq!(parsed, given, "{child}");
        }
        assert!(Windows::default().flags().is_empty());
    }

    #[test]
    fn labels_name_the_windows_only_when_set() {
        for (line, label) in [
            ("latency", "loopback"),
            (
                "latency --stream-window 8388608",
                "loopback; stream window 8388608 B",
            ),
            (
                "hol --delay-ms 25 --conn-window 1 --send-window 2",
                "RTT 50 ms; connection window 1 B; send window 2 B",
            ),
        ] {
            assert_eq!(scenario(line).unwrap().common().label(), label, "{line}");
        }
    }

    #[test]
    fn levels_and_defaults_are_as_before() {
        let Scenario::Inflight(args) = scenario("inflight").unwrap() else {
            unreachable!()
        };
        assert_eq!(args.concurrency, [1, 50, 256, 1000]);
        assert_eq!(args.requests.payload, 16);
        assert_eq!(args.common.reps, 5);
        let Scenario::Stream(args) = scenario("stream").unwrap() else {
            unreachable!()
        };
        assert_eq!(args.streams, [1, 8]);
        let Scenario::Hol(args) = scenario("hol").unwrap() else {
            unreachable!()
        };
        assert_eq!((args.concurrency, args.load_fraction), (1, 0.3));
        assert_eq!(scenario("memory").unwrap().payload(), 16);
        let Scenario::Mixed(args) = scenario("mixed").unwrap() else {
            unreachable!()
        };
        assert_eq!((args.bulk, args.urgent), (vec![0, 8, 32, 128], 8));
    }
}
