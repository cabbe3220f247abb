//! One agent's life, from spawn to terminate, timed per method: the demo's workload.
//!
//! Generic over the channel, so the benchmarks run the same life over quicrpc and over a
//! plain tonic channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use tonic::codegen::{Body, Bytes, StdError};

use crate::agents::agent_control_client::AgentControlClient;
use crate::agents::agent_control_methods as m;
use crate::agents::{
    Chunk, MemoryRecord, RetrieveRequest, SpawnRequest, StatusUpdate, TaskRequest, TerminateRequest,
};

/// Steps of each agent's task (each "thinks" for a millisecond on the server).
pub const TASK_STEPS: u32 = 10;
/// Memories each agent stores and reads back.
pub const MEMORIES: usize = 4;
/// Bytes of each memory.
pub const MEMORY_BYTES: usize = 1024;
/// Bytes each agent uploads in bulk.
pub const BULK_BYTES: usize = 256 * 1024;
/// Bytes of each bulk chunk.
pub const BULK_CHUNK: usize = 16 * 1024;

/// Latency histograms per method path, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Stats(Arc<Mutex<BTreeMap<&'static str, Histogram<u64>>>>);

impl Stats {
    /// Records the time since `since` under `path`.
    pub fn record(&self, path: &'static str, since: Instant) {
        let micros = since.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let histogram = map
            .entry(path)
            .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"));
        histogram.saturating_record(micros.max(1));
    }

    /// Times `call` and records it under `path`.
    pub async fn time<T>(&self, path: &'static str, call: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = call.await;
        self.record(path, start);
        out
    }

    /// The histogram of `path`, if any call to it was recorded.
    pub fn histogram(&self, path: &str) -> Option<Histogram<u64>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(path).cloned()
    }
}

/// Runs agent `n`'s life over `client`: spawn; a status-update stream held open for the
/// whole life; a task with streamed progress; [`MEMORIES`] stores and retrieves; a
/// [`BULK_BYTES`] upload; terminate. Each call is timed into `stats`.
pub async fn run_agent<T>(
    mut client: AgentControlClient<T>,
    stats: Stats,
    n: u64,
) -> Result<(), tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    T::Future: Send,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
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
            value: vec![i as u8; MEMORY_BYTES],
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
        if record.get_ref().value.len() != MEMORY_BYTES {
            return Err(tonic::Status::data_loss(
                "memory came back with the wrong size",
            ));
        }
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
    if sent.get_ref().bytes != BULK_BYTES as u64 {
        return Err(tonic::Status::data_loss("the bulk upload lost bytes"));
    }

    let _ = updates.send(update("done")).await;
    drop(updates);
    let acked = status
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))??;
    if acked != 2 {
        return Err(tonic::Status::data_loss(format!(
            "{acked} status updates acknowledged, not 2"
        )));
    }

    stats
        .time(
            m::TERMINATE.path(),
            client.terminate(TerminateRequest { agent_id }),
        )
        .await?;
    Ok(())
}
