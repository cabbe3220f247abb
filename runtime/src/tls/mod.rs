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

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// A certificate chain and its private key: what a server presents, or a client presents
/// for mutual TLS.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    // The PEM text as given, for the TCP side (tonic takes PEM).
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Identity {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn from_pem(chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(chain.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("reading certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(Error::Tls("certificate PEM holds no certificate".into()));
        }
        let key_pem = key.as_ref().to_vec();
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| Error::Tls(format!("reading private key PEM: {e}")))?;
        Ok(Self {
            chain_pem: to_pem_bundle(&chain),
            chain,
            key,
            key_pem,
        })
    }

    /// The certificate chain, leaf first, DER-encoded.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The identity in tonic's form, for the TCP side.
    pub(crate) fn to_tonic(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.chain_pem, &self.key_pem)
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            chain_pem: self.chain_pem.clone(),
            key_pem: self.key_pem.clone(),
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
#[derive(Clone, Debug)]
pub struct Certificate {
    certs: Vec<CertificateDer<'static>>,
}

impl Certificate {
    /// Reads every certificate in a PEM bundle.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let certs = CertificateDer::pem_slice_iter(pem.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Tls(format!("reading certificate PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Tls("certificate PEM holds no certificate".into()));
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

    /// The certificates in tonic's form, for the TCP side.
    pub(crate) fn to_tonic(&self) -> tonic::transport::Certificate {
        tonic::transport::Certificate::from_pem(to_pem_bundle(&self.certs))
    }
}

/// PEM text for DER certificates.
fn to_pem_bundle(certs: &[CertificateDer<'static>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = String::new();
    for cert in certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            // base64 output is ASCII.
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

/// A development CA and a server identity it signed, generated in memory.
///
/// ```
/// let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
/// let identity = cert.identity();            // for Server::builder().tls(..)
/// let ca = cert.ca_certificate();            // for Channel::builder(..).ca_certificate(..)
/// # Ok::<(), quicrpc::Error>(())
/// ```
///
/// Not for production: the CA's key lives only in this value, and every run makes a new one.
#[cfg(feature = "dev-certs")]
#[derive(Clone, Debug)]
pub struct SelfSigned {
    ca: Certificate,
    ca_pem: String,
    identity: Identity,
    chain_pem: String,
    key_pem: String,
}

#[cfg(feature = "dev-certs")]
impl SelfSigned {
    /// Generates a CA and a server certificate for `names` (DNS names or IP addresses),
    /// valid from now until 2100.
    pub fn new<I, S>(names: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };

        let err = |e: rcgen::Error| Error::Tls(format!("generating certificate: {e}"));
        let names: Vec<String> = names.into_iter().map(Into::into).collect();

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "quicrpc development CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf_params = CertificateParams::new(names.clone()).map_err(err)?;
        if let Some(first) = names.first() {
            leaf_params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let leaf_key = KeyPair::generate().map_err(err)?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

        let chain_pem = leaf.pem();
        let key_pem = leaf_key.serialize_pem();
        let ca_pem = ca_cert.pem();
        Ok(Self {
            ca: Certificate::from_der(ca_cert.der().to_vec()),
            ca_pem,
            identity: Identity::from_pem(&chain_pem, &key_pem)?,
            chain_pem,
            key_pem,
        })
    }

    /// The server identity (certificate and key).
    pub fn identity(&self) -> Identity {
        self.identity.clone()
    }

    /// The CA certificate that signed the identity: what clients must trust.
    pub fn ca_certificate(&self) -> Certificate {
        self.ca.clone()
    }

    /// The CA certificate, PEM-encoded.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate, PEM-encoded.
    pub fn cert_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The server's private key, PEM-encoded (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// The one crypto provider quicrpc uses.
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
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = if client_roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut store = RootCertStore::empty();
        for cert in client_roots.iter().flat_map(|c| &c.certs) {
            store
                .add(cert.clone())
                .map_err(|e| Error::Tls(format!("adding client CA certificate: {e}")))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            provider(),
        )
        .build()
        .map_err(|e| Error::Tls(format!("client certificate verifier: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key())
        .map_err(|e| Error::Tls(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SERVER_SESSIONS);
    // QUIC allows only "none" or "unbounded" here; flow control bounds early data instead.
    config.max_early_data_size = if early_data { u32::MAX } else { 0 };
    Ok(config)
}

/// A rustls client config that trusts `roots` (or the Mozilla roots when empty) and offers
/// `alpn`. It keeps session tickets for up to `sessions` servers (0: none, so no resumption);
/// with `early_data`, resumed connections may send 0-RTT data. With `identity`, it presents
/// that certificate to servers that ask for one (mutual TLS). With `accept_any_certificate`,
/// the server's certificate is not verified at all (see [`AcceptAnyCertificate`]).
pub(crate) fn client_config(
    roots: &[Certificate],
    alpn: &[&[u8]],
    sessions: usize,
    early_data: bool,
    identity: Option<&Identity>,
    accept_any_certificate: bool,
) -> Result<rustls::ClientConfig, Error> {
    let mut store = RootCertStore::empty();
    if roots.is_empty() {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for cert in roots.iter().flat_map(|c| &c.certs) {
        store
            .add(cert.clone())
            .map_err(|e| Error::Tls(format!("adding CA certificate: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = if accept_any_certificate {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
    } else {
        builder.with_root_certificates(store)
    };
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key())
            .map_err(|e| Error::Tls(format!("client certificate and key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = if sessions == 0 {
        rustls::client::Resumption::disabled()
    } else {
        rustls::client::Resumption::in_memory_sessions(sessions)
    };
    config.enable_early_data = early_data && sessions > 0;
    Ok(config)
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
    use super::*;

    #[test]
    fn self_signed_pems_parse_back() {
        let cert = SelfSigned::new(["localhost", "127.0.0.1"]).unwrap();
        let id = Identity::from_pem(cert.cert_pem(), cert.key_pem()).unwrap();
        assert_eq!(id.chain().len(), 1);
        // The PEM bundle made from DER parses back to the same certificate.
        let again = Certificate::from_pem(to_pem_bundle(id.chain())).unwrap();
        assert_eq!(again.certs(), id.chain());
        assert_eq!(
            Certificate::from_pem(cert.ca_pem()).unwrap().certs().len(),
            1
        );
        server_config(&id, &[b"x"], true, &[]).unwrap();
        client_config(&[cert.ca_certificate()], &[b"x"], 8, true, Some(&id), false).unwrap();
        client_config(&[], &[b"x"], 8, true, None, true).unwrap();
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(Identity::from_pem("not pem", "not pem").is_err());
        assert!(Certificate::from_pem("").is_err());
        let cert = SelfSigned::new(["localhost"]).unwrap();
        assert!(Identity::from_pem(cert.cert_pem(), "garbage").is_err());
    }
}
