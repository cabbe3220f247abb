//! tonic interceptors work unchanged with quicrpc: on the generated server, and on the client,
//! where what an interceptor adds reaches the server on both transports and an interceptor
//! that refuses stops the call before quicrpc sees it.

use quicrpc::{Fallback, Transport};
use quicrpc_tests::local_metrics::LocalMetrics;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestOptions, TestServer, echo, within};
use tonic::{Code, Request, Status};

/// Refuses calls without `authorization: Bearer let-me-in` (server side).
fn check_token(request: Request<()>) -> Result<Request<()>, Status> {
    match request.metadata().get("authorization") {
        Some(token) if token == "Bearer let-me-in" => Ok(request),
        _ => Err(Status::unauthenticated("no valid token")),
    }
}

/// Adds the token [`check_token`] wants (client side).
fn add_token(mut request: Request<()>) -> Result<Request<()>, Status> {
    request
        .metadata_mut()
        .insert("authorization", "Bearer let-me-in".parse().expect("ASCII"));
    Ok(request)
}

#[tokio::test]
async fn client_interceptor_metadata_reaches_the_server_on_both_transports() {
    let options = TestOptions {
        interceptor: Some(check_token),
        ..TestOptions::default()
    };
    let server = TestServer::start_with(options, |builder| builder).await;
    for (policy, transport) in [
        (Fallback::QuicOnly, Transport::Quic),
        (Fallback::TcpOnly, Transport::Tcp),
    ] {
        let channel = server.channel_over(policy).await;

        // Without the client interceptor: refused by the server's.
        let mut bare = EchoClient::new(channel.clone());
        let status = within("no token", bare.unary(echo("x"))).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, "no valid token"),
            "{transport:?}"
        );

        // With it: the token arrives, and the server's interceptor lets the call in.
        let mut authed = EchoClient::with_interceptor(channel, add_token);
        let response = within("with token", authed.unary(echo("in")))
            .await
            .unwrap_or_else(|status| panic!("{transport:?}: {status:?}"));
        assert_eq!(response.extensions().get(), Some(&transport));
        assert_eq!(response.into_inner().message, "in");
    }
    // Only the calls with the token reached the handler.
    assert_eq!(server.runs().len(), 2);
}

#[tokio::test]
async fn a_refusing_client_interceptor_stops_the_call_before_it_is_sent() {
    let mut metrics = LocalMetrics::start();
    let server = TestServer::start().await;
    let channel = server.channel().await;

    let mut refusing = EchoClient::with_interceptor(channel.clone(), |_: Request<()>| {
        Err(Status::permission_denied("refused locally"))
    });
    let status = within("refused", refusing.unary(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "refused locally")
    );

    // The same channel then makes a call: the one call quicrpc saw, on either side. (The
    // server counts a call when it arrives, before its handler, so before its response.)
    within("next call", EchoClient::new(channel).unary(echo("y")))
        .await
        .unwrap();
    for side in ["client", "server"] {
        let unary = [
            ("side", side),
            ("method", "/quicrpc.testing.Echo/Unary"),
            ("transport", "quic"),
        ];
        assert_eq!(
            metrics.get("quicrpc_calls_started_total", &unary),
            1,
            "{side}"
        );
    }
    assert_eq!(server.runs().len(), 1);
}
