//! What the crate's unit tests share: a bounded wait, and a QUIC client endpoint on loopback
//! that trusts a test certificate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{ClientTls, SelfSigned, ServerVerification};

/// `future`, or a panic naming `what` after 10 s.
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A QUIC client endpoint on 127.0.0.1 that verifies servers against `cert`'s CA and offers
/// `alpn`.
pub(crate) fn client_endpoint(cert: &SelfSigned, alpn: &[u8]) -> quinn::Endpoint {
    let tls = ClientTls {
        roots: vec![cert.ca_certificate()],
        identity: None,
        sessions: 0,
        early_data: false,
        verify: ServerVerification::Verified,
    };
    let tls = tls.config(&[alpn]).expect("client TLS config");
    let tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC client TLS");
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client");
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(tls)));
    client
}
