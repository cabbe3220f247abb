//! quicrpc's metrics in Prometheus' text format.
//!
//! Run with:
//!
//! ```text
//! cargo run --example prometheus
//! ```
//!
//! It installs `metrics-exporter-prometheus` as the process's metrics recorder, makes a few
//! calls, and prints what a Prometheus scrape would get, for example:
//!
//! ```text
//! quicrpc_calls_finished_total{side="client",method="/helloworld.Greeter/SayHello",transport="quic",code="OK"} 3
//! quicrpc_call_duration_seconds{side="client",method="/helloworld.Greeter/SayHello",transport="quic",quantile="0.5"} 0.000...
//! ```
//!
//! A real service would serve the same text over HTTP instead: enable the exporter's
//! `http-listener` feature and call `PrometheusBuilder::with_http_listener`.

#[allow(missing_docs)] // generated code
pub mod helloworld {
    quicrpc::include_proto!("helloworld");
}

use helloworld::greeter_client::GreeterClient;
use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};
use tonic::{Request, Response, Status};

struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: format!("Hello, {}!", request.into_inner().name),
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;

    let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
    let server = quicrpc::Server::builder()
        .identity(cert.identity())
        .add_service(GreeterServer::new(MyGreeter))
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr();
    tokio::spawn(server.serve());
    let channel = quicrpc::Channel::builder(format!("https://localhost:{}", addr.port()))
        .ca_certificate(cert.ca_certificate())
        .connect()
        .await?;
    let mut client = GreeterClient::new(channel);
    for name in ["ada", "grace", "barbara"] {
        client.say_hello(HelloRequest { name: name.into() }).await?;
    }

    let scrape = prometheus.render();
    for line in scrape.lines().filter(|l| l.starts_with("quicrpc_")) {
        println!("{line}");
    }
    Ok(())
}
