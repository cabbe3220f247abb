//! Scenarios 1 and 2: unary calls, closed loop, on one connection: one call in flight
//! (`compare latency`), then each level of calls in flight asked for (`compare inflight`).
//! On loopback bare quinn runs too, echoing requests of the same size.

use crate::BoxError;
use crate::cli::Common;
use crate::compare::Run;
use crate::load::{Requests, measure};
use crate::report;

/// `compare latency`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct LatencyArgs {
    #[command(flatten)]
    pub(crate) requests: Requests,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `compare inflight`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct InflightArgs {
    /// Calls in flight, comma-separated: a table each.
    #[arg(long, value_delimiter = ',', default_value = "1,50,256,1000")]
    pub(crate) concurrency: Vec<usize>,
    #[command(flatten)]
    pub(crate) requests: Requests,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Closed-loop load at each level of calls in flight, `payload` bytes a request.
pub(crate) fn tables(run: &Run, levels: &[usize], payload: usize) -> Result<(), BoxError> {
    for &concurrency in levels {
        let runs = run.repeat(run.with_bare_quinn(), |kind| {
            measure(kind, concurrency, None, payload, run)
        })?;
        println!(
            "{}",
            report::table(&format!("{concurrency} in flight"), &runs)
        );
        run.keep(&report::load_rows(
            run.scenario,
            &run.common.label(),
            &concurrency.to_string(),
            &runs,
        ))?;
        if let Some(lab) = &run.lab {
            let (up, down) = lab.counts();
            println!("link so far: client -> server {up}; server -> client {down}\n");
        }
    }
    Ok(())
}
