//! The TCP side of the client: gRPC over HTTP/2 over TLS, through tonic.

use std::sync::Arc;

use http::Uri;
use rustls_pki_types::ServerName;

use super::ChannelBuilder;
use crate::{Error, tls};

/// Everything needed to open gRPC-over-TCP connections to one server.
#[derive(Clone, Debug)]
pub(super) struct TcpConnector {
    endpoint: tonic::transport::Endpoint,
    /// Set when certificates are not verified
    /// ([`ChannelBuilder::danger_accept_invalid_certificates`]): tonic's TLS cannot be told
    /// not to verify, so TLS is done here and tonic gets a connection it sees as plain.
    unverified: Option<UnverifiedTls>,
}

#[derive(Clone, Debug)]
struct UnverifiedTls {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl TcpConnector {
    /// The connector for `authority` with the builder's roots, server name, identity and
    /// connection settings.
    pub(super) fn new(
        builder: &ChannelBuilder,
        authority: &str,
        server_name: &str,
    ) -> Result<Self, Error> {
        let unverified = match builder.accept_invalid_certificates {
            false => None,
            true => Some(UnverifiedTls {
                config: Arc::new(tls::client_config(
                    &[],
                    &[b"h2"],
                    0,
                    false,
                    builder.identity.as_ref(),
                    true,
                )?),
                server_name: ServerName::try_from(server_name.to_owned())
                    .map_err(|e| Error::Tls(format!("server name {server_name:?}: {e}")))?,
            }),
        };
        // Without tonic's TLS the endpoint's scheme must be http, or tonic refuses to connect.
        let scheme = if unverified.is_some() {
            "http"
        } else {
            "https"
        };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|e| Error::InvalidUri {
            uri: authority.to_owned(),
            reason: e.to_string(),
        })?;
        let endpoint = match unverified {
            Some(_) => endpoint,
            None => endpoint
                .tls_config(tonic_tls(builder, server_name))
                .map_err(|e| Error::Tls(format!("TCP side: {e}")))?,
        };
        let config = &builder.config;
        let endpoint = endpoint
            .connect_timeout(builder.connect_timeout)
            .tcp_nodelay(true)
            .keep_alive_while_idle(config.keep_alive_interval.is_some());
        let endpoint = match config.keep_alive_interval {
            Some(interval) => endpoint.http2_keep_alive_interval(interval),
            None => endpoint,
        };
        Ok(Self {
            endpoint,
            unverified,
        })
    }

    /// Connects: TCP, TLS, HTTP/2.
    pub(super) async fn connect(
        &self,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        let Some(unverified) = self.unverified.clone() else {
            return self.endpoint.connect().await;
        };
        let connector = tower::service_fn(move |uri: Uri| {
            let unverified = unverified.clone();
            async move {
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                let port = uri.port_u16().unwrap_or(443);
                let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(unverified.config)
                    .connect(unverified.server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        self.endpoint.connect_with_connector(connector).await
    }
}

/// tonic's TLS settings: the same roots (or the Mozilla roots), server name and identity as
/// the QUIC side.
fn tonic_tls(builder: &ChannelBuilder, server_name: &str) -> tonic::transport::ClientTlsConfig {
    let mut tls = tonic::transport::ClientTlsConfig::new().domain_name(server_name);
    if let Some(identity) = &builder.identity {
        tls = tls.identity(identity.to_tonic());
    }
    if builder.roots.is_empty() {
        tls.with_webpki_roots()
    } else {
        builder
            .roots
            .iter()
            .fold(tls, |tls, root| tls.ca_certificate(root.to_tonic()))
    }
}
