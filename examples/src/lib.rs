//! The agents demo's service and workload, shared by the `agents` example and the
//! benchmarks (`quicrpc-bench compare agents`), so both run the same thing.

/// Generated code for `proto/agents/agents.proto`.
#[allow(missing_docs, unreachable_pub)]
pub mod agents {
    quicrpc::include_proto!("agents.v1");
}

pub mod service;
pub mod workload;
