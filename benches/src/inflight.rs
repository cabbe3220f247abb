//! Scenarios 1 and 2: unary calls, closed loop, on one connection: one call in flight
//! (`latency`), then each level of calls in flight asked for (`inflight`).

use quicrpc_netlab::Netlab;

use crate::BoxError;
use crate::cli::Run;
use crate::load::{LoadResult, measure};
use crate::process::Placement;
use crate::report;
use crate::transport::ClientKind;

/// Scenarios 1 and 2: closed-loop load at each level of calls in flight.
pub(crate) fn tables(run: &Run, place: &Placement, lab: Option<&Netlab>) -> Result<(), BoxError> {
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
