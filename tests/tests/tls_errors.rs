//! TLS failures are refused with a clear error on both transports, and the server keeps
//! serving: a certificate for another name, a certificate from an unknown CA, and (QUIC) a
//! client that offers no protocol the server speaks.

use quicrpc::Fallback;
use quicrpc::tls::SelfSigned;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, within};
use tonic::Code;

const TRANSPORTS: [Fallback; 2] = [Fallback::QuicOnly, Fallback::TcpOnly];

/// The first call's status on a lazily connected channel.
async fn first_call_status(builder: quicrpc::ChannelBuilder) -> tonic::Status {
    let mut client = EchoClient::new(builder.connect_lazy().expect("build channel"));
    within("first call", client.unary(echo("hello")))
        .await
        .expect_err("TLS must fail")
}

#[tokio::test]
async fn wrong_server_name_is_refused_on_both_transports() {
    let server = TestServer::start().await;
    for policy in TRANSPORTS {
        let builder = server
            .any_transport_builder()
            .fallback(policy)
            .domain_name("elsewhere.example");
        let status = first_call_status(builder).await;
        assert_eq!(status.code(), Code::Unavailable, "{policy:?}: {status:?}");
        assert!(
            status.message().contains("not valid for name"),
            "{policy:?}: the reason is named: {}",
            status.message()
        );
    }
}

#[tokio::test]
async fn unknown_certificate_authority_is_refused_on_both_transports() {
    let server = TestServer::start().await;
    let other = SelfSigned::new(["localhost"]).expect("certificate");
    for policy in TRANSPORTS {
        let builder =
            quicrpc::Channel::builder(format!("https://localhost:{}", server.addr.port()))
                .ca_certificate(other.ca_certificate())
                .fallback(policy);
        let status = first_call_status(builder).await;
        assert_eq!(status.code(), Code::Unavailable, "{policy:?}: {status:?}");
        assert!(
            status.message().contains("invalid peer certificate"),
            "{policy:?}: the reason is named: {}",
            status.message()
        );
    }
    // Still serving.
    let mut client = server.client().await;
    within("call", client.unary(echo("ok")))
        .await
        .expect("served");
}

#[tokio::test]
async fn alpn_mismatch_is_refused_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind");
    let error = within(
        "handshake",
        endpoint
            .connect_with(
                // HTTP/2's ALPN, which the QUIC endpoint does not speak (it speaks quicrpc/1
                // and h3).
                quicrpc_tests::raw::client_config_offering(&server.cert.ca_certificate(), b"h2"),
                server.addr,
                "localhost",
            )
            .expect("connect"),
    )
    .await
    .expect_err("no common protocol");
    let message = error.to_string();
    println!("ALPN h2 against quicrpc/1 and h3: {message}");
    assert!(
        message.contains("120"),
        "no_application_protocol alert: {message}"
    );

    let mut client = server.client().await;
    within("call", client.unary(echo("ok")))
        .await
        .expect("served");
}

/// A CA and a certificate for `name` signed by it that expired in 2021: (CA PEM, identity).
fn expired(name: &str) -> (quicrpc::tls::Certificate, quicrpc::tls::Identity) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, date_time_ymd};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    (
        quicrpc::tls::Certificate::from_pem(ca.pem()).expect("CA PEM"),
        quicrpc::tls::Identity::from_pem(cert.pem(), key.serialize_pem()).expect("identity"),
    )
}

#[tokio::test]
async fn expired_certificates_are_refused_on_both_sides_and_both_transports() {
    // The server's certificate has expired.
    let (ca, identity) = expired("localhost");
    let server = TestServer::start_with(Default::default(), |b| b.identity(identity)).await;
    let port = server.addr.port();
    for policy in TRANSPORTS {
        let builder = quicrpc::Channel::builder(format!("https://localhost:{port}"))
            .ca_certificate(ca.clone())
            .fallback(policy);
        let status = first_call_status(builder).await;
        assert_eq!(status.code(), Code::Unavailable, "{policy:?}: {status:?}");
        assert!(
            status.message().to_lowercase().contains("expired"),
            "{policy:?}: the reason is named: {}",
            status.message()
        );
    }

    // The client's certificate has expired (mutual TLS).
    let (client_ca, client_identity) = expired("agent.example");
    let server =
        TestServer::start_with(Default::default(), |b| b.client_ca_certificate(client_ca)).await;
    for policy in TRANSPORTS {
        let builder = server
            .any_transport_builder()
            .fallback(policy)
            .identity(client_identity.clone());
        let status = first_call_status(builder).await;
        assert_eq!(status.code(), Code::Unavailable, "{policy:?}: {status:?}");
        println!(
            "{policy:?}, expired client certificate: {}",
            status.message()
        );
    }
}

/// A raw TLS client for the server's TCP side offering only `versions`, with ALPN `h2`:
/// whether its handshake completes.
async fn tcp_handshake_with(
    server: &TestServer,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(), std::io::Error> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in server.cert.ca_certificate().certs() {
        roots.add(cert.clone()).expect("CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("TCP connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    within("TLS handshake", connector.connect(name, tcp))
        .await
        .map(drop)
}

/// The TCP side speaks TLS 1.3 only, as QUIC does: a client offering only TLS 1.2 fails its
/// handshake, one offering 1.3 completes it, and the server keeps serving.
#[tokio::test]
async fn tls_1_2_is_refused_on_tcp() {
    let server = TestServer::start().await;
    let refused = tcp_handshake_with(&server, &[&rustls::version::TLS12]).await;
    let error = refused.expect_err("TLS 1.2 must be refused");
    println!("TLS 1.2 refused: {error}");
    tcp_handshake_with(&server, &[&rustls::version::TLS13])
        .await
        .expect("TLS 1.3 is served");
    let mut client = server.client_over(Fallback::TcpOnly).await;
    within("call", client.unary(echo("still serving")))
        .await
        .expect("served");
}

/// The client's TCP side speaks TLS 1.3 only too: against a server that offers only TLS 1.2
/// its call fails with UNAVAILABLE, naming the protocol version, rather than settling for
/// 1.2.
#[tokio::test]
async fn the_tcp_client_refuses_tls_1_2() {
    use rustls::pki_types::pem::PemObject as _;

    let cert = SelfSigned::new(["localhost"]).expect("certificate");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem().as_bytes()).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(cert.identity().chain().to_vec(), key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        acceptor.accept(tcp).await.map(drop)
    });

    let builder = quicrpc::Channel::builder(format!("https://localhost:{port}"))
        .ca_certificate(cert.ca_certificate())
        .fallback(Fallback::TcpOnly);
    let status = first_call_status(builder).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let server_side = within("server's handshake", server)
        .await
        .expect("server task");
    let error = server_side.expect_err("the handshake must fail");
    println!("client: {}; server: {error}", status.message());
    assert!(
        status.message().contains("ProtocolVersion"),
        "the client names the protocol version: {status:?}"
    );
}
