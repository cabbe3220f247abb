//! [`ChannelBuilder`]: everything a [`Channel`] is configured with.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use super::fallback::{Fallback, FallbackSettings, Router};
use super::health::HealthCheck;
use super::quic::{QuicConnector, QuicWire};
use super::tcp::TcpConnector;
use super::{CallSettings, Channel};
use crate::Error;
use crate::config::{ConnectionConfig, DEFAULT_CONNECT_TIMEOUT, connection_setters};
use crate::tls::{Certificate, ClientTls, Identity, ServerVerification};

/// Default least silence after which a QUIC server is taken for dead.
const DEFAULT_UNRESPONSIVE_AFTER: Duration = Duration::from_secs(1);

/// Default number of servers whose TLS session tickets are kept, per set of trust roots.
const DEFAULT_SESSION_CACHE: usize = 256;

/// Configures a [`Channel`]. Created by [`Channel::builder`].
#[derive(Clone, Debug)]
pub struct ChannelBuilder {
    uri: String,
    domain_name: Option<String>,
    connect_timeout: Duration,
    config: ConnectionConfig,
    tls: ClientTls,
    fallback: FallbackSettings,
    wire: QuicWire,
    unresponsive_after: Option<Duration>,
    health_check: Option<HealthCheck>,
}

/// The server a channel talks to, from its URI.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    /// `host:port` as the URI gave it: what calls address, and what the fallback memory is
    /// keyed by.
    pub(super) authority: String,
    /// The name checked against the server's certificate.
    pub(super) server_name: String,
}

impl ChannelBuilder {
    pub(super) fn new(uri: String) -> Self {
        Self {
            uri,
            domain_name: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            config: ConnectionConfig::client_default(),
            tls: ClientTls {
                roots: Vec::new(),
                identity: None,
                sessions: DEFAULT_SESSION_CACHE,
                early_data: true,
                verify: ServerVerification::Verified,
            },
            fallback: FallbackSettings::default(),
            wire: QuicWire::default(),
            unresponsive_after: Some(DEFAULT_UNRESPONSIVE_AFTER),
            health_check: None,
        }
    }

    /// Trusts `cert` as a root for the server's certificate. Without any, the Mozilla roots
    /// (webpki-roots) are trusted.
    #[must_use]
    pub fn ca_certificate(mut self, cert: Certificate) -> Self {
        self.tls.roots.push(cert);
        self
    }

    /// Presents `identity` (a client certificate chain and key) to servers that ask for one:
    /// mutual TLS, on QUIC and on TCP.
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> Self {
        self.tls.identity = Some(identity);
        self
    }

    /// **Dangerous**: with `true`, the server's certificate is not verified at all: any
    /// certificate, from any issuer, for any name, expired or not, is accepted. Default:
    /// `false`.
    ///
    /// The connection is still encrypted, and the handshake signature is still checked
    /// against the certificate's key, but nothing ties that key to the server you meant to
    /// reach: anyone who can intercept the traffic can impersonate it and read or change
    /// every call. For development against a server whose CA you do not have, never in
    /// production; prefer [`ca_certificate`](Self::ca_certificate) with the server's CA.
    ///
    /// It applies to both transports: on TCP, quicrpc then makes the TLS connection itself
    /// (tonic's TLS cannot skip verification) and hands it to tonic. A client certificate
    /// ([`identity`](Self::identity)) is still presented.
    #[must_use]
    pub fn danger_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.tls.verify = match accept {
            true => ServerVerification::AcceptAny,
            false => ServerVerification::Verified,
        };
        self
    }

    /// The name checked against the server's certificate. Default: the URI's host.
    #[must_use]
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// Which transports to use. Default: [`Fallback::Auto`].
    #[must_use]
    pub fn fallback(mut self, policy: Fallback) -> Self {
        self.fallback.policy = policy;
        self
    }

    /// Which wire to speak over QUIC: quicrpc's own ([`QuicWire::Native`], the default),
    /// gRPC over HTTP/3 ([`QuicWire::Http3`]) for a gRPC server that is not quicrpc, or
    /// whichever the server prefers ([`QuicWire::Auto`]). The fallback to TCP works the same
    /// from either; [`Channel::transport`] says which wire new calls take.
    #[must_use]
    pub fn quic_wire(mut self, wire: QuicWire) -> Self {
        self.wire = wire;
        self
    }

    /// How soon a QUIC server that has stopped answering is taken for dead: once packets it
    /// must acknowledge have waited this long with nothing at all coming back (or eight probe
    /// timeouts of the path, if longer: about 2.6 s at 100 ms RTT), the connection is closed,
    /// its calls end with UNAVAILABLE, and the next call connects anew. A server killed
    /// abruptly says nothing, and over UDP nothing else does: without this the idle timeout
    /// would decide, 30 s later. A connection with nothing to send is never judged. `None`
    /// leaves it to the idle timeout. Default: 1 s.
    #[must_use]
    pub fn unresponsive_timeout(mut self, after: Option<Duration>) -> Self {
        self.unresponsive_after = after;
        self
    }

    /// In a balanced channel ([`Channel::balance_list`] and the other
    /// [`Balance`](crate::Balance) forms), checks this server actively: every `interval`,
    /// while it has a connection up, a `grpc.health.v1.Health/Check` call asks about
    /// `service` ("" for the server as a whole) on that connection. While the last answer is
    /// anything but SERVING, or the last check failed or took longer than the interval (at
    /// least a second), the server gets no new calls, unless no server is left. A server
    /// without the health service (UNIMPLEMENTED) counts as serving and is not checked
    /// again. A channel to one server does not check. Default: no checks; a server is judged
    /// by its connection alone.
    #[must_use]
    pub fn health_check(mut self, service: impl Into<String>, interval: Duration) -> Self {
        self.health_check = Some(HealthCheck {
            service: service.into(),
            interval,
        });
        self
    }

    /// How long QUIC may try alone before TCP is tried too ([`Fallback::Auto`]). When UDP is
    /// silently dropped, the first call waits about this long plus a TCP+TLS handshake.
    /// Default: 250 ms.
    #[must_use]
    pub fn fallback_delay(mut self, delay: Duration) -> Self {
        self.fallback.delay = delay;
        self
    }

    /// How long a fallback to TCP is remembered for this server (by authority, across
    /// channels in this process): new channels go straight to TCP meanwhile, and probe QUIC in
    /// the background. Default: 5 minutes.
    #[must_use]
    pub fn fallback_memory(mut self, memory: Duration) -> Self {
        self.fallback.memory = memory;
        self
    }

    /// While on TCP, how often to try QUIC again in the background. Default: 30 s.
    #[must_use]
    pub fn quic_probe_interval(mut self, interval: Duration) -> Self {
        self.fallback.probe_interval = interval;
        self
    }

    /// How long a QUIC handshake (or TCP connect and TLS handshake) may take. Default: 5 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    connection_setters! {
        peer: "server",
        incoming: "response",
        keep_alive: "Default: 10 s.",
        tonic_limit: "The tonic client has its own limit (`max_decoding_message_size`, also \
            4 MiB by default): raise both.",
    }

    /// Whether resumed QUIC connections send calls as 0-RTT early data. Default: `true`.
    ///
    /// Only calls to methods declared `NO_SIDE_EFFECTS` or `IDEMPOTENT` (the standard
    /// `idempotency_level` option) with a single request message (unary and server-streaming)
    /// go as early data, which saves a round trip on a resumed connection; other calls wait
    /// for the handshake. A call the server does not run from early data is sent again after
    /// the handshake. [`NoZeroRtt`](crate::NoZeroRtt) opts one call out. A call to a method
    /// that no generated table describes declares its kind and idempotency in its request's
    /// extensions. See [`ZeroRtt`](crate::ZeroRtt).
    #[must_use]
    pub fn zero_rtt(mut self, enabled: bool) -> Self {
        self.tls.early_data = enabled;
        self
    }

    /// How many servers' TLS session tickets are kept in memory, for resumption and 0-RTT.
    /// `0` turns resumption off. Default: 256.
    ///
    /// Channels with the same trust roots and session settings share one ticket cache in the
    /// process, so a new channel to a server resumes an earlier channel's session. The cache
    /// lives in memory only: rustls offers no way to serialise its session values, so tickets
    /// do not outlive the process.
    #[must_use]
    pub fn session_cache(mut self, servers: usize) -> Self {
        self.tls.sessions = servers;
        self
    }

    /// Connects now, failing if the server cannot be reached by the policy's transports.
    pub async fn connect(self) -> Result<Channel, Error> {
        let router = Arc::new(self.router()?);
        // Connecting is a large future (about 20 KiB: handshakes, the race between
        // transports): boxed, so that the caller's task does not keep room for it after.
        crate::sync::boxed(|| router.connect()).await?;
        Ok(Channel {
            inner: super::Inner::One(router),
        })
    }

    /// Builds the channel without connecting; the first call connects. Must be called
    /// inside a Tokio runtime.
    pub fn connect_lazy(self) -> Result<Channel, Error> {
        Ok(Channel::one(self.router()?))
    }

    /// The URI the channel was asked for.
    pub(super) fn uri(&self) -> &str {
        &self.uri
    }

    /// The same settings for another URI.
    pub(super) fn with_uri(mut self, uri: String) -> Self {
        self.uri = uri;
        self
    }

    /// The health checks of this server in a balanced channel, if any.
    pub(super) fn health_checks(&self) -> Option<&HealthCheck> {
        self.health_check.as_ref()
    }

    /// The channel's router, unconnected.
    pub(super) fn router(self) -> Result<Router, Error> {
        let target = self.target()?;
        let policy = self.fallback.policy;
        let quic = match policy {
            Fallback::TcpOnly => None,
            _ => Some(QuicConnector::new(
                &target,
                &self.tls,
                &self.config,
                self.connect_timeout,
                self.wire,
                self.unresponsive_after,
            )?),
        };
        let tcp = match policy {
            Fallback::QuicOnly => None,
            _ => Some(TcpConnector::new(
                &target,
                &self.tls,
                &self.config,
                self.connect_timeout,
            )?),
        };
        let calls = CallSettings {
            authority: target.authority,
            max_header_list_size: self.config.max_header_list_size,
            max_receive_message_size: self.config.max_receive_message_size,
        };
        Ok(Router::new(quic, tcp, calls, self.fallback))
    }

    /// The server, from the URI: `https://host[:port]`, port 443 by default.
    pub(super) fn target(&self) -> Result<Target, Error> {
        let invalid = |reason: &str| Error::InvalidUri {
            uri: self.uri.clone(),
            reason: reason.to_owned(),
        };
        let uri: Uri = self
            .uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid(
                "the scheme must be https (quicrpc always uses TLS)",
            ));
        }
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        Ok(Target {
            port: uri.port_u16().unwrap_or(443),
            authority,
            server_name: self.domain_name.clone().unwrap_or_else(|| host.clone()),
            host,
        })
    }
}

#[cfg(test)]
mod tests {
    /// Connecting's large future (about 20 KiB) is boxed: a task that awaits `connect` keeps
    /// no room for it once connected.
    #[test]
    fn the_connect_future_is_small() {
        let connecting = crate::Channel::builder("https://localhost:1").connect();
        let size = std::mem::size_of_val(&connecting);
        assert!(
            size <= 1024,
            "ChannelBuilder::connect's future is {size} bytes"
        );
    }
}
