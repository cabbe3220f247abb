//! Certificates and keys. TLS is always on: QUIC has no plaintext mode.
//!
//! - [`Identity`]: a server's certificate chain and private key, from PEM.
//! - [`Certificate`]: a CA certificate that a client trusts, from PEM.
//! - [`SelfSigned`] (feature `dev-certs`, on by default): a throwaway CA and server identity
//!   for development and tests.
//! - [`PeerCertificates`]: the client certificate chain a server verified (mutual TLS), in
//!   each request's extensions.
//!
//! Everything uses rustls with the `ring` crypto provider and TLS 1.3 only.

mod config;
#[cfg(feature = "dev-certs")]
mod self_signed;

use std::fmt;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub(crate) use self::config::{ClientTls, ServerVerification, server_config};
#[cfg(feature = "dev-certs")]
pub use self::self_signed::SelfSigned;
use crate::Error;

/// A certificate chain and its private key: what a server presents, or a client presents
/// for mutual TLS.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn from_pem(chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(chain.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::tls_caused("reading certificate PEM", e))?;
        if chain.is_empty() {
            return Err(Error::tls("certificate PEM holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(key.as_ref())
            .map_err(|e| Error::tls_caused("reading private key PEM", e))?;
        Ok(Self { chain, key })
    }

    /// The certificate chain, leaf first, DER-encoded.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// One or more certificates a client trusts as roots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Certificate {
    certs: Vec<CertificateDer<'static>>,
}

impl Certificate {
    /// Reads every certificate in a PEM bundle.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let certs = CertificateDer::pem_slice_iter(pem.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::tls_caused("reading certificate PEM", e))?;
        if certs.is_empty() {
            return Err(Error::tls("certificate PEM holds no certificate"));
        }
        Ok(Self { certs })
    }

    /// Wraps one DER-encoded certificate.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        Self {
            certs: vec![CertificateDer::from(der.into())],
        }
    }

    /// The certificates, DER-encoded.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

/// The certificate chain a client presented and the server verified (mutual TLS), end-entity
/// certificate first.
///
/// A server that requires client certificates
/// ([`ServerBuilder::client_ca_certificate`](crate::ServerBuilder::client_ca_certificate))
/// puts it into every request's extensions, on QUIC and on TCP alike:
///
/// ```
/// # fn handler(request: tonic::Request<()>) -> Result<(), tonic::Status> {
/// let peer = request
///     .extensions()
///     .get::<quicrpc::tls::PeerCertificates>()
///     .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
/// let names = peer.subject_alt_names(); // e.g. ["agent-7.example"]
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificates {
    chain: Arc<Vec<CertificateDer<'static>>>,
}

impl PeerCertificates {
    pub(crate) fn new(chain: Arc<Vec<CertificateDer<'static>>>) -> Option<Self> {
        (!chain.is_empty()).then_some(Self { chain })
    }

    /// The chain, end-entity certificate first, DER-encoded.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The end-entity certificate's subject alternative names: DNS names, IP addresses,
    /// URIs and e-mail addresses, as text. Empty if it has none (or cannot be parsed, which
    /// a certificate that passed verification can).
    pub fn subject_alt_names(&self) -> Vec<String> {
        use x509_parser::extensions::GeneralName;
        use x509_parser::prelude::FromDer;

        let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(&self.chain[0])
        else {
            return Vec::new();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                    Some((*s).to_owned())
                }
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes)
                        .ok()
                        .map(|b| std::net::IpAddr::from(b).to_string()),
                    16 => <[u8; 16]>::try_from(*bytes)
                        .ok()
                        .map(|b| std::net::IpAddr::from(b).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}
