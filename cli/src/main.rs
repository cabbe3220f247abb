//! `quicrpc`: call, inspect and load-test gRPC services over quicrpc's QUIC wire or plain
//! gRPC over HTTP/2/TCP, from the command line. See `quicrpc --help` and the README's
//! "Command-line tool" section.

mod bench;
mod call;
mod certs;
mod error;
mod input;
mod inspect;
mod schema;
mod target;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::{CliError, EXIT_USAGE};
use quicrpc_schema::escape_keeping_lines;

const EXAMPLES: &str = "\
Examples:
  quicrpc certs --out dev-certs --name localhost
  quicrpc list localhost:50051 --ca dev-certs/ca.pem
  quicrpc describe localhost:50051 quicrpc.testing.Echo --ca dev-certs/ca.pem
  quicrpc call localhost:50051 quicrpc.testing.Echo/Unary -d '{\"message\": \"hi\"}' --ca dev-certs/ca.pem
  quicrpc call localhost:50051 quicrpc.testing.Echo/Bidi -d @requests.jsonl --ca dev-certs/ca.pem
  quicrpc bench localhost:50051 quicrpc.testing.Echo/Unary -d '{}' --concurrency 50 --duration 10s

Exit codes:
  0-16  the call's gRPC status code (0 OK, 5 NOT_FOUND, 14 UNAVAILABLE: also when the
        server cannot be reached or its certificate is refused, ...)
  64    bad arguments or option values (address, header, duration, ...)
  65    input that does not fit: JSON that is not the request message, a .proto that does
        not compile
  66    a file that cannot be read (-d @FILE, --proto, --ca)
  67    unknown service, method or symbol
  73    a file that cannot be written (certs)

Not supported: keeping TLS session tickets on disk, so that a second `quicrpc call` to the
same server could resume with 0-RTT. rustls 0.23 offers no way to serialise a client session
(its session values have no public constructor or encoding); each run starts a full
handshake.";

/// Call, inspect and load-test gRPC services over QUIC (quicrpc's wire) or plain gRPC over
/// HTTP/2/TCP.
#[derive(Debug, Parser)]
#[command(name = "quicrpc", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Calls a method: JSON in (-d), one JSON object per response message out (stdout), the
    /// status on stderr. The exit code is the status code.
    Call(call::CallArgs),
    /// Lists the server's services, or one service's methods.
    List(inspect::ListArgs),
    /// Describes a service, method, message or enum, in .proto syntax.
    Describe(inspect::DescribeArgs),
    /// Load-tests a method: N calls in flight (or R calls/s), then latency percentiles and
    /// the status codes seen.
    Bench(bench::BenchArgs),
    /// Writes a self-signed development CA, a server certificate it signed, and the
    /// certificate's key (PEM).
    Certs(certs::CertsArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; anything else is a usage error (clap's
            // own code, 2, would read as gRPC's UNKNOWN).
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(error::EXIT_CANT_CREATE);
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Background tasks (a connection's driver) need not finish.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A message may quote the server (its status message, a name it sent, a
            // connection error); each part that does is escaped where it is quoted, and
            // this catches what is not.
            let message = e.to_string();
            let message = escape_keeping_lines(&message);
            match &e {
                CliError::Status(_) => eprintln!("status: {message}"),
                _ => eprintln!("error: {message}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Call(args) => call::run(args).await,
        Command::List(args) => inspect::list(args).await,
        Command::Describe(args) => inspect::describe(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Certs(args) => certs::run(&args),
    }
}
