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
//!
//! With `--serve`, it only serves the agents service on a loopback port, for clients in
//! other processes (`examples/node/agents.mjs`): it prints one line,
//! `{"port": PORT, "ca": "PEM"}`, and serves until its standard input closes.

use std::time::{Duration, Instant};

use quicrpc_examples::agents::agent_control_client::AgentControlClient;
use quicrpc_examples::agents::agent_control_methods;
use quicrpc_examples::agents::agent_control_server::AgentControlServer;
use quicrpc_examples::service::Agents;
use quicrpc_examples::workload::{Stats, run_agent};

const AGENTS: u64 = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
    let server = quicrpc::Server::builder()
        .identity(cert.identity())
        .add_service(AgentControlServer::new(Agents::default()))
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr();
    if std::env::args().any(|arg| arg == "--serve") {
        // PEM is printable ASCII and newlines: only the newlines need escaping in JSON.
        let ca = cert.ca_pem().replace('\n', "\\n");
        println!("{{\"port\": {}, \"ca\": \"{ca}\"}}", addr.port());
        let (closed, stdin_closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = closed.send(());
        });
        server
            .serve_with_shutdown(async {
                let _ = stdin_closed.await;
            })
            .await?;
        return Ok(());
    }
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
    let mut total = 0;
    for info in agent_control_methods::ALL {
        let Some(h) = stats.histogram(info.path()) else {
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
