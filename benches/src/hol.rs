//! Scenario 5: head-of-line blocking. 32 calls at most in flight on one connection, Poisson
//! arrivals at a fraction (default 30 %) of what tonic carries closed-loop on the same link,
//! so that latency shows what loss does to calls that share a connection, not queueing
//! behind a saturated link. tonic with a connection per call in flight is the control:
//! TCP without head-of-line blocking between calls.

use quicrpc_netlab::Netlab;

use crate::BoxError;
use crate::cli::Run;
use crate::load::{LoadResult, measure};
use crate::process::Placement;
use crate::report;
use crate::transport::ClientKind;

/// Packets the link has dropped so far, both directions.
fn dropped(lab: &Netlab) -> u64 {
    let (up, down) = lab.counts();
    up.dropped + down.dropped
}

pub(crate) fn tables(run: &Run, place: &Placement, lab: Option<&Netlab>) -> Result<(), BoxError> {
    let concurrency = run.levels()[0];
    let capacity = measure(ClientKind::Tonic, concurrency, None, run, place)?;
    let capacity = capacity.calls as f64 / capacity.secs;
    let rate = capacity * run.load_fraction;
    println!(
        "\ntonic carries {capacity:.0} calls/s closed-loop with {concurrency} in flight on this link; \
         open loop at {rate:.0} calls/s"
    );
    let drops_before = lab.map_or(0, dropped);
    let mut runs: Vec<Vec<(ClientKind, LoadResult)>> = Vec::new();
    for _ in 0..run.reps {
        let mut rep = Vec::new();
        for kind in ClientKind::HOL {
            rep.push((kind, measure(kind, concurrency, Some(rate), run, place)?));
        }
        runs.push(rep);
    }
    let drops = lab.map_or(0, dropped) - drops_before;
    let heading = format!(
        "{} B, {}: at most {concurrency} in flight, {rate:.0} calls/s ({:.0} % of tonic's \
         {capacity:.0}); {drops} packets dropped in the measured runs",
        run.payload,
        run.link.label(),
        run.load_fraction * 100.0
    );
    println!("{}", report::table(&heading, &runs));
    let rtt_ms = run.link.delay_ms.unwrap_or(0.0) * 2.0;
    run.keep(&report::load_rows(
        &run.scenario_name(),
        &format!("{} B; RTT {rtt_ms} ms", run.payload),
        &format!("loss {} %", run.link.loss_pct),
        &runs,
    ))
}
