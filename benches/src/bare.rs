//! Bare quinn, the comparator without framing: what QUIC itself costs here, the limit that
//! quicrpc's data path can approach. quinn with its default settings (congestion control,
//! windows, 100 streams per connection), rustls with the ring provider and the same
//! certificates as the other servers.
//!
//! Two protocols, told apart by ALPN so that no stream carries a header of its own:
//! - [`ECHO`] (scenarios 1 and 2): a bidirectional stream per call; the client writes the
//!   request and finishes, the server reads to the end and writes the same bytes back, and
//!   finishes. The client sends as many bytes as Greeter's gRPC request (5-byte prefix and
//!   protobuf), so the echo has the size of its gRPC reply.
//! - [`COUNT`] (scenario 3): a bidirectional stream per upload, written in 64 KiB chunks; the
//!   server counts the bytes to the end and answers with the count (8 bytes, big-endian).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::BoxError;
use crate::dial::ServerAddress;
use crate::helloworld::HelloRequest;

/// ALPN of the echo protocol: unary calls.
pub(crate) const ECHO: &[u8] = b"quicrpc-bench-echo";
/// ALPN of the counting protocol: streaming uploads.
pub(crate) const COUNT: &[u8] = b"quicrpc-bench-count";

/// The largest request the echo server reads (a unary request is tens of bytes).
const ECHO_LIMIT: usize = 16 * 1024 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Bytes a unary request takes on gRPC's wire, without HTTP/2 or quicrpc framing: the 5-byte
/// message prefix and the protobuf `HelloRequest` with a `payload`-byte name. Greeter's reply
/// echoes the name, so its reply is as long.
pub(crate) fn grpc_message_len(payload: usize) -> usize {
    let request = HelloRequest {
        name: "x".repeat(payload),
    };
    5 + request.encoded_len()
}

/// A bare quinn server on `addr`, port of its choosing, speaking both protocols.
pub(crate) fn server(addr: IpAddr, cert: &[u8], key: &[u8]) -> Result<quinn::Endpoint, BoxError> {
    let chain = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ECHO.to_vec(), COUNT.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    Ok(quinn::Endpoint::server(config, SocketAddr::new(addr, 0))?)
}

/// Accepts connections on `endpoint` until `stop` completes.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), BoxError> {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    tokio::spawn(async move {
                        if let Ok(connection) = incoming.await {
                            serve_connection(connection).await;
                        }
                    });
                }
                None => break,
            },
            () = &mut stop => break,
        }
    }
    endpoint.close(0u32.into(), b"done");
    Ok(())
}

/// Serves each stream of `connection` by the protocol its ALPN names, until it closes.
async fn serve_connection(connection: quinn::Connection) {
    let protocol = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    let echo = protocol.as_deref() == Some(ECHO);
    while let Ok((send, recv)) = connection.accept_bi().await {
        if echo {
            tokio::spawn(echo_stream(send, recv));
        } else {
            tokio::spawn(count_stream(send, recv));
        }
    }
}

/// Writes back what the stream brought, once it has all arrived.
async fn echo_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), BoxError> {
    let request = recv.read_to_end(ECHO_LIMIT).await?;
    send.write_all(&request).await?;
    send.finish()?;
    Ok(())
}

/// Counts the stream's bytes without copying them, and answers with the count.
async fn count_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), BoxError> {
    let mut bytes: u64 = 0;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        bytes += chunk.bytes.len() as u64;
    }
    send.write_all(&bytes.to_be_bytes()).await?;
    send.finish()?;
    Ok(())
}

/// A bare quinn connection, with the endpoint it needs kept alive.
#[derive(Clone)]
pub(crate) struct Connection {
    connection: quinn::Connection,
    endpoint: quinn::Endpoint,
}

impl Connection {
    /// Connects to `server` speaking `alpn`, trusting its CA; the certificate's name is
    /// localhost, whatever address the server is at.
    pub(crate) async fn connect(server: &ServerAddress, alpn: &[u8]) -> Result<Self, BoxError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&server.ca_pem()?) {
            roots.add(cert?)?;
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let config = quinn::ClientConfig::new(Arc::new(crypto));
        let addr = resolve(server).await?;
        let unspecified: IpAddr = if addr.is_ipv4() {
            [0, 0, 0, 0].into()
        } else {
            [0u16; 8].into()
        };
        let endpoint = quinn::Endpoint::client(SocketAddr::new(unspecified, 0))?;
        let connection = endpoint.connect_with(config, addr, "localhost")?.await?;
        Ok(Self {
            connection,
            endpoint,
        })
    }

    /// One call on the echo protocol: `request` out, its echo back.
    pub(crate) async fn echo(&self, request: &[u8]) -> Result<(), BoxError> {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        send.write_all(request).await?;
        send.finish()?;
        let reply = recv.read_to_end(ECHO_LIMIT).await?;
        if reply.len() != request.len() {
            return Err(format!("echo of {} bytes, {} sent", reply.len(), request.len()).into());
        }
        Ok(())
    }

    /// One upload on the counting protocol: `chunk` written again and again until `end`;
    /// the bytes the server counted.
    pub(crate) async fn upload(&self, chunk: Bytes, end: Instant) -> Result<u64, BoxError> {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        while Instant::now() < end {
            send.write_chunk(chunk.clone()).await?;
        }
        send.finish()?;
        let count = recv.read_to_end(8).await?;
        let count: [u8; 8] = count
            .try_into()
            .map_err(|c: Vec<u8>| format!("a count of {} bytes", c.len()))?;
        Ok(u64::from_be_bytes(count))
    }

    /// Closes the connection and waits (briefly) for the server to hear it.
    pub(crate) async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle())
            .await;
    }
}

/// The server's address: its host, which may be a name (localhost), preferring IPv4 as the
/// servers bind it.
async fn resolve(server: &ServerAddress) -> Result<SocketAddr, BoxError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((server.host.as_str(), server.port))
        .await?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{} has no address", server.host).into())
}

#[cfg(test)]
mod tests {
    use super::grpc_message_len;

    #[test]
    fn requests_are_as_long_as_greeters_on_the_grpc_wire() {
        // 5-byte prefix, then tag (1), length (1 or 2 bytes), name.
        for (payload, bytes) in [(0, 5), (16, 23), (127, 134), (128, 136), (1024, 1032)] {
            assert_eq!(grpc_message_len(payload), bytes, "{payload}-byte name");
        }
    }
}
