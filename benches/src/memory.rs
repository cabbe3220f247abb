//! Scenario 7: memory. A client holds `count` streams open on one connection, or `count`
//! idle connections, and says `READY`; `compare` reads the server's resident set size before
//! and after, and the client's.

use std::io::Write;

use clap::ValueEnum;
use quicrpc_examples::agents::agent_control_client::AgentControlClient;
use quicrpc_examples::agents::{StatusAck, StatusUpdate};

use crate::BoxError;
use crate::cli::{Common, arg};
use crate::compare::Run;
use crate::dial::{Dialed, GrpcChannel, Target, dial};
use crate::helloworld::HelloRequest;
use crate::helloworld::greeter_client::GreeterClient;
use crate::process::{ServerProcess, client_flags, rss_kib, start_pinned, stdin_closed};
use crate::report;
use crate::transport::ClientKind;

/// What the client holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Held {
    /// Streams open on one connection: `StatusUpdates` calls, each with one update sent and
    /// acknowledged, neither side finished.
    Streams,
    /// Connections, each having made one call, then idle.
    Connections,
}

/// The `hold` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct HoldArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    #[arg(long, value_enum)]
    pub(crate) what: Held,
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
}

/// `compare memory`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CompareArgs {
    /// Streams held on one connection, then connections held.
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Sets up what `args` asks for, prints `READY rss_kib=N`, and holds it until standard
/// input closes.
pub(crate) async fn hold(args: &HoldArgs) -> Result<(), BoxError> {
    let held: Box<dyn std::any::Any> = match args.what {
        Held::Streams => match connect(args).await? {
            Dialed::Quicrpc(channel) => Box::new(open_streams(channel, args.count).await?),
            Dialed::Tonic(channel) => Box::new(open_streams(channel, args.count).await?),
        },
        Held::Connections => {
            let mut held: Vec<Box<dyn std::any::Any>> = Vec::with_capacity(args.count);
            for _ in 0..args.count {
                held.push(match connect(args).await? {
                    Dialed::Quicrpc(channel) => Box::new(one_call(channel).await?),
                    Dialed::Tonic(channel) => Box::new(one_call(channel).await?),
                });
            }
            Box::new(held)
        }
    };
    let rss = rss_kib("self").unwrap_or(0);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY rss_kib={rss}")?;
        out.flush()?;
    }
    stdin_closed().await;
    drop(held);
    Ok(())
}

async fn connect(args: &HoldArgs) -> Result<Dialed, BoxError> {
    dial(&args.target).await
}

/// One call, to be sure the connection is up; the channel is kept.
async fn one_call<T: GrpcChannel>(channel: T) -> Result<GreeterClient<T>, BoxError> {
    let mut client = GreeterClient::new(channel);
    client
        .say_hello(HelloRequest {
            name: "idle".into(),
        })
        .await?;
    Ok(client)
}

/// A status-update stream held open: its sender and its acknowledgements.
type OpenStream = (
    tokio::sync::mpsc::Sender<StatusUpdate>,
    tonic::Streaming<StatusAck>,
);

/// `count` status-update streams, each with one update acknowledged; their senders and
/// response streams are kept so that every stream stays open.
async fn open_streams<T: GrpcChannel>(
    channel: T,
    count: usize,
) -> Result<Vec<OpenStream>, BoxError> {
    let mut client = AgentControlClient::new(channel);
    let mut open = Vec::with_capacity(count);
    for i in 0..count {
        let (updates, rx) = tokio::sync::mpsc::channel(1);
        updates
            .send(StatusUpdate {
                agent_id: i as u64,
                state: "running".into(),
            })
            .await?;
        let mut acks = client
            .status_updates(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        acks.message()
            .await?
            .ok_or("a status stream ended before its acknowledgement")?;
        open.push((updates, acks));
    }
    Ok(open)
}

/// What one hold measured, in KiB.
#[derive(Clone, Copy, Debug)]
struct Footprint {
    server_before: u64,
    server_after: u64,
    client: u64,
}

/// Holds `count` of `what` as `kind` against a fresh server and reads the resident set sizes.
fn measure(kind: ClientKind, what: Held, count: usize, run: &Run) -> Result<Footprint, BoxError> {
    let place = &run.place;
    let server = ServerProcess::start(kind.server(), run)?;
    let server_pid = server.pid();
    let server_before = rss_kib(&server_pid).ok_or("no server RSS")?;
    let mut args = ["hold", "--what", &arg(what), "--count", &count.to_string()]
        .map(str::to_owned)
        .to_vec();
    args.extend(client_flags(kind, run));
    args.extend(server.address_flags(place));
    // The client prints READY or exits (closing its output) on an error.
    let (mut client, line) = start_pinned(place.client_core, None, &args)?;
    let server_after = rss_kib(&server_pid).ok_or("no server RSS")?;
    drop(client.stdin.take());
    let status = client.wait()?;
    let client_rss = line
        .trim()
        .strip_prefix("READY rss_kib=")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{} hold failed ({status})", kind.name()))?;
    Ok(Footprint {
        server_before,
        server_after,
        client: client_rss,
    })
}

/// `compare memory`: `count` streams on one connection, then `count` idle connections.
pub(crate) fn tables(run: &Run, count: usize) -> Result<(), BoxError> {
    for what in [Held::Streams, Held::Connections] {
        if what == Held::Streams && run.common.max_streams.is_some_and(|m| (m as usize) < count) {
            // The client would wait for a free stream forever: every one is held.
            println!("\n(streams skipped: the server allows fewer than {count})");
            continue;
        }
        let runs = run.repeat(&ClientKind::ALL, |kind| measure(kind, what, count, run))?;
        let held = match what {
            Held::Streams => format!("{count} open streams on one connection"),
            Held::Connections => format!("{count} idle connections"),
        };
        println!("\n## {held}, {}\n", run.common.label());
        println!(
            "| transport | server RSS before, MiB | server RSS after, MiB | server KiB per {} | client RSS, MiB |",
            arg(what).trim_end_matches('s')
        );
        println!("|---|---|---|---|---|");
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut rows = Vec::new();
        for kind in ClientKind::ALL {
            let (mine, _) = report::of_kind(&runs, kind);
            let per_item: Vec<f64> = mine
                .iter()
                .map(|f| f.server_after.saturating_sub(f.server_before) as f64 / count as f64)
                .collect();
            println!(
                "| {} | {} | {} | {} | {} |",
                kind.name(),
                report::cell(mine.iter().map(|f| mib(f.server_before)).collect(), 1),
                report::cell(mine.iter().map(|f| mib(f.server_after)).collect(), 1),
                report::cell(per_item.clone(), 1),
                report::cell(mine.iter().map(|f| mib(f.client)).collect(), 1),
            );
            rows.push(report::Row::new(
                run.scenario,
                &run.common.label(),
                &held,
                kind.name(),
                "server RSS growth (MiB)",
                report::spread(
                    mine.iter()
                        .map(|f| mib(f.server_after.saturating_sub(f.server_before)))
                        .collect(),
                )
                .0,
            ));
        }
        run.keep(&rows)?;
    }
    Ok(())
}
