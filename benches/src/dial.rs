//! Connecting a client of each kind, and the bound every generic client function shares.
//! Bare quinn speaks no gRPC: its client is `bare::Connection`.

use std::path::PathBuf;

use tonic::codegen::{Body, Bytes, StdError};

use crate::BoxError;
use crate::transport::{Cc, ClientKind, Windows};

/// A channel tonic's generated clients can use: quicrpc's or tonic's own.
pub(crate) trait GrpcChannel:
    tonic::client::GrpcService<
        tonic::body::Body,
        Future: Send,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<T> GrpcChannel for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Future: Send,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A connected client channel.
pub(crate) enum Dialed {
    /// quicrpc's channel, over QUIC or its TCP fallback.
    Quicrpc(quicrpc::Channel),
    /// tonic's channel over TCP+TLS.
    Tonic(tonic::transport::Channel),
}

/// Where the server is, and the CA that signed its certificate: the flags `compare` adds to
/// every client subcommand it runs.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServerAddress {
    /// The server's port (UDP for QUIC, TCP for the rest).
    #[arg(long)]
    pub(crate) port: u16,
    /// The server's host (its certificate is for localhost).
    #[arg(long, default_value = "localhost")]
    pub(crate) host: String,
    /// Directory with the CA certificate, ca.pem.
    #[arg(long)]
    pub(crate) certs: PathBuf,
}

impl ServerAddress {
    pub(crate) fn uri(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// The CA certificate, PEM.
    pub(crate) fn ca_pem(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.certs.join("ca.pem"))
    }
}

/// Which server a client subcommand connects to, and how.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Target {
    #[arg(long, value_enum)]
    pub(crate) client: ClientKind,
    #[command(flatten)]
    pub(crate) server: ServerAddress,
    /// QUIC congestion controller (quicrpc only).
    #[arg(long, value_enum, default_value_t = Cc::Bbr)]
    pub(crate) cc: Cc,
    #[command(flatten)]
    pub(crate) windows: Windows,
}

/// Connects to the target as its client kind would, trusting its CA.
pub(crate) async fn dial(target: &Target) -> Result<Dialed, BoxError> {
    let ca = target.server.ca_pem()?;
    let uri = target.server.uri();
    let kind = target.client;
    match kind {
        ClientKind::Quic | ClientKind::Http3 | ClientKind::QuicrpcTcp => {
            let fallback = match kind {
                ClientKind::QuicrpcTcp => quicrpc::Fallback::TcpOnly,
                _ => quicrpc::Fallback::QuicOnly,
            };
            let wire = match kind {
                ClientKind::Http3 => quicrpc::QuicWire::Http3,
                _ => quicrpc::QuicWire::Native,
            };
            let mut builder = quicrpc::Channel::builder(uri);
            if let Some(cc) = crate::transport::tcp_cc() {
                builder = builder.tcp_congestion_control(cc);
            }
            let channel = target
                .windows
                .channel(builder)
                .ca_certificate(quicrpc::tls::Certificate::from_pem(ca)?)
                .domain_name("localhost")
                .congestion_control(target.cc.quicrpc())
                .fallback(fallback)
                .quic_wire(wire)
                .connect()
                .await?;
            Ok(Dialed::Quicrpc(channel))
        }
        ClientKind::Tonic | ClientKind::TonicPool => {
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("localhost");
            let endpoint = tonic::transport::Endpoint::from_shared(uri)?
                .tls_config(tls)?
                .tcp_nodelay(true);
            let channel = match crate::transport::tcp_cc() {
                None => endpoint.connect().await?,
                // tonic has no setter for it: its own TCP connect, with the controller set,
                // under tonic's TLS (which wraps any connector).
                Some(_) => {
                    let connector = tower::service_fn(|uri: http::Uri| async move {
                        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                        let port = uri.port_u16().unwrap_or(443);
                        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                        tcp.set_nodelay(true)?;
                        crate::transport::set_tcp_cc(socket2::SockRef::from(&tcp))?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
                    });
                    endpoint.connect_with_connector(connector).await?
                }
            };
            Ok(Dialed::Tonic(channel))
        }
        ClientKind::Quinn => Err("bare quinn speaks no gRPC: it runs only where a scenario \
                                  has its own client for it (latency, inflight, stream)"
            .into()),
    }
}
