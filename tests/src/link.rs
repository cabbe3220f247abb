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

/// BULK client-streaming uploads (`Echo/ClientStream`) that send `message`-byte messages as
/// fast as the channel takes them, counting the bytes they hand over. Dropping them aborts
/// them.
#[derive(Debug)]
pub struct BulkUploads {
    handed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BulkUploads {
    /// Starts `count` uploads on `client`'s channel.
    pub fn start(
        client: &crate::pb::echo_client::EchoClient<quicrpc::Channel>,
        count: usize,
        message: usize,
    ) -> Self {
        use std::sync::atomic::Ordering;

        let handed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks = (0..count)
            .map(|_| {
                let mut client = client.clone();
                let handed = handed.clone();
                let messages = futures_util::stream::repeat_with(move || {
                    handed.fetch_add(message as u64, Ordering::Relaxed);
                    crate::pb::EchoRequest {
                        message: "x".repeat(message),
                        ..crate::pb::EchoRequest::default()
                    }
                });
                let mut request = tonic::Request::new(messages);
                request.extensions_mut().insert(quicrpc::Priority::Bulk);
                tokio::spawn(async move {
                    let _ = client.client_stream(request).await;
                })
            })
            .collect();
        Self { handed, tasks }
    }

    /// The bytes of messages handed to the channel so far.
    pub fn handed(&self) -> u64 {
        self.handed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the uploads have handed over at least `bytes`, looking every 10 ms. Bound
    /// it with [`within`](crate::within).
    pub async fn until_handed(&self, bytes: u64) {
        let mut ticks = tokio::time::interval(std::time::Duration::from_millis(10));
        while self.handed() < bytes {
            ticks.tick().await;
        }
    }
}

impl Drop for BulkUploads {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}
