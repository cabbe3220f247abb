//! `quicrpc-bench`: quicrpc over QUIC, quicrpc over its TCP fallback, and plain tonic over
//! TCP+TLS (the comparator), measured in the same run, in the scenarios of
//! `docs/benchmarks.md`; on loopback, scenarios 1 to 3 add bare quinn (no framing), the limit
//! of the transport itself.
//!
//! ```text
//! cargo run --release -p quicrpc-benches -- compare latency
//! cargo run --release -p quicrpc-benches -- compare inflight --concurrency 1,50,256,1000
//! cargo run --release -p quicrpc-benches -- compare stream --streams 1,8 --delay-ms 25
//! cargo run --release -p quicrpc-benches -- compare mixed --bulk 0,8,32,128 --urgent 8
//! cargo run --release -p quicrpc-benches -- compare failover --event drain,kill
//! ```
//!
//! `compare SCENARIO` starts each server and each client in its own process, pinned to
//! separate cores with `taskset` (server on core 0, client on core 1), warms up, measures,
//! repeats, and prints Markdown tables: for unary load, calls/s, p50/p99/p99.9 latency and CPU
//! per call as the median of the repetitions with their min and max, and ratios to tonic (and
//! to bare quinn where it ran) computed within each repetition. `serve` and the client
//! subcommands (`load`, `setup`, `stream`, `hold`, `agents`, `mixed`,
//! `failover`) are the halves it runs.
//!
//! Modules: `cli` (the command line), `compare` (the driver), `process` (the child processes,
//! `/proc`), `transport` (what is compared, and the QUIC settings swept), `serve` and `dial`
//! (its servers and clients), `bare` (bare quinn's server and client), `load` (the unary load
//! loops), `report` and `chart` (tables, CSV, SVG); a module per scenario: `inflight` (1 and
//! 2), `stream` (3), `setup` (4 and 6), `hol` (5), `memory` (7), `agents` (8), `mixed`
//! (priority under load), `failover` (fleets).

#[allow(missing_docs, unreachable_pub)] // generated code
mod helloworld {
    quicrpc::include_proto!("helloworld");
}

mod agents;
mod bare;
mod chart;
mod cli;
mod compare;
mod dial;
mod failover;
mod hol;
mod inflight;
mod load;
mod memory;
mod mixed;
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
    let cli = Cli::parse();
    if cli.command.is_plain_tonic() {
        // The generated code is quicrpc-build's for every side; plain tonic's side gets the
        // codec buffers tonic-prost-build's code would give it.
        quicrpc::codegen::use_tonic_buffers();
    }
    match cli.command {
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
        Cmd::Mixed(args) => {
            let result = current_thread()?.block_on(mixed::run(&args))?;
            println!("{}", result.line());
            Ok(())
        }
        Cmd::Agents(args) => current_thread()?.block_on(agents::run(&args)),
        Cmd::Failover(args) => {
            let result = current_thread()?.block_on(failover::run(&args))?;
            println!("{}", result.line());
            Ok(())
        }
        Cmd::Chart(args) => chart::run(&args),
        Cmd::Compare(scenario) => compare::run(&scenario),
    }
}

/// One core per side: each process runs a single-threaded runtime.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
