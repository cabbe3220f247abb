//! `compare`: one scenario over every transport. It writes a certificate, starts the emulated
//! link if one is asked for, prints a header line, runs the scenario's tables, and prints what
//! the link carried and dropped.

use std::path::PathBuf;
use std::process::Command;

use quicrpc_netlab::Netlab;

use crate::BoxError;
use crate::cli::{Run, Scenario};
use crate::process::Placement;
use crate::{agents, hol, inflight, memory, setup, stream};

pub(crate) fn compare(run: &Run) -> Result<(), BoxError> {
    let certs = write_certs()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pin = cores >= 2 && Command::new("taskset").arg("-V").output().is_ok();
    let lab = match run.link.config() {
        Some(config) => Some(Netlab::start(config)?),
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
    println!("{}", header(run, pin));
    let result = match run.scenario {
        Scenario::Latency | Scenario::Inflight => inflight::tables(run, &place, lab.as_ref()),
        Scenario::Hol => hol::tables(run, &place, lab.as_ref()),
        Scenario::Stream => stream::tables(run, &place),
        Scenario::Setup => setup::table(run, &place, &setup::SetupMode::ALL),
        Scenario::Fallback => setup::table(run, &place, &setup::SetupMode::FALLBACK),
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
fn header(run: &Run, pin: bool) -> String {
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
    format!(
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
    )
}
