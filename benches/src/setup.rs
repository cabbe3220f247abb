//! Scenario 4: connection set-up to the first response, each connection fresh.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::BoxError;
use crate::helloworld::HelloRequest;
use crate::helloworld::greeter_client::GreeterClient;

/// How the client connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SetupMode {
    /// QUIC, full handshake (no session resumption).
    QuicCold,
    /// QUIC, resuming a session, no early data.
    QuicResumed,
    /// QUIC, resuming a session, the call sent as 0-RTT early data.
    Quic0rtt,
    /// quicrpc's TCP fallback: TCP, TLS 1.3, HTTP/2.
    QuicrpcTcp,
    /// Plain tonic: TCP, TLS 1.3, HTTP/2.
    Tonic,
    /// quicrpc's default policy (QUIC first, TCP after the fallback delay), with nothing
    /// remembered from earlier connections: the first contact with a server.
    AutoFirst,
    /// quicrpc's default policy, remembering that TCP won last time (as a channel does for
    /// five minutes by default).
    AutoRemembered,
}

impl SetupMode {
    pub(crate) const ALL: [SetupMode; 5] = [
        Self::QuicCold,
        Self::QuicResumed,
        Self::Quic0rtt,
        Self::QuicrpcTcp,
        Self::Tonic,
    ];

    /// Scenario 6 (with UDP blocked): the default policy, first and remembered, against
    /// going straight to TCP.
    pub(crate) const FALLBACK: [SetupMode; 4] = [
        Self::AutoFirst,
        Self::AutoRemembered,
        Self::QuicrpcTcp,
        Self::Tonic,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::QuicCold => "QUIC, full handshake",
            Self::QuicResumed => "QUIC, resumed (1-RTT)",
            Self::Quic0rtt => "QUIC, resumed, 0-RTT",
            Self::QuicrpcTcp => "quicrpc TCP fallback (TCP+TLS 1.3)",
            Self::Tonic => "tonic TCP+TLS 1.3",
            Self::AutoFirst => "quicrpc default, first contact",
            Self::AutoRemembered => "quicrpc default, TCP remembered",
        }
    }

    pub(crate) fn arg(self) -> &'static str {
        match self {
            Self::QuicCold => "quic-cold",
            Self::QuicResumed => "quic-resumed",
            Self::Quic0rtt => "quic0rtt",
            Self::QuicrpcTcp => "quicrpc-tcp",
            Self::Tonic => "tonic",
            Self::AutoFirst => "auto-first",
            Self::AutoRemembered => "auto-remembered",
        }
    }

    /// The server this mode connects to.
    pub(crate) fn server(self) -> crate::ServerKind {
        match self {
            Self::Tonic => crate::ServerKind::Tonic,
            _ => crate::ServerKind::Quicrpc,
        }
    }
}

/// Connects `count` times (after one connection that leaves a session ticket), each time
/// from nothing to the first response; returns each time in microseconds, and how many calls
/// went as accepted early data.
pub(crate) async fn run(
    mode: SetupMode,
    host: &str,
    port: u16,
    certs: &Path,
    count: usize,
) -> Result<(Vec<u64>, usize), BoxError> {
    let ca = std::fs::read(certs.join("ca.pem"))?;
    let uri = format!("https://{host}:{port}");
    let mut times = Vec::with_capacity(count);
    let mut early = 0;
    for i in 0..=count {
        let start = Instant::now();
        let zero_rtt = match mode {
            SetupMode::Tonic => {
                let tls = tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
                    .domain_name("localhost");
                let channel = tonic::transport::Endpoint::from_shared(uri.clone())?
                    .tls_config(tls)?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                let mut client = GreeterClient::new(channel);
                client.say_hello(hello()).await?;
                None
            }
            _ => {
                let builder = quicrpc::Channel::builder(uri.clone())
                    .ca_certificate(quicrpc::tls::Certificate::from_pem(&ca)?)
                    .domain_name("localhost");
                let builder = match mode {
                    SetupMode::QuicCold => builder
                        .fallback(quicrpc::Fallback::QuicOnly)
                        .session_cache(0),
                    SetupMode::QuicResumed => builder
                        .fallback(quicrpc::Fallback::QuicOnly)
                        .zero_rtt(false),
                    SetupMode::Quic0rtt => builder.fallback(quicrpc::Fallback::QuicOnly),
                    SetupMode::AutoFirst => builder.fallback_memory(Duration::ZERO),
                    SetupMode::AutoRemembered => builder,
                    _ => builder.fallback(quicrpc::Fallback::TcpOnly),
                };
                let mut client = GreeterClient::new(builder.connect_lazy()?);
                let response = client.say_hello(hello()).await?;
                response.extensions().get::<quicrpc::ZeroRtt>().copied()
            }
        };
        let elapsed = start.elapsed();
        // The first connection only leaves a session ticket behind.
        if i > 0 {
            times.push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
            if zero_rtt == Some(quicrpc::ZeroRtt::Accepted) {
                early += 1;
            }
        }
    }
    Ok((times, early))
}

fn hello() -> HelloRequest {
    HelloRequest {
        name: "set-up".into(),
    }
}
