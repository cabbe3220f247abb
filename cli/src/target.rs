//! Where to connect and how: the address, trust, transport and connect timeout shared by
//! `call`, `list`, `describe` and `bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use quicrpc::{Channel, Fallback, QuicWire};

use crate::error::CliError;
use crate::input::parse_duration;

/// The server and how to reach it.
#[derive(Clone, Debug, Args)]
pub(crate) struct TargetArgs {
    /// The server: HOST:PORT or https://HOST:PORT.
    #[arg(value_name = "ADDR")]
    pub(crate) addr: String,

    /// Which transport: `auto` (QUIC, falling back to gRPC over TCP), `quic`, `h3` (gRPC
    /// over HTTP/3, which any gRPC-over-HTTP/3 server speaks) or `tcp`.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub(crate) transport: TransportArg,

    /// Trusts the CA certificate(s) in this PEM file for the server's certificate (instead
    /// of the Mozilla roots). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Vec<PathBuf>,

    /// DANGEROUS: does not verify the server's certificate at all, so anyone on the path can
    /// impersonate the server and read or change every call. For development only, on both
    /// transports. Prefer --ca FILE.
    #[arg(long)]
    pub(crate) insecure_skip_verify: bool,

    /// The name checked against the server's certificate (default: ADDR's host).
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,

    /// How long connecting (QUIC handshake, or TCP connect and TLS) may take, e.g. 10s or
    /// 500ms; also how long the server's reflection service has to answer each request. At
    /// most 8760h (365 days).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,
}

/// `--transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransportArg {
    /// QUIC, falling back to gRPC over TCP when QUIC does not connect.
    Auto,
    /// QUIC only, quicrpc's own wire.
    Quic,
    /// gRPC over HTTP/3 only (gRFC G2), against a quicrpc server or any other.
    H3,
    /// gRPC over HTTP/2 over TCP only.
    Tcp,
}

impl TransportArg {
    /// The name `--transport` takes.
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Quic => "quic",
            Self::H3 => "h3",
            Self::Tcp => "tcp",
        }
    }
}

impl TargetArgs {
    /// The address as a URI for [`Channel::builder`]: `https://` is added to a bare
    /// HOST:PORT.
    pub(crate) fn uri(&self) -> Result<String, CliError> {
        let addr = self.addr.trim();
        let uri = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("https://{addr}")
        };
        let bad = |why: &str| {
            CliError::Usage(format!(
                "bad address {:?}: {why} (expected HOST:PORT or https://HOST:PORT)",
                self.addr
            ))
        };
        let parsed: http::Uri = uri.parse().map_err(|e| bad(&format!("{e}")))?;
        if parsed.scheme_str() != Some("https") {
            return Err(bad("quicrpc always uses TLS, so the scheme must be https"));
        }
        if parsed.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if parsed.port().is_none() {
            return Err(bad("no port"));
        }
        if parsed.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("an address has no path"));
        }
        Ok(uri)
    }

    /// Connects by these settings. Any failure to connect is [`CliError::Unreachable`],
    /// with a hint at what to do.
    pub(crate) async fn connect(&self) -> Result<Channel, CliError> {
        let builder = self.builder()?;
        // The builder bounds each handshake; this bounds everything else too (name
        // resolution, a QUIC attempt followed by a TCP one).
        // Saturating, though --connect-timeout is at most a year (see `parse_duration`): a
        // timeout must never be what panics.
        let limit = self
            .connect_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1));
        match tokio::time::timeout(limit, builder.connect()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(self.unreachable(&e.to_string())),
            Err(_) => Err(self.unreachable(&format!("no connection within {limit:?}"))),
        }
    }

    fn builder(&self) -> Result<quicrpc::ChannelBuilder, CliError> {
        let mut builder = Channel::builder(self.uri()?).connect_timeout(self.connect_timeout);
        for path in &self.ca {
            let pem = std::fs::read(path)
                .map_err(|e| CliError::NoInput(format!("reading --ca {}: {e}", path.display())))?;
            let cert = quicrpc::tls::Certificate::from_pem(pem)
                .map_err(|e| CliError::Data(format!("--ca {}: {e}", path.display())))?;
            builder = builder.ca_certificate(cert);
        }
        if let Some(name) = &self.server_name {
            builder = builder.domain_name(name.clone());
        }
        let policy = match self.transport {
            TransportArg::Auto => Fallback::Auto,
            TransportArg::Quic | TransportArg::H3 => Fallback::QuicOnly,
            TransportArg::Tcp => Fallback::TcpOnly,
        };
        if self.transport == TransportArg::H3 {
            builder = builder.quic_wire(QuicWire::Http3);
        }
        if self.insecure_skip_verify {
            eprintln!(
                "warning: --insecure-skip-verify: the server's certificate is NOT verified; \
                 anyone on the path could be answering"
            );
            builder = builder.danger_accept_invalid_certificates(true);
        }
        Ok(builder.fallback(policy))
    }

    fn unreachable(&self, reason: &str) -> CliError {
        let mut message = format!("cannot connect to {}: {reason}", self.addr);
        if looks_like_certificate_trouble(reason) {
            message.push_str(
                "\nhint: the server's certificate was not accepted. Trust its CA with \
                 --ca FILE (PEM), check the name with --server-name, or, for development \
                 only, --insecure-skip-verify (dangerous: no verification at all)",
            );
        } else {
            message.push_str(&format!(
                "\nhint: is a quicrpc or gRPC server listening at {}? (tried with --transport \
                 {}, --connect-timeout {:?})",
                self.addr,
                self.transport.name(),
                self.connect_timeout
            ));
        }
        CliError::Unreachable(message)
    }
}

/// Whether a connection error reads as a refused certificate (rustls' and webpki's words
/// for it, as quinn and tonic pass them on).
fn looks_like_certificate_trouble(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "notvalidforname",
        "badsignature",
        "expired",
    ]
    .iter()
    .any(|word| reason.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: &str) -> TargetArgs {
        TargetArgs {
            addr: addr.into(),
            transport: TransportArg::Auto,
            ca: Vec::new(),
            insecure_skip_verify: false,
            server_name: None,
            connect_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(target("localhost:1").uri().unwrap(), "https://localhost:1");
        assert_eq!(target("https://[::1]:7").uri().unwrap(), "https://[::1]:7");
        for bad in ["localhost", "http://localhost:1", "::::", "", "host:1/path"] {
            assert!(
                matches!(target(bad).uri(), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn certificate_errors_are_recognised() {
        assert!(looks_like_certificate_trouble(
            "invalid peer certificate: UnknownIssuer"
        ));
        assert!(!looks_like_certificate_trouble("connection refused"));
    }
}
