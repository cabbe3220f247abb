//! Message and metadata size limits: RESOURCE_EXHAUSTED, and the connection stays usable.

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, within};
use tonic::Code;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn oversized_request_is_resource_exhausted_and_connection_survives() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        payload: vec![1; 5 * MIB],
        ..echo("big")
    };
    let status = within("oversized request", client.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    within("next call", client.unary(echo("small")))
        .await
        .unwrap();
}

#[tokio::test]
async fn oversized_response_is_resource_exhausted_and_connection_survives() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = EchoRequest {
        response_size: (5 * MIB) as u32,
        ..echo("big reply")
    };
    let status = within("oversized response", client.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    within("next call", client.unary(echo("small")))
        .await
        .unwrap();
}

#[tokio::test]
async fn oversized_streamed_message_is_resource_exhausted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let requests = tokio_stream::iter([
        echo("ok"),
        EchoRequest {
            payload: vec![1; 5 * MIB],
            ..echo("big")
        },
    ]);
    let status = within("client stream", client.client_stream(requests))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    within("next call", client.unary(echo("small")))
        .await
        .unwrap();
}

#[tokio::test]
async fn receive_limits_are_configurable_on_both_sides() {
    let server =
        TestServer::start_with(Default::default(), |b| b.max_receive_message_size(1024)).await;
    let channel = within(
        "connect",
        server
            .channel_builder()
            .max_receive_message_size(2048)
            .connect(),
    )
    .await
    .unwrap();
    let mut client = EchoClient::new(channel);
    // Server side: 1 KiB.
    let status = within(
        "request",
        client.unary(EchoRequest {
            payload: vec![1; 2000],
            ..echo("")
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // Client side: 2 KiB.
    within(
        "small reply",
        client.unary(EchoRequest {
            response_size: 1500,
            ..echo("")
        }),
    )
    .await
    .unwrap();
    let status = within(
        "large reply",
        client.unary(EchoRequest {
            response_size: 3000,
            ..echo("")
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn raised_limits_let_large_messages_through() {
    let server =
        TestServer::start_with(Default::default(), |b| b.max_receive_message_size(8 * MIB)).await;
    let channel = within(
        "connect",
        server
            .channel_builder()
            .max_receive_message_size(8 * MIB)
            .connect(),
    )
    .await
    .unwrap();
    // tonic's codec has its own 4 MiB default: raise it too.
    let mut client = EchoClient::new(channel).max_decoding_message_size(8 * MIB);
    let reply = within(
        "6 MiB reply",
        client.unary(EchoRequest {
            response_size: (6 * MIB) as u32,
            ..echo("")
        }),
    )
    .await
    .unwrap();
    assert_eq!(reply.into_inner().payload.len(), 6 * MIB);
}

#[tokio::test]
async fn oversized_request_metadata_is_resource_exhausted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(echo("m"));
    request
        .metadata_mut()
        .insert("x-big", "v".repeat(20_000).parse().unwrap());
    let status = within("big metadata", client.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    within("next call", client.unary(echo("small")))
        .await
        .unwrap();
}

#[tokio::test]
async fn tonic_codec_limit_also_reports_resource_exhausted() {
    // quicrpc's limit raised to 8 MiB, the generated server's codec left at 4 MiB: the codec
    // catches the message, and its OUT_OF_RANGE is reported as gRPC's RESOURCE_EXHAUSTED.
    let server =
        TestServer::start_with(Default::default(), |b| b.max_receive_message_size(8 * MIB)).await;
    let mut client = server.client().await;
    let request = EchoRequest {
        payload: vec![1; 5 * MIB],
        ..echo("big")
    };
    let status = within("oversized request", client.unary(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let requests = tokio_stream::iter([EchoRequest {
        payload: vec![1; 5 * MIB],
        ..echo("big")
    }]);
    let status = within("oversized stream", client.bidi(requests)).await;
    let status = match status {
        Ok(response) => within("reply", response.into_inner().message())
            .await
            .unwrap_err(),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

/// Metadata of many small entries counts each entry's 32 bytes of overhead against the
/// 16 KiB limit, as HTTP/2 counts it: 600 empty entries are about 3 kB on the wire and 21 kB
/// as counted. RESOURCE_EXHAUSTED on both transports, and the connection stays usable.
#[tokio::test]
async fn many_small_metadata_entries_count_their_overhead_on_both_transports() {
    let server = TestServer::start().await;
    for policy in [quicrpc::Fallback::QuicOnly, quicrpc::Fallback::TcpOnly] {
        let mut client = server.client_over(policy).await;
        let mut request = tonic::Request::new(echo("m"));
        for i in 0..600 {
            let key: tonic::metadata::MetadataKey<_> = format!("x-{i}").parse().unwrap();
            request.metadata_mut().insert(key, "".parse().unwrap());
        }
        let status = within("many entries", client.unary(request))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{policy:?}: {status:?}"
        );
        within("next call", client.unary(echo("small")))
            .await
            .unwrap_or_else(|s| panic!("{policy:?}: {s:?}"));
    }
}

/// A gzip bomb: a small compressed message that decompresses past the 4 MiB receive limit
/// is refused (RESOURCE_EXHAUSTED), on both transports, and the connection stays usable.
#[tokio::test]
async fn a_compressed_message_over_the_limit_once_decompressed_is_refused_on_both_transports() {
    use tonic::codec::CompressionEncoding;

    let server = TestServer::start().await;
    for policy in [quicrpc::Fallback::QuicOnly, quicrpc::Fallback::TcpOnly] {
        let mut client = server
            .client_over(policy)
            .await
            .send_compressed(CompressionEncoding::Gzip);
        // 8 MiB of zeros: a few kB on the wire.
        let request = EchoRequest {
            payload: vec![0; 8 * MIB],
            ..echo("bomb")
        };
        let status = within("bomb", client.unary(request)).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{policy:?}: {status:?}"
        );
        within("next call", client.unary(echo("small")))
            .await
            .unwrap_or_else(|s| panic!("{policy:?}: {s:?}"));
    }
}

/// The server's receive limit holds on its TCP side too, not only tonic's own 4 MiB.
#[tokio::test]
async fn the_server_receive_limit_holds_over_tcp() {
    let server =
        TestServer::start_with(Default::default(), |b| b.max_receive_message_size(1024)).await;
    let mut client = server.client_over(quicrpc::Fallback::TcpOnly).await;
    let status = within(
        "request",
        client.unary(EchoRequest {
            payload: vec![1; 2000],
            ..echo("")
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    within("a small one", client.unary(echo("fits")))
        .await
        .expect("served");
}

/// A request the client cannot encode (over its own send limit) fails on the client with
/// tonic's status, OUT_OF_RANGE, on both transports: the handler never runs, and the
/// connection takes the next call.
#[tokio::test]
async fn a_request_over_the_clients_send_limit_fails_before_the_server() {
    let server = TestServer::start().await;
    for policy in [quicrpc::Fallback::QuicOnly, quicrpc::Fallback::TcpOnly] {
        let mut client = server
            .client_over(policy)
            .await
            .max_encoding_message_size(1024);
        let request = EchoRequest {
            payload: vec![1; 4096],
            ..echo("too big to send")
        };
        let status = within("unencodable request", client.unary(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{policy:?}: {status:?}");
        within("next call", client.unary(echo("small")))
            .await
            .unwrap();
    }
    let runs: Vec<_> = server.runs().into_iter().map(|run| run.method).collect();
    assert_eq!(runs, ["Unary", "Unary"]);
}
