//! Scenario 3: streaming throughput. `streams` concurrent client streams of 64 KiB messages
//! (the agents service's `BulkTransfer`, priority BULK), each sending as fast as the
//! transport takes them; the server counts the bytes and answers when a stream ends. On
//! loopback bare quinn runs too: a stream per upload written in 64 KiB chunks.

use std::time::Instant;

use bytes::Bytes;
use quicrpc_examples::agents::Chunk;
use quicrpc_examples::agents::agent_control_client::AgentControlClient;

use crate::cli::{Common, Timing};
use crate::compare::Run;
use crate::dial::{Dialed, GrpcChannel, Target, dial};
use crate::process::{cpu_ms_of, on_fresh_server, parse_fields};
use crate::report;
use crate::transport::ClientKind;
use crate::{BoxError, bare};

/// Bytes in each message.
pub(crate) const MESSAGE: usize = 64 * 1024;

/// The `stream` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct StreamArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Concurrent streams on the one connection.
    #[arg(long, default_value_t = 1)]
    pub(crate) streams: usize,
    #[command(flatten)]
    pub(crate) timing: Timing,
}

/// `compare stream`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CompareArgs {
    /// Streams on the connection, comma-separated: a table each.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub(crate) streams: Vec<usize>,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// What one streaming run measured.
#[derive(Clone, Debug)]
pub(crate) struct StreamResult {
    /// Bytes the server acknowledged, measured streams only.
    pub(crate) bytes: u64,
    /// Bytes including the warm-up: the divisor of CPU per byte.
    pub(crate) all_bytes: u64,
    /// From the first message sent to the last stream's answer.
    pub(crate) secs: f64,
    /// Client CPU over warm-up and measurement; `compare` adds the server's.
    pub(crate) cpu_ms: f64,
}

impl StreamResult {
    pub(crate) fn line(&self) -> String {
        format!(
            "STREAM bytes={} all_bytes={} secs={:.3} cpu_ms={:.1}",
            self.bytes, self.all_bytes, self.secs, self.cpu_ms
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        let fields = parse_fields(line, "STREAM ")?;
        Some(Self {
            bytes: fields.get("bytes")?.parse().ok()?,
            all_bytes: fields.get("all_bytes")?.parse().ok()?,
            secs: fields.get("secs")?.parse().ok()?,
            cpu_ms: fields.get("cpu_ms")?.parse().ok()?,
        })
    }

    /// Megabytes (10^6 bytes) per second.
    pub(crate) fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
}

/// Connects as `args.target` says and measures.
pub(crate) async fn run(args: &StreamArgs) -> Result<StreamResult, BoxError> {
    if args.target.client == ClientKind::Quinn {
        let connection = bare::Connection::connect(&args.target.server, bare::COUNT).await?;
        let uploads = BareUpload {
            connection: connection.clone(),
            chunk: vec![0x5a; MESSAGE].into(),
        };
        let result = measure(uploads, args).await;
        connection.close().await;
        return result;
    }
    match dial(&args.target).await? {
        Dialed::Quicrpc(channel) => measure(BulkTransfer::new(channel, MESSAGE), args).await,
        Dialed::Tonic(channel) => measure(BulkTransfer::new(channel, MESSAGE), args).await,
    }
}

async fn measure<U: Uploader>(uploads: U, args: &StreamArgs) -> Result<StreamResult, BoxError> {
    let cpu_before = cpu_ms_of("self");
    let warmup_end = args.timing.warmup_end();
    let warmup = upload(uploads.clone(), args.streams, warmup_end).await?;
    let start = Instant::now();
    let bytes = upload(uploads, args.streams, args.timing.measured_end()).await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_ms = cpu_ms_of("self")
        .zip(cpu_before)
        .map_or(f64::NAN, |(after, before)| after - before);
    Ok(StreamResult {
        bytes,
        all_bytes: bytes + warmup,
        secs,
        cpu_ms,
    })
}

/// One upload that sends until a given time: `BulkTransfer` over gRPC, or bare quinn's
/// counting stream.
pub(crate) trait Uploader: Clone + Send + 'static {
    /// Sends until `end`; the bytes the server counted.
    fn upload(&mut self, end: Instant) -> impl Future<Output = Result<u64, BoxError>> + Send;
}

/// The agents service's `BulkTransfer` (priority BULK) in `message`-byte chunks.
#[derive(Clone)]
pub(crate) struct BulkTransfer<T> {
    client: AgentControlClient<T>,
    message: usize,
}

impl<T: GrpcChannel> BulkTransfer<T> {
    pub(crate) fn new(channel: T, message: usize) -> Self {
        Self {
            client: AgentControlClient::new(channel),
            message,
        }
    }
}

impl<T: GrpcChannel> Uploader for BulkTransfer<T> {
    async fn upload(&mut self, end: Instant) -> Result<u64, BoxError> {
        let data = vec![0x5a; self.message];
        let messages = futures_util::stream::unfold((), move |()| {
            let data = data.clone();
            async move { (Instant::now() < end).then_some((Chunk { agent_id: 0, data }, ())) }
        });
        let reply = self.client.bulk_transfer(messages).await?;
        Ok(reply.into_inner().bytes)
    }
}

/// Bare quinn's counting stream, written in chunks of [`MESSAGE`] bytes.
#[derive(Clone)]
struct BareUpload {
    connection: bare::Connection,
    chunk: Bytes,
}

impl Uploader for BareUpload {
    async fn upload(&mut self, end: Instant) -> Result<u64, BoxError> {
        self.connection.upload(self.chunk.clone(), end).await
    }
}

/// `streams` uploads at once, each sending until `end`; the bytes the server counted.
pub(crate) async fn upload<U: Uploader>(
    uploads: U,
    streams: usize,
    end: Instant,
) -> Result<u64, BoxError> {
    let tasks = (0..streams).map(|_| {
        let mut upload = uploads.clone();
        tokio::spawn(async move { upload.upload(end).await })
    });
    let mut bytes = 0;
    for task in futures_util::future::join_all(tasks).await {
        bytes += task??;
    }
    Ok(bytes)
}

/// `compare stream`: a table per number of streams.
pub(crate) fn tables(run: &Run, levels: &[usize]) -> Result<(), BoxError> {
    for &streams in levels {
        let mut args = vec!["stream".to_owned(), "--streams".into(), streams.to_string()];
        args.extend(run.common.timing.flags());
        let runs = run.repeat(run.with_bare_quinn(), |kind| {
            let (mut results, server_cpu_ms) =
                on_fresh_server(kind, run, &args, StreamResult::parse)?;
            let mut result = results.remove(0);
            result.cpu_ms += server_cpu_ms;
            Ok(result)
        })?;
        println!(
            "\n## {streams} stream(s) of {} KiB messages, {}\n",
            MESSAGE / 1024,
            run.common.label()
        );
        let baselines = report::baselines_in(&runs);
        let mut columns = vec![
            "transport".to_owned(),
            "MB/s".into(),
            "CPU ms per MB".into(),
        ];
        columns.extend(
            baselines
                .iter()
                .map(|base| format!("MB/s ÷ {}", base.short_name())),
        );
        println!("{}", report::markdown_row(&columns));
        println!("|{}", "---|".repeat(columns.len()));
        let mut rows = Vec::new();
        for &kind in run.with_bare_quinn() {
            let (results, _) = report::of_kind(&runs, kind);
            let rates: Vec<f64> = results.iter().map(|r| r.mb_per_s()).collect();
            let mut cells = vec![
                kind.name().to_owned(),
                report::cell(rates.clone(), 1),
                report::cell(
                    results
                        .iter()
                        .map(|r| r.cpu_ms / (r.all_bytes as f64 / 1e6))
                        .collect(),
                    2,
                ),
            ];
            for &base in &baselines {
                let pairs = report::pairs(&runs, kind, base);
                cells.push(report::cell(
                    pairs
                        .iter()
                        .map(|(m, b)| m.mb_per_s() / b.mb_per_s())
                        .collect(),
                    2,
                ));
            }
            println!("{}", report::markdown_row(&cells));
            rows.push(report::Row::new(
                run.scenario,
                &run.common.label(),
                &format!("{streams} stream(s)"),
                kind.name(),
                "MB per second",
                report::spread(rates).0,
            ));
        }
        run.keep(&rows)?;
    }
    Ok(())
}
