//! Mutual TLS on both transports: the server requires a client certificate from its CA, the
//! client presents one, and handlers see the verified identity the same way on QUIC and TCP.

use quicrpc::Fallback;
use quicrpc::tls::SelfSigned;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestOptions, TestServer, echo, within};
use tonic::Code;

const TRANSPORTS: [Fallback; 2] = [Fallback::QuicOnly, Fallback::TcpOnly];

fn client_ca() -> SelfSigned {
    SelfSigned::new(["agent-7.example", "10.1.2.3"]).expect("client certificate")
}

async fn mtls_server(ca: &SelfSigned) -> TestServer {
    let ca = ca.ca_certificate();
    TestServer::start_with(TestOptions::default(), |b| b.client_ca_certificate(ca)).await
}

/// The first call's result on a channel built by `builder` (connecting lazily: with TLS 1.3
/// the client may finish its side of the handshake before the server rejects its
/// certificate).
async fn first_call(
    builder: quicrpc::ChannelBuilder,
) -> Result<tonic::Response<quicrpc_tests::pb::EchoReply>, tonic::Status> {
    let mut client = EchoClient::new(builder.connect_lazy().expect("build channel"));
    within("first call", client.unary(echo("hello"))).await
}

#[tokio::test]
async fn verified_client_identity_reaches_handlers_on_both_transports() {
    let clients = client_ca();
    let server = mtls_server(&clients).await;
    for policy in TRANSPORTS {
        let builder = server
            .any_transport_builder()
            .fallback(policy)
            .identity(clients.identity());
        let reply = first_call(builder)
            .await
            .unwrap_or_else(|s| panic!("{policy:?}: {s:?}"))
            .into_inner();
        assert_eq!(reply.client_names, "agent-7.example,10.1.2.3", "{policy:?}");
    }
}

#[tokio::test]
async fn clients_without_a_valid_certificate_are_refused_on_both_transports() {
    let clients = client_ca();
    let server = mtls_server(&clients).await;
    let stranger = SelfSigned::new(["stranger.example"]).expect("certificate");
    for policy in TRANSPORTS {
        let without = server.any_transport_builder().fallback(policy);
        let unknown_ca = without.clone().identity(stranger.identity());
        for (what, builder) in [("no certificate", without), ("unknown CA", unknown_ca)] {
            let status = first_call(builder)
                .await
                .expect_err(&format!("{policy:?}, {what}: refused"));
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "{policy:?}, {what}: {status:?}"
            );
            println!("{policy:?}, {what}: {}", status.message());
        }
    }
    // The server is unharmed: a client with a good certificate still gets through.
    let builder = server.channel_builder().identity(clients.identity());
    first_call(builder).await.expect("valid client served");
}

#[tokio::test]
async fn without_mtls_handlers_see_no_client_identity() {
    let server = TestServer::start().await;
    let clients = client_ca();
    // A client certificate nobody asked for is not sent, and not reported.
    let builder = server.channel_builder().identity(clients.identity());
    let reply = first_call(builder).await.expect("call").into_inner();
    assert_eq!(reply.client_names, "");
}

/// With two client CAs, clients from either are accepted, on both transports: tonic's
/// `client_ca_root` replaces its roots, so the TCP side once trusted only the last CA given.
#[tokio::test]
async fn every_client_ca_is_trusted_on_both_transports() {
    let first = client_ca();
    let second = SelfSigned::new(["agent-8.example"]).expect("client certificate");
    let (ca1, ca2) = (first.ca_certificate(), second.ca_certificate());
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.client_ca_certificate(ca1).client_ca_certificate(ca2)
    })
    .await;
    for (clients, name) in [(&first, "agent-7.example"), (&second, "agent-8.example")] {
        for policy in TRANSPORTS {
            let builder = server
                .any_transport_builder()
                .fallback(policy)
                .identity(clients.identity());
            let reply = first_call(builder)
                .await
                .unwrap_or_else(|s| panic!("{name} over {policy:?}: {s:?}"))
                .into_inner();
            assert!(
                reply.client_names.starts_with(name),
                "{policy:?}: {reply:?}"
            );
        }
    }
}
