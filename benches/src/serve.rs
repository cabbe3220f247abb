//! The `serve` subcommand: one server kind, serving Greeter and the agents service (bare
//! quinn: its two raw protocols) on a port of its choosing until standard input closes.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use quicrpc_examples::agents::agent_control_server::AgentControlServer;
use quicrpc_examples::service::Agents;

use crate::helloworld::greeter_server::{Greeter, GreeterServer};
use crate::helloworld::{HelloReply, HelloRequest};
use crate::process::stdin_closed;
use crate::transport::{Cc, ServerKind, Windows};
use crate::{BoxError, bare};

/// The `serve` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServeArgs {
    #[arg(long, value_enum)]
    pub(crate) server: ServerKind,
    /// Directory with cert.pem and key.pem.
    #[arg(long)]
    pub(crate) certs: PathBuf,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) addr: IpAddr,
    /// QUIC congestion controller (quicrpc only).
    #[arg(long, value_enum, default_value_t = Cc::Bbr)]
    pub(crate) cc: Cc,
    /// The most calls in flight per connection (both servers' own default if absent).
    #[arg(long)]
    pub(crate) max_streams: Option<u32>,
    #[command(flatten)]
    pub(crate) windows: Windows,
    /// Answer every Greeter call with this instead of the name it was sent (to tell servers
    /// apart behind a balanced client).
    #[arg(long)]
    pub(crate) name: Option<String>,
}

/// Greeter: answers with the name it was sent, or with its own if it has one.
#[derive(Default)]
struct Greeting {
    name: Option<String>,
}

#[tonic::async_trait]
impl Greeter for Greeting {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        let message = match &self.name {
            Some(name) => name.clone(),
            None => request.into_inner().name,
        };
        Ok(tonic::Response::new(HelloReply { message }))
    }
}

/// Serves until standard input closes; prints `LISTENING <port>` once bound.
pub(crate) async fn serve(args: &ServeArgs) -> Result<(), BoxError> {
    let cert = std::fs::read(args.certs.join("cert.pem"))?;
    let key = std::fs::read(args.certs.join("key.pem"))?;
    match args.server {
        ServerKind::Quicrpc => serve_quicrpc(args, cert, key).await,
        ServerKind::Tonic => serve_tonic(args, cert, key).await,
        ServerKind::Quinn => {
            let endpoint = bare::server(args.addr, &cert, &key)?;
            announce(endpoint.local_addr()?.port())?;
            bare::serve(endpoint, stdin_closed()).await
        }
    }
}

async fn serve_quicrpc(args: &ServeArgs, cert: Vec<u8>, key: Vec<u8>) -> Result<(), BoxError> {
    let mut builder = args.windows.server(quicrpc::Server::builder());
    if let Some(cc) = crate::transport::tcp_cc() {
        builder = builder.tcp_congestion_control(cc);
    }
    if let Some(streams) = args.max_streams {
        builder = builder.max_concurrent_streams(streams);
    }
    let server = builder
        .identity(quicrpc::tls::Identity::from_pem(cert, key)?)
        .add_service(GreeterServer::new(Greeting {
            name: args.name.clone(),
        }))
        .add_service(AgentControlServer::new(Agents::default()))
        .congestion_control(args.cc.quicrpc())
        .bind((args.addr, 0))
        .await?;
    announce(server.local_addr().port())?;
    server.serve_with_shutdown(stdin_closed()).await?;
    Ok(())
}

async fn serve_tonic(args: &ServeArgs, cert: Vec<u8>, key: Vec<u8>) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind((args.addr, 0)).await?;
    crate::transport::set_tcp_cc(socket2::SockRef::from(&listener))?;
    announce(listener.local_addr()?.port())?;
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key));
    tonic::transport::Server::builder()
        .max_concurrent_streams(args.max_streams)
        .tls_config(tls)?
        .add_service(GreeterServer::new(Greeting {
            name: args.name.clone(),
        }))
        .add_service(AgentControlServer::new(Agents::default()))
        .serve_with_incoming_shutdown(
            // TCP_NODELAY, as quicrpc's TCP side and grpc-go set it: without it,
            // Nagle's algorithm holds small response frames for a round trip.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stdin_closed(),
        )
        .await?;
    Ok(())
}

/// Tells the parent process the port: the first line it reads.
fn announce(port: u16) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {port}")?;
    out.flush()
}
