//! The agents demo: an agent-orchestration service over one QUIC connection.
//!
//! Run with:
//!
//! ```text
//! cargo run --release --example agents
//! ```
//!
//! It starts a server on loopback, spawns 100 agents at once, and has each one run a task
//! with streamed progress, store and read back memories, stream status updates, upload an
//! artifact in bulk and terminate. Then it prints a table per method: calls, p50 and p99
//! latency, and the transport used, like this (times depend on the machine):
//!
//! ```text
//! method          priority  calls  p50 ms  p99 ms  transport
//! Spawn           high        100    ...     ...   QUIC
//! ...
//! ```

#[allow(missing_docs)] // generated code
pub mod agents {
    quicrpc::include_proto!("agents.v1");
}

mod service;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agents::agent_control_client::AgentControlClient;
use agents::agent_control_server::AgentControlServer;
use agents::{
    Chunk, MemoryRecord, RetrieveRequest, SpawnRequest, StatusUpdate, TaskRequest, TerminateRequest,
};
use hdrhistogram::Histogram;

const AGENTS: u64 = 100;
const TASK_STEPS: u32 = 10;
const MEMORIES: usize = 4;
const BULK_BYTES: usize = 256 * 1024;
const BULK_CHUNK: usize = 16 * 1024;

type Client = AgentControlClient<quicrpc::Channel>;

/// Latency histograms per method path, in microseconds.
#[derive(Clone, Default)]
struct Stats(Arc<Mutex<BTreeMap<&'static str, Histogram<u64>>>>);

impl Stats {
    fn record(&self, path: &'static str, since: Instant) {
        let micros = since.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let histogram = map
            .entry(path)
            .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"));
        histogram.saturating_record(micros.max(1));
    }

    /// Times `call` and records it under `path`.
    async fn time<T>(&self, path: &'static str, call: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = call.await;
        self.record(path, start);
        out
    }
}

/// One agent's life, from spawn to terminate.
async fn run_agent(mut client: Client, stats: Stats, n: u64) -> Result<(), tonic::Status> {
    use agents::agent_control_methods as m;

    let spawned = stats
        .time(
            m::SPAWN.path(),
            client.spawn(SpawnRequest {
                name: format!("agent-{n}"),
                model: "small".into(),
            }),
        )
        .await?;
    let agent_id = spawned.into_inner().agent_id;

    // Status updates flow over one bidirectional stream for the agent's whole life.
    let (updates, rx) = tokio::sync::mpsc::channel(4);
    let status_stats = stats.clone();
    let mut status_client = client.clone();
    let status = tokio::spawn(async move {
        let start = Instant::now();
        let mut acks = status_client
            .status_updates(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let mut count = 0;
        while acks.message().await?.is_some() {
            count += 1;
        }
        status_stats.record(m::STATUS_UPDATES.path(), start);
        Ok::<u32, tonic::Status>(count)
    });
    let update = |state: &str| StatusUpdate {
        agent_id,
        state: state.into(),
    };
    let _ = updates.send(update("running")).await;

    let task = TaskRequest {
        agent_id,
        task: "summarise".into(),
        steps: TASK_STEPS,
    };
    stats
        .time(m::EXECUTE_TASK.path(), async {
            let mut progress = client.execute_task(task).await?.into_inner();
            while progress.message().await?.is_some() {}
            Ok::<(), tonic::Status>(())
        })
        .await?;

    for i in 0..MEMORIES {
        let record = MemoryRecord {
            agent_id,
            key: format!("fact-{i}"),
            value: vec![i as u8; 1024],
        };
        stats
            .time(m::STORE_MEMORY.path(), client.store_memory(record))
            .await?;
    }
    for i in 0..MEMORIES {
        let request = RetrieveRequest {
            agent_id,
            key: format!("fact-{i}"),
        };
        let record = stats
            .time(m::RETRIEVE_MEMORY.path(), client.retrieve_memory(request))
            .await?;
        assert_eq!(record.into_inner().value.len(), 1024);
    }

    let chunks = (0..BULK_BYTES / BULK_CHUNK).map(move |_| Chunk {
        agent_id,
        data: vec![7; BULK_CHUNK],
    });
    let sent = stats
        .time(
            m::BULK_TRANSFER.path(),
            client.bulk_transfer(tokio_stream::iter(chunks)),
        )
        .await?;
    assert_eq!(sent.into_inner().bytes, BULK_BYTES as u64);

    let _ = updates.send(update("done")).await;
    drop(updates);
    let acked = status
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))??;
    assert_eq!(acked, 2);

    stats
        .time(
            m::TERMINATE.path(),
            client.terminate(TerminateRequest { agent_id }),
        )
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
    let server = quicrpc::Server::builder()
        .tls(cert.identity())
        .add_service(AgentControlServer::new(service::Agents::default()))
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr();
    tokio::spawn(server.serve());

    let channel = quicrpc::Channel::builder(format!("https://localhost:{}", addr.port()))
        .ca_certificate(cert.ca_certificate())
        .connect()
        .await?;
    let transport = channel.transport();
    println!("quicrpc agents demo: {AGENTS} agents sharing one {transport} connection to {addr}\n");

    let stats = Stats::default();
    let start = Instant::now();
    let agents = (0..AGENTS).map(|n| {
        tokio::spawn(run_agent(
            AgentControlClient::new(channel.clone()),
            stats.clone(),
            n,
        ))
    });
    for agent in futures_util::future::join_all(agents).await {
        agent??;
    }
    let elapsed = start.elapsed();

    println!(
        "{:<16}{:<10}{:>6}{:>9}{:>9}  transport",
        "method", "priority", "calls", "p50 ms", "p99 ms"
    );
    let map = stats.0.lock().unwrap_or_else(|p| p.into_inner());
    let mut total = 0;
    for info in agents::agent_control_methods::ALL {
        let Some(h) = map.get(info.path()) else {
            continue;
        };
        let ms = |q: f64| Duration::from_micros(h.value_at_quantile(q)).as_secs_f64() * 1000.0;
        let name = info.path().rsplit('/').next().unwrap_or_default();
        println!(
            "{name:<16}{:<10}{:>6}{:>9.2}{:>9.2}  {transport}",
            info.priority().as_str(),
            h.len(),
            ms(0.5),
            ms(0.99)
        );
        total += h.len();
    }
    println!(
        "\n{total} calls by {AGENTS} agents in {:.2} s",
        elapsed.as_secs_f64()
    );
    Ok(())
}
