//! A Greeter server and client over QUIC, in one process.
//!
//! Run with:
//!
//! ```text
//! cargo run --example helloworld
//! ```
//!
//! Expected output:
//!
//! ```text
//! server listening on 127.0.0.1:PORT (QUIC)
//! reply: Hello, quicrpc!
//! ```

#[allow(missing_docs)] // generated code
pub mod helloworld {
    quicrpc::include_proto!("helloworld");
}

use helloworld::greeter_client::GreeterClient;
use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let message = format!("Hello, {}!", request.into_inner().name);
        Ok(Response::new(HelloReply { message }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
    let server = quicrpc::Server::builder()
        .identity(cert.identity())
        .add_service(GreeterServer::new(MyGreeter))
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr();
    println!("server listening on {addr} (QUIC)");
    tokio::spawn(server.serve());

    let channel = quicrpc::Channel::builder(format!("https://localhost:{}", addr.port()))
        .ca_certificate(cert.ca_certificate())
        .connect()
        .await?;
    let mut client = GreeterClient::new(channel);
    let reply = client
        .say_hello(HelloRequest {
            name: "quicrpc".into(),
        })
        .await?;
    println!("reply: {}", reply.into_inner().message);
    Ok(())
}
