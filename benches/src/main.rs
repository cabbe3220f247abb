//! `quicrpc-bench`: unary load against quicrpc over QUIC, quicrpc over its TCP fallback, and
//! plain tonic over TCP+TLS (the comparator), measured in the same run.
//!
//! ```text
//! cargo run --release -p quicrpc-benches -- compare --scenario latency
//! cargo run --release -p quicrpc-benches -- compare --scenario inflight --concurrency 1,50,256,1000
//! ```
//!
//! `compare` starts each server and each client in its own process, pinned to separate cores
//! with `taskset` (server on core 0, client on core 1), warms up, measures, repeats, and
//! prints a Markdown table per scenario: calls/s, p50/p99/p99.9 latency and CPU per call as
//! the median of the repetitions with their min and max, and ratios to tonic computed within
//! each repetition. `serve` and `load` are the two halves it runs.

#[allow(missing_docs, unreachable_pub)] // generated code
mod helloworld {
    quicrpc::include_proto!("helloworld");
}

mod agents;
mod chart;
mod cli;
mod compare;
mod dial;
mod hol;
mod inflight;
mod load;
mod memory;
mod process;
mod report;
mod serve;
mod setup;
mod stream;
mod transport;

use clap::Parser;

use cli::{Cli, Cmd};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    match Cli::parse().command {
        Cmd::Serve(args) => current_thread()?.block_on(serve::serve(&args)),
        Cmd::Setup(args) => current_thread()?.block_on(setup::connect(&args)),
        Cmd::Load(args) => {
            let result = current_thread()?.block_on(load::load(&args))?;
            println!("{}", result.line());
            Ok(())
        }
        Cmd::Stream(args) => {
            let result = current_thread()?.block_on(stream::run(&args))?;
            println!("{}", result.line());
            Ok(())
        }
        Cmd::Hold(args) => current_thread()?.block_on(memory::hold(&args)),
        Cmd::Agents(args) => current_thread()?.block_on(agents::run(&args)),
        Cmd::Chart(args) => chart::run(&args),
        Cmd::Compare(run) => compare::compare(&run),
    }
}

/// One core per side: each process runs a single-threaded runtime.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
