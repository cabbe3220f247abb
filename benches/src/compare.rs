//! `compare`: one scenario over every transport. It writes a certificate, starts the emulated
//! link if one is asked for, prints a header line, runs the scenario's tables, and prints what
//! the link carried and dropped.

use std::path::PathBuf;
use std::process::Command;

use quicrpc_netlab::Netlab;

use crate::BoxError;
use crate::cli::{Common, Scenario};
use crate::process::Placement;
use crate::report;
use crate::transport::ClientKind;
use crate::{agents, failover, hol, inflight, memory, mixed, setup, stream};

/// A `compare` run under way: its settings, where its processes run, and its link.
pub(crate) struct Run {
    pub(crate) common: Common,
    /// The scenario's name, for the CSV rows.
    pub(crate) scenario: &'static str,
    pub(crate) place: Placement,
    /// The emulated link, if any.
    pub(crate) lab: Option<Netlab>,
}

impl Run {
    /// Appends chart rows to the CSV file, if one was asked for.
    pub(crate) fn keep(&self, rows: &[report::Row]) -> Result<(), BoxError> {
        if let Some(csv) = &self.common.csv {
            report::append_csv(csv, rows)?;
        }
        Ok(())
    }

    /// The transports of scenarios 1 to 3: the three, gRPC over HTTP/3, and bare quinn on
    /// loopback. Bare quinn not over an emulated link: there its own defaults (CUBIC, its
    /// windows) would be measured against quicrpc's settings rather than the cost of its
    /// framing.
    pub(crate) fn with_bare_quinn(&self) -> &'static [ClientKind] {
        if self.lab.is_none() {
            &ClientKind::WITH_QUINN
        } else {
            &ClientKind::WITH_H3
        }
    }

    /// `measure` of each transport in `kinds`, `reps` times over: per repetition, each
    /// transport's result, in the order they ran.
    pub(crate) fn repeat<T>(
        &self,
        kinds: &[ClientKind],
        mut measure: impl FnMut(ClientKind) -> Result<T, BoxError>,
    ) -> Result<Vec<Vec<(ClientKind, T)>>, BoxError> {
        let mut runs = Vec::with_capacity(self.common.reps);
        for _ in 0..self.common.reps {
            let mut rep = Vec::with_capacity(kinds.len());
            for &kind in kinds {
                rep.push((kind, measure(kind)?));
            }
            runs.push(rep);
        }
        Ok(runs)
    }
}

/// Runs `scenario`, printing its tables.
pub(crate) fn run(scenario: &Scenario) -> Result<(), BoxError> {
    let common = scenario.common();
    if let Some(cc) = &common.tcp_cc {
        let _ = crate::process::TCP_CC_FOR_CHILDREN.set(cc.clone());
    }
    let certs = write_certs()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pin = cores >= 2 && Command::new("taskset").arg("-V").output().is_ok();
    let lab = match common.link.config() {
        Some(config) => Some(Netlab::start(config)?),
        None => None,
    };
    let run = Run {
        common: common.clone(),
        scenario: scenario.name(),
        place: Placement::new(certs.clone(), pin, lab.as_ref()),
        lab,
    };
    println!("{}", header(scenario, pin));
    let result = match scenario {
        Scenario::Latency(args) => inflight::tables(&run, &[1], args.requests.payload),
        Scenario::Inflight(args) => {
            inflight::tables(&run, &args.concurrency, args.requests.payload)
        }
        Scenario::Stream(args) => stream::tables(&run, &args.streams),
        Scenario::Setup(_) => setup::table(&run, &setup::SetupMode::ALL),
        Scenario::Hol(args) => hol::tables(&run, args),
        Scenario::Fallback(_) => setup::table(&run, &setup::SetupMode::FALLBACK),
        Scenario::Memory(args) => memory::tables(&run, args.count),
        Scenario::Agents(args) => agents::tables(&run, &args.workload),
        Scenario::Mixed(args) => mixed::tables(&run, args),
        Scenario::Failover(args) => failover::tables(&run, args),
    };
    if let Some(lab) = &run.lab {
        let (up, down) = lab.counts();
        println!("\nlink: client -> server {up}; server -> client {down}");
    }
    let _ = std::fs::remove_dir_all(&certs);
    result
}

/// A fresh self-signed certificate for the servers (cert.pem, key.pem) and its CA for the
/// clients (ca.pem), in a directory of this process's own.
fn write_certs() -> Result<PathBuf, BoxError> {
    let certs = std::env::temp_dir().join(format!("quicrpc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&certs)?;
    let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
    std::fs::write(certs.join("cert.pem"), cert.cert_pem())?;
    std::fs::write(certs.join("key.pem"), cert.key_pem())?;
    std::fs::write(certs.join("ca.pem"), cert.ca_pem())?;
    Ok(certs)
}

/// The line above the tables: the scenario and every setting it ran with.
fn header(scenario: &Scenario, pin: bool) -> String {
    let common = scenario.common();
    let link = match &common.link.config() {
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
    // "Latency", as the scenario was once printed with `{:?}`.
    let mut title = scenario.name().to_owned();
    title[..1].make_ascii_uppercase();
    let mut windows = match common.windows.label() {
        none if none.is_empty() => none,
        windows => format!("; quicrpc with {windows}"),
    };
    if let Some(cc) = &common.tcp_cc {
        windows.push_str(&format!("; TCP congestion control {cc} (both ends)"));
    }
    format!(
        "# {title}: {} repetitions of {} s (+{} s warm-up); {link}; QUIC congestion control {:?}{windows}; {}-byte requests; {}",
        common.reps,
        common.timing.duration,
        common.timing.warmup,
        common.cc,
        scenario.payload(),
        if pin {
            "server pinned to core 0, client to core 1"
        } else {
            "not pinned (taskset or a second core missing)"
        }
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::header;
    use crate::cli::{Cli, Cmd};

    fn header_of(line: &str, pin: bool) -> String {
        let words = ["quicrpc-bench", "compare"]
            .into_iter()
            .chain(line.split_whitespace());
        match Cli::parse_from(words).command {
            Cmd::Compare(scenario) => header(&scenario, pin),
            _ => unreachable!("compare parses as compare"),
        }
    }

    /// The header reads as it did when the scenario was a `--scenario` value.
    #[test]
    fn header_names_the_scenario_and_its_settings() {
        assert_eq!(
            header_of("latency --reps 1 --duration 1 --warmup 0.2", true),
            "# Latency: 1 repetitions of 1 s (+0.2 s warm-up); loopback; QUIC congestion control \
             Bbr; 16-byte requests; server pinned to core 0, client to core 1"
        );
        assert_eq!(
            header_of(
                "hol --payload 1024 --delay-ms 25 --loss-pct 1 --cc cubic",
                false
            ),
            "# Hol: 5 repetitions of 5 s (+1 s warm-up); emulated link: RTT 50ms, loss 1 % each \
             way, rate unlimited; QUIC congestion control Cubic; 1024-byte requests; not pinned \
             (taskset or a second core missing)"
        );
        assert_eq!(
            header_of(
                "stream --reps 1 --stream-window 8388608 --send-window 268435456",
                true
            ),
            "# Stream: 1 repetitions of 5 s (+1 s warm-up); loopback; QUIC congestion control \
             Bbr; quicrpc with stream window 8388608 B; send window 268435456 B; 16-byte \
             requests; \
             server pinned to core 0, client to core 1"
        );
    }
}
