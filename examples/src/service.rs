//! The server side of the agents demo: an in-memory agent registry.
//!
//! `ExecuteTask` "thinks" for a millisecond per step; everything else answers at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::agents::agent_control_server::AgentControl;
use crate::agents::{
    Chunk, MemoryRecord, RetrieveRequest, SpawnReply, SpawnRequest, StatusAck, StatusUpdate,
    StoreReply, TaskProgress, TaskRequest, TerminateReply, TerminateRequest, TransferReply,
};

/// Agents and their memories, in memory.
#[derive(Debug, Default)]
pub struct Agents {
    next_id: AtomicU64,
    running: Mutex<HashMap<u64, String>>,
    memory: Mutex<HashMap<MemoryKey, Versioned>>,
}

/// (agent id, key).
type MemoryKey = (u64, String);
/// (version, value).
type Versioned = (u64, Vec<u8>);

type ProgressStream = Pin<Box<dyn Stream<Item = Result<TaskProgress, Status>> + Send>>;
type AckStream = Pin<Box<dyn Stream<Item = Result<StatusAck, Status>> + Send>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[tonic::async_trait]
impl AgentControl for Agents {
    async fn spawn(&self, request: Request<SpawnRequest>) -> Result<Response<SpawnReply>, Status> {
        let agent_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.running).insert(agent_id, request.into_inner().name);
        Ok(Response::new(SpawnReply { agent_id }))
    }

    async fn terminate(
        &self,
        request: Request<TerminateRequest>,
    ) -> Result<Response<TerminateReply>, Status> {
        let was_running = lock(&self.running)
            .remove(&request.into_inner().agent_id)
            .is_some();
        Ok(Response::new(TerminateReply { was_running }))
    }

    type ExecuteTaskStream = ProgressStream;

    async fn execute_task(
        &self,
        request: Request<TaskRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        let task = request.into_inner();
        if !lock(&self.running).contains_key(&task.agent_id) {
            return Err(Status::not_found(format!(
                "agent {} is not running",
                task.agent_id
            )));
        }
        let of = task.steps;
        // Each step "thinks" for a millisecond.
        let steps = tokio_stream::iter(1..=of).then(move |step| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(TaskProgress {
                step,
                of,
                note: format!("step {step} of {of}"),
            })
        });
        Ok(Response::new(Box::pin(steps)))
    }

    async fn store_memory(
        &self,
        request: Request<MemoryRecord>,
    ) -> Result<Response<StoreReply>, Status> {
        let record = request.into_inner();
        let mut memory = lock(&self.memory);
        let entry = memory
            .entry((record.agent_id, record.key))
            .or_insert((0, Vec::new()));
        *entry = (entry.0 + 1, record.value);
        Ok(Response::new(StoreReply { version: entry.0 }))
    }

    async fn retrieve_memory(
        &self,
        request: Request<RetrieveRequest>,
    ) -> Result<Response<MemoryRecord>, Status> {
        let RetrieveRequest { agent_id, key } = request.into_inner();
        let value = lock(&self.memory)
            .get(&(agent_id, key.clone()))
            .map(|(_, value)| value.clone())
            .ok_or_else(|| Status::not_found(format!("no memory {key:?} for agent {agent_id}")))?;
        Ok(Response::new(MemoryRecord {
            agent_id,
            key,
            value,
        }))
    }

    type StatusUpdatesStream = AckStream;

    async fn status_updates(
        &self,
        request: Request<Streaming<StatusUpdate>>,
    ) -> Result<Response<AckStream>, Status> {
        let updates = request.into_inner();
        let mut sequence = 0;
        let acks = updates.map(move |update| {
            sequence += 1;
            update.map(|_| StatusAck { sequence })
        });
        Ok(Response::new(Box::pin(acks)))
    }

    async fn bulk_transfer(
        &self,
        request: Request<Streaming<Chunk>>,
    ) -> Result<Response<TransferReply>, Status> {
        let mut chunks = request.into_inner();
        let mut bytes = 0;
        while let Some(chunk) = chunks.message().await? {
            bytes += chunk.data.len() as u64;
        }
        Ok(Response::new(TransferReply { bytes }))
    }
}
