//! Scenario 5: head-of-line blocking. At most `--concurrency` calls in flight on one connection
//! (32 in docs/benchmarks.md), Poisson arrivals at a fraction (default 30 %) of what tonic
//! carries closed-loop on the same link, so that latency shows what loss does to calls that
//! share a connection, not queueing behind a saturated link. tonic with a connection per call
//! in flight is the control: TCP without head-of-line blocking between calls.

use quicrpc_netlab::Netlab;

use crate::BoxError;
use crate::cli::Common;
use crate::compare::Run;
use crate::load::{Requests, measure};
use crate::report;
use crate::transport::ClientKind;

/// `compare hol`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CompareArgs {
    /// The most calls in flight on the one connection (open loop).
    #[arg(long, default_value_t = 1)]
    pub(crate) concurrency: usize,
    /// Open-loop load as a fraction of what tonic carries closed-loop on this link.
    #[arg(long, default_value_t = 0.3)]
    pub(crate) load_fraction: f64,
    #[command(flatten)]
    pub(crate) requests: Requests,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Packets the link has dropped so far, both directions.
fn dropped(lab: &Netlab) -> u64 {
    let (up, down) = lab.counts();
    up.dropped + down.dropped
}

/// tonic's closed-loop capacity, then each transport in open loop at a fraction of it.
pub(crate) fn tables(run: &Run, args: &CompareArgs) -> Result<(), BoxError> {
    let (concurrency, payload) = (args.concurrency, args.requests.payload);
    let capacity = measure(ClientKind::Tonic, concurrency, None, payload, run)?;
    let capacity = capacity.calls as f64 / capacity.secs;
    let rate = capacity * args.load_fraction;
    println!(
        "\ntonic carries {capacity:.0} calls/s closed-loop with {concurrency} in flight on this link; \
         open loop at {rate:.0} calls/s"
    );
    let lab = run.lab.as_ref();
    let drops_before = lab.map_or(0, dropped);
    let runs = run.repeat(&ClientKind::HOL, |kind| {
        measure(kind, concurrency, Some(rate), payload, run)
    })?;
    let drops = lab.map_or(0, dropped) - drops_before;
    let link = &run.common.link;
    let heading = format!(
        "{payload} B, {}: at most {concurrency} in flight, {rate:.0} calls/s ({:.0} % of tonic's \
         {capacity:.0}); {drops} packets dropped in the measured runs",
        run.common.label(),
        args.load_fraction * 100.0
    );
    println!("{}", report::table(&heading, &runs));
    let rtt_ms = link.delay_ms.unwrap_or(0.0) * 2.0;
    run.keep(&report::load_rows(
        run.scenario,
        &run.common
            .with_windows(format!("{payload} B; RTT {rtt_ms} ms")),
        &format!("loss {} %", link.loss_pct),
        &runs,
    ))
}
