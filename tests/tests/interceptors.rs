//! tonic interceptors work unchanged over QUIC: on the generated server and on the client.

use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestOptions, TestServer, echo, within};
use tonic::{Code, Request, Status};

/// Refuses calls without `authorization: Bearer let-me-in`.
fn check_token(request: Request<()>) -> Result<Request<()>, Status> {
    match request.metadata().get("authorization") {
        Some(token) if token == "Bearer let-me-in" => Ok(request),
        _ => Err(Status::unauthenticated("no valid token")),
    }
}

#[tokio::test]
async fn server_and_client_interceptors_work_over_quic() {
    let options = TestOptions {
        interceptor: Some(check_token),
        ..TestOptions::default()
    };
    let server = TestServer::start_with(options, |builder| builder).await;
    let channel = server.channel().await;

    // Without the client interceptor: refused by the server's.
    let mut bare = EchoClient::new(channel.clone());
    let status = within("no token", bare.unary(echo("x"))).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "no valid token")
    );

    // With it: let in.
    let mut authed = EchoClient::with_interceptor(channel, |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", "Bearer let-me-in".parse().expect("ASCII"));
        Ok(request)
    });
    let reply = within("with token", authed.unary(echo("in")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "in");

    // A client interceptor that refuses: the call ends locally with its status.
    let mut refusing = EchoClient::with_interceptor(server.channel().await, |_: Request<()>| {
        Err(Status::permission_denied("refused locally"))
    });
    let status = within("refused", refusing.unary(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "refused locally")
    );
}
