//! Unknown services and methods, and compression through tonic's codec.

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{TestServer, echo, within};
use tonic::Code;
use tonic::codec::CompressionEncoding;

/// Calls `path` with an empty message through tonic's generic client.
async fn call_path(channel: quicrpc::Channel, path: &'static str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<EchoRequest, EchoRequest>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(echo("x")), path, codec)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn unknown_service_is_unimplemented() {
    let server = TestServer::start().await;
    let status = within(
        "call",
        call_path(server.channel().await, "/nope.Missing/Call"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn unknown_method_is_unimplemented() {
    let server = TestServer::start().await;
    let status = within(
        "call",
        call_path(server.channel().await, "/quicrpc.testing.Echo/Missing"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn gzip_both_ways() {
    let server = TestServer::start().await;
    let mut client = server
        .client()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let request = EchoRequest {
        payload: vec![0; 100_000],
        response_size: 100_000,
        ..echo("zip")
    };
    let response = within("gzip unary", client.unary(request)).await.unwrap();
    assert_eq!(response.metadata().get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(response.into_inner().payload.len(), 100_000);

    let stream_request = EchoRequest {
        response_count: 3,
        response_size: 50_000,
        ..echo("zip")
    };
    let mut stream = within("gzip stream", client.server_stream(stream_request))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(reply) = within("reply", stream.message()).await.unwrap() {
        assert_eq!(reply.payload.len(), 50_000);
        n += 1;
    }
    assert_eq!(n, 3);
}
