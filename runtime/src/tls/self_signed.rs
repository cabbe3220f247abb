//! [`SelfSigned`]: development certificates made at run time (feature `dev-certs`).

use super::{Certificate, Identity};
use crate::Error;

/// A development CA and a server identity it signed, generated in memory.
///
/// ```
/// let cert = quicrpc::tls::SelfSigned::new(["localhost"])?;
/// let identity = cert.identity();            // for Server::builder().identity(..)
/// let ca = cert.ca_certificate();            // for Channel::builder(..).ca_certificate(..)
/// # Ok::<(), quicrpc::Error>(())
/// ```
///
/// Not for production: the CA's key lives only in this value, and every run makes a new one.
#[derive(Clone)]
pub struct SelfSigned {
    ca: Certificate,
    ca_pem: String,
    identity: Identity,
    chain_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The certificates are public; the server's private key is not printed.
        f.debug_struct("SelfSigned")
            .field("ca_pem", &self.ca_pem)
            .field("chain_pem", &self.chain_pem)
            .field("identity", &self.identity)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

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

        let err = |e: rcgen::Error| Error::tls_caused("generating a certificate", e);
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

#[cfg(test)]
mod tests {
    use super::SelfSigned;

    #[test]
    fn debug_does_not_print_the_private_key() {
        let cert = SelfSigned::new(["localhost"]).expect("certificate");
        let debug = format!("{cert:?}");
        let key_body = cert
            .key_pem()
            .lines()
            .find(|line| !line.starts_with("-----"))
            .expect("a PEM body line");
        assert!(!debug.contains(key_body), "the key is in {debug}");
        assert!(!debug.contains("PRIVATE KEY"), "the key is in {debug}");
        assert!(debug.contains("<redacted>"));
    }
}
