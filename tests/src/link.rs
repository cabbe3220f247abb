//! A test server behind an emulated link (netlab): delay, rate and queue for real, in network
//! namespaces the test creates. Needs root and `/dev/net/tun`; a test that cannot start its
//! link fails loudly rather than pass without having run.

use quicrpc_netlab::{LinkConfig, Netlab};

use crate::{TestOptions, TestServer};

/// A running link with a test server behind it.
#[derive(Debug)]
pub struct ServerBehindLink {
    /// The link; dropping it removes its namespace.
    pub lab: Netlab,
    /// The server, on the far side of the link.
    pub server: TestServer,
}

impl ServerBehindLink {
    /// Starts `link` and a QUIC test server behind it.
    pub async fn start(link: LinkConfig) -> Self {
        let lab = Netlab::start(link).unwrap_or_else(|e| {
            panic!("THIS TEST DID NOT RUN: no emulated link ({e}); it needs root and /dev/net/tun")
        });
        let ip = lab.server_ip;
        let udp = lab.enter(|| std::net::UdpSocket::bind((ip, 0)).expect("UDP behind the link"));
        let options = TestOptions {
            sockets: Some((Some(udp), None)),
            ..Default::default()
        };
        let server = TestServer::start_with(options, |b| b).await;
        Self { lab, server }
    }

    /// A QUIC-only channel to the server across the link, to configure further.
    pub fn channel(&self) -> quicrpc::ChannelBuilder {
        let addr = format!("https://{}:{}", self.lab.server_ip, self.server.addr.port());
        quicrpc::Channel::builder(addr)
            .ca_certificate(self.server.cert.ca_certificate())
            .domain_name("localhost")
            .fallback(quicrpc::Fallback::QuicOnly)
    }
}
