//! rustls configs for both sides: always the `ring` provider and TLS 1.3 only.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;

use super::{Certificate, Identity};
use crate::Error;

/// The one crypto provider quicrpc uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Resumption sessions a server remembers; each resumed client needs one. An entry is a few
/// hundred bytes.
const SERVER_SESSIONS: usize = 4096;

/// A rustls server config for `identity` that offers `alpn`. With `early_data`, resumed
/// clients may send 0-RTT data. Session tickets are stateful and single-use either way, so a
/// replayed ClientHello cannot resume. With `client_roots`, clients must present a
/// certificate that chains to one of them.
pub(crate) fn server_config(
    identity: &Identity,
    alpn: &[&[u8]],
    early_data: bool,
    client_roots: &[Certificate],
) -> Result<rustls::ServerConfig, Error> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::tls_caused("protocol versions", e))?;
    let builder = if client_roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut store = RootCertStore::empty();
        for cert in client_roots.iter().flat_map(Certificate::certs) {
            store
                .add(cert.clone())
                .map_err(|e| Error::tls_caused("adding a client CA certificate", e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            provider(),
        )
        .build()
        .map_err(|e| Error::tls_caused("client certificate verifier", e))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(identity.chain().to_vec(), identity.key())
        .map_err(|e| Error::tls_caused("server certificate and key", e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SERVER_SESSIONS);
    // QUIC allows only "none" or "unbounded" here; flow control bounds early data instead.
    config.max_early_data_size = if early_data { u32::MAX } else { 0 };
    Ok(config)
}

/// How a client does TLS: what it trusts, what it presents, what it remembers. Equal values
/// make interchangeable configs, so it also keys the process-wide cache of QUIC client
/// configs (rustls resumes a session only under the config that made it).
#[derive(Clone, Debug)]
pub(crate) struct ClientTls {
    /// CAs trusted for the server's certificate; empty: the Mozilla roots (webpki-roots).
    pub(crate) roots: Vec<Certificate>,
    /// The certificate presented to servers that ask for one (mutual TLS).
    pub(crate) identity: Option<Identity>,
    /// How many servers' session tickets are kept (0: none, so no resumption).
    pub(crate) sessions: usize,
    /// Whether resumed connections may send 0-RTT early data.
    pub(crate) early_data: bool,
    /// Whether the server's certificate is checked at all (see [`AcceptAnyCertificate`]).
    pub(crate) verify: ServerVerification,
}

/// Whether a client checks the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ServerVerification {
    /// Against the trusted roots and the server name: the default, and the only safe choice.
    Verified,
    /// Not at all ([`AcceptAnyCertificate`]).
    AcceptAny,
}

impl ClientTls {
    /// The rustls config offering the protocols `alpn`, in order of preference.
    pub(crate) fn config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, Error> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::tls_caused("protocol versions", e))?;
        let builder = match self.verify {
            ServerVerification::AcceptAny => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider()))),
            ServerVerification::Verified => builder.with_root_certificates(self.root_store()?),
        };
        let mut config = match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain().to_vec(), identity.key())
                .map_err(|e| Error::tls_caused("client certificate and key", e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = match self.sessions {
            0 => rustls::client::Resumption::disabled(),
            servers => rustls::client::Resumption::in_memory_sessions(servers),
        };
        config.enable_early_data = self.early_data && self.sessions > 0;
        Ok(config)
    }

    fn root_store(&self) -> Result<RootCertStore, Error> {
        let mut store = RootCertStore::empty();
        if self.roots.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in self.roots.iter().flat_map(Certificate::certs) {
            store
                .add(cert.clone())
                .map_err(|e| Error::tls_caused("adding a CA certificate", e))?;
        }
        Ok(store)
    }

    /// What identifies a config: everything but the identity's key, which goes with its
    /// chain.
    fn key(&self) -> impl PartialEq + Hash + '_ {
        (
            &self.roots,
            self.identity.as_ref().map(Identity::chain),
            self.sessions,
            self.early_data,
            self.verify,
        )
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ClientTls {}

impl Hash for ClientTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// A server certificate verifier that accepts any certificate for any name: what
/// [`ChannelBuilder::danger_accept_invalid_certificates`](crate::ChannelBuilder::danger_accept_invalid_certificates)
/// installs. It still checks the handshake signature against the certificate's key (so the
/// server holds the key of the certificate it shows), but that proves nothing about who the
/// server is: anyone on the path can present a certificate of their own.
#[derive(Debug)]
pub(crate) struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(all(test, feature = "dev-certs"))]
mod tests {
    use super::super::SelfSigned;
    use super::*;

    #[test]
    fn self_signed_pems_parse_back() {
        let cert = SelfSigned::new(["localhost", "127.0.0.1"]).unwrap();
        let id = Identity::from_pem(cert.cert_pem(), cert.key_pem()).unwrap();
        assert_eq!(id.chain().len(), 1);
        assert_eq!(
            Certificate::from_pem(cert.ca_pem()).unwrap().certs().len(),
            1
        );
        server_config(&id, &[b"x"], true, &[]).unwrap();
        let tls = ClientTls {
            roots: vec![cert.ca_certificate()],
            identity: Some(id),
            sessions: 8,
            early_data: true,
            verify: ServerVerification::Verified,
        };
        tls.config(&[b"x"]).unwrap();
        let unverified = ClientTls {
            roots: Vec::new(),
            identity: None,
            verify: ServerVerification::AcceptAny,
            ..tls.clone()
        };
        unverified.config(&[b"x"]).unwrap();
        assert_eq!(tls, tls.clone());
        assert_ne!(tls, unverified);
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(Identity::from_pem("not pem", "not pem").is_err());
        assert!(Certificate::from_pem("").is_err());
        let cert = SelfSigned::new(["localhost"]).unwrap();
        assert!(Identity::from_pem(cert.cert_pem(), "garbage").is_err());
    }
}
