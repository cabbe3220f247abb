//! Three Greeter servers, one balanced client, and a rolling restart: each server in turn is
//! drained and started again on its port while calls keep flowing, and no call fails.
//!
//! Run with:
//!
//! ```text
//! cargo run --example fleet
//! ```
//!
//! Expected output (ports and counts vary):
//!
//! ```text
//! servers on ports 40001, 40002, 40003
//! before the restart: calls answered by server 0: 100, server 1: 100, server 2: 100
//! draining server 0 ... stopped; started again on port 40001
//! draining server 1 ... stopped; started again on port 40002
//! draining server 2 ... stopped; started again on port 40003
//! during the restart: 1730 calls, 0 failed
//! after the restart: calls answered by server 0: 100, server 1: 100, server 2: 100
//! ```

#[allow(missing_docs)] // generated code
pub mod helloworld {
    quicrpc::include_proto!("helloworld");
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use helloworld::greeter_client::GreeterClient;
use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// Answers with its own number, so the client can tell who answered.
struct NumberedGreeter(usize);

#[tonic::async_trait]
impl Greeter for NumberedGreeter {
    async fn say_hello(
        &self,
        _request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: self.0.to_string(),
        }))
    }
}

/// A running server, and how to stop it gracefully.
struct Running {
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), quicrpc::Error>>,
}

async fn start(
    number: usize,
    addr: SocketAddr,
    cert: &quicrpc::tls::SelfSigned,
) -> Result<(SocketAddr, Running), quicrpc::Error> {
    // The old server's socket is released once quinn's endpoint has finished with its
    // closed connections, a moment after `serve_with_shutdown` returns: try again until then.
    let mut tries = 0;
    let server = loop {
        let bound = quicrpc::Server::builder()
            .identity(cert.identity())
            .add_service(GreeterServer::new(NumberedGreeter(number)))
            .bind(addr)
            .await;
        match bound {
            Err(quicrpc::Error::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && tries < 100 =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => break other?,
        }
    };
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    Ok((addr, Running { stop, serving }))
}

/// `n` calls, one at a time; how many each server answered.
async fn spread(
    client: &mut GreeterClient<quicrpc::Channel>,
    n: usize,
) -> Result<[usize; 3], Status> {
    let mut answered = [0; 3];
    for _ in 0..n {
        let reply = client
            .say_hello(HelloRequest {
                name: "fleet".into(),
            })
            .await?;
        if let Ok(server) = reply.into_inner().message.parse::<usize>() {
            answered[server % 3] += 1;
        }
    }
    Ok(answered)
}

fn show(answered: [usize; 3]) -> String {
    let parts: Vec<String> = answered
        .iter()
        .enumerate()
        .map(|(i, n)| format!("server {i}: {n}"))
        .collect();
    format!("calls answered by {}", parts.join(", "))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
    let mut addrs = Vec::new();
    let mut running = Vec::new();
    for number in 0..3 {
        let (addr, server) = start(number, "127.0.0.1:0".parse()?, &cert).await?;
        addrs.push(addr);
        running.push(Some(server));
    }
    let ports: Vec<String> = addrs.iter().map(|a| a.port().to_string()).collect();
    println!("servers on ports {}", ports.join(", "));

    let endpoints = addrs.iter().map(|addr| {
        quicrpc::Channel::builder(format!("https://localhost:{}", addr.port()))
            .ca_certificate(cert.ca_certificate())
    });
    let channel = quicrpc::Balance::RoundRobin.list(endpoints);
    let mut client = GreeterClient::new(channel.clone());
    println!(
        "before the restart: {}",
        show(spread(&mut client, 300).await?)
    );

    // Calls keep flowing from four tasks while each server in turn is drained and started
    // again.
    let done = Arc::new(AtomicBool::new(false));
    let (calls, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let mut client = GreeterClient::new(channel.clone());
        let (done, calls, failed) = (done.clone(), calls.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let request = HelloRequest {
                    name: "fleet".into(),
                };
                if let Err(status) = client.say_hello(request).await {
                    eprintln!("failed: {status}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for (number, addr) in addrs.iter().enumerate() {
        print!("draining server {number} ... ");
        if let Some(server) = running[number].take() {
            let _ = server.stop.send(());
            server.serving.await??;
        }
        let (_, server) = start(number, *addr, &cert).await?;
        running[number] = Some(server);
        println!("stopped; started again on port {}", addr.port());
        // Let the load run against the full fleet for a while before the next server.
        let target = calls.load(Ordering::Relaxed) + 500;
        while calls.load(Ordering::Relaxed) < target {
            tokio::task::yield_now().await;
        }
    }
    done.store(true, Ordering::Relaxed);
    for task in load {
        task.await?;
    }
    println!(
        "during the restart: {} calls, {} failed",
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "after the restart: {}",
        show(spread(&mut client, 300).await?)
    );
    Ok(())
}
