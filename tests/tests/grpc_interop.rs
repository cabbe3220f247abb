//! gRPC's interop suite (`grpc.testing`) against quicrpc's TestService, every case over QUIC,
//! over gRPC over HTTP/3 and over TCP: one test per case and transport, named
//! `{case}_over_{quic,h3,tcp}`. The cases,
//! their sizes and checks are in `quicrpc_tests::interop` (the public interop descriptions);
//! the table of results is in `docs/interop.md`. A Python grpcio client runs the cases its
//! API can express against the same server's TCP side
//! (`python_grpcio_client_runs_the_cases_over_tcp`).

use quicrpc::Transport;
use quicrpc_tests::interop::{Case, InteropServer, run_case};
use quicrpc_tests::run_foreign_client;

/// Runs `case` over `transport` against a fresh server.
async fn run(case: Case, transport: Transport) {
    let server = InteropServer::start().await;
    run_case(case, &server, transport).await;
}

/// Whether `tests/python/grpc_testing_client.py` runs `case`: all but those that need a
/// message's compressed flag, which grpcio neither shows nor sets message by message, and
/// concurrent_large_unary.
fn python_runs(case: Case) -> bool {
    !matches!(
        case,
        Case::ServerCompressedUnary
            | Case::ClientCompressedStreaming
            | Case::ServerCompressedStreaming
            | Case::ConcurrentLargeUnary
    )
}

#[tokio::test]
async fn python_grpcio_client_runs_the_cases_over_tcp() {
    let server = InteropServer::start().await;
    let run = run_foreign_client(
        "python3",
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/grpc_testing_client.py"),
        &server.server,
        "it needs python3 -m pip install grpcio grpcio-tools",
    )
    .await;
    for case in Case::ALL.into_iter().filter(|c| python_runs(*c)) {
        run.assert_passed("python3", case.name());
    }
    assert_eq!(server.server.stats.quic_connections(), 0, "all over TCP");
}

#[test]
fn every_case_has_a_test_per_transport() {
    // The functions below, by name: a case added to `Case::ALL` must be added here too.
    let source = include_str!("grpc_interop.rs");
    for case in Case::ALL {
        for transport in ["quic", "tcp", "h3"] {
            let name = format!("async fn {}_over_{transport}()", case.name());
            assert!(source.contains(&name), "no test {name}");
        }
    }
}

#[tokio::test]
async fn empty_unary_over_quic() {
    run(Case::EmptyUnary, Transport::Quic).await;
}

#[tokio::test]
async fn empty_unary_over_tcp() {
    run(Case::EmptyUnary, Transport::Tcp).await;
}

#[tokio::test]
async fn empty_unary_over_h3() {
    run(Case::EmptyUnary, Transport::Http3).await;
}

#[tokio::test]
async fn large_unary_over_quic() {
    run(Case::LargeUnary, Transport::Quic).await;
}

#[tokio::test]
async fn large_unary_over_tcp() {
    run(Case::LargeUnary, Transport::Tcp).await;
}

#[tokio::test]
async fn large_unary_over_h3() {
    run(Case::LargeUnary, Transport::Http3).await;
}

#[tokio::test]
async fn client_compressed_unary_over_quic() {
    run(Case::ClientCompressedUnary, Transport::Quic).await;
}

#[tokio::test]
async fn client_compressed_unary_over_tcp() {
    run(Case::ClientCompressedUnary, Transport::Tcp).await;
}

#[tokio::test]
async fn client_compressed_unary_over_h3() {
    run(Case::ClientCompressedUnary, Transport::Http3).await;
}

#[tokio::test]
async fn server_compressed_unary_over_quic() {
    run(Case::ServerCompressedUnary, Transport::Quic).await;
}

#[tokio::test]
async fn server_compressed_unary_over_tcp() {
    run(Case::ServerCompressedUnary, Transport::Tcp).await;
}

#[tokio::test]
async fn server_compressed_unary_over_h3() {
    run(Case::ServerCompressedUnary, Transport::Http3).await;
}

#[tokio::test]
async fn client_streaming_over_quic() {
    run(Case::ClientStreaming, Transport::Quic).await;
}

#[tokio::test]
async fn client_streaming_over_tcp() {
    run(Case::ClientStreaming, Transport::Tcp).await;
}

#[tokio::test]
async fn client_streaming_over_h3() {
    run(Case::ClientStreaming, Transport::Http3).await;
}

#[tokio::test]
async fn client_compressed_streaming_over_quic() {
    run(Case::ClientCompressedStreaming, Transport::Quic).await;
}

#[tokio::test]
async fn client_compressed_streaming_over_tcp() {
    run(Case::ClientCompressedStreaming, Transport::Tcp).await;
}

#[tokio::test]
async fn client_compressed_streaming_over_h3() {
    run(Case::ClientCompressedStreaming, Transport::Http3).await;
}

#[tokio::test]
async fn server_streaming_over_quic() {
    run(Case::ServerStreaming, Transport::Quic).await;
}

#[tokio::test]
async fn server_streaming_over_tcp() {
    run(Case::ServerStreaming, Transport::Tcp).await;
}

#[tokio::test]
async fn server_streaming_over_h3() {
    run(Case::ServerStreaming, Transport::Http3).await;
}

#[tokio::test]
async fn server_compressed_streaming_over_quic() {
    run(Case::ServerCompressedStreaming, Transport::Quic).await;
}

#[tokio::test]
async fn server_compressed_streaming_over_tcp() {
    run(Case::ServerCompressedStreaming, Transport::Tcp).await;
}

#[tokio::test]
async fn server_compressed_streaming_over_h3() {
    run(Case::ServerCompressedStreaming, Transport::Http3).await;
}

#[tokio::test]
async fn ping_pong_over_quic() {
    run(Case::PingPong, Transport::Quic).await;
}

#[tokio::test]
async fn ping_pong_over_tcp() {
    run(Case::PingPong, Transport::Tcp).await;
}

#[tokio::test]
async fn ping_pong_over_h3() {
    run(Case::PingPong, Transport::Http3).await;
}

#[tokio::test]
async fn empty_stream_over_quic() {
    run(Case::EmptyStream, Transport::Quic).await;
}

#[tokio::test]
async fn empty_stream_over_tcp() {
    run(Case::EmptyStream, Transport::Tcp).await;
}

#[tokio::test]
async fn empty_stream_over_h3() {
    run(Case::EmptyStream, Transport::Http3).await;
}

#[tokio::test]
async fn custom_metadata_over_quic() {
    run(Case::CustomMetadata, Transport::Quic).await;
}

#[tokio::test]
async fn custom_metadata_over_tcp() {
    run(Case::CustomMetadata, Transport::Tcp).await;
}

#[tokio::test]
async fn custom_metadata_over_h3() {
    run(Case::CustomMetadata, Transport::Http3).await;
}

#[tokio::test]
async fn status_code_and_message_over_quic() {
    run(Case::StatusCodeAndMessage, Transport::Quic).await;
}

#[tokio::test]
async fn status_code_and_message_over_tcp() {
    run(Case::StatusCodeAndMessage, Transport::Tcp).await;
}

#[tokio::test]
async fn status_code_and_message_over_h3() {
    run(Case::StatusCodeAndMessage, Transport::Http3).await;
}

#[tokio::test]
async fn special_status_message_over_quic() {
    run(Case::SpecialStatusMessage, Transport::Quic).await;
}

#[tokio::test]
async fn special_status_message_over_tcp() {
    run(Case::SpecialStatusMessage, Transport::Tcp).await;
}

#[tokio::test]
async fn special_status_message_over_h3() {
    run(Case::SpecialStatusMessage, Transport::Http3).await;
}

#[tokio::test]
async fn unimplemented_method_over_quic() {
    run(Case::UnimplementedMethod, Transport::Quic).await;
}

#[tokio::test]
async fn unimplemented_method_over_tcp() {
    run(Case::UnimplementedMethod, Transport::Tcp).await;
}

#[tokio::test]
async fn unimplemented_method_over_h3() {
    run(Case::UnimplementedMethod, Transport::Http3).await;
}

#[tokio::test]
async fn unimplemented_service_over_quic() {
    run(Case::UnimplementedService, Transport::Quic).await;
}

#[tokio::test]
async fn unimplemented_service_over_tcp() {
    run(Case::UnimplementedService, Transport::Tcp).await;
}

#[tokio::test]
async fn unimplemented_service_over_h3() {
    run(Case::UnimplementedService, Transport::Http3).await;
}

#[tokio::test]
async fn cancel_after_begin_over_quic() {
    run(Case::CancelAfterBegin, Transport::Quic).await;
}

#[tokio::test]
async fn cancel_after_begin_over_tcp() {
    run(Case::CancelAfterBegin, Transport::Tcp).await;
}

#[tokio::test]
async fn cancel_after_begin_over_h3() {
    run(Case::CancelAfterBegin, Transport::Http3).await;
}

#[tokio::test]
async fn cancel_after_first_response_over_quic() {
    run(Case::CancelAfterFirstResponse, Transport::Quic).await;
}

#[tokio::test]
async fn cancel_after_first_response_over_tcp() {
    run(Case::CancelAfterFirstResponse, Transport::Tcp).await;
}

#[tokio::test]
async fn cancel_after_first_response_over_h3() {
    run(Case::CancelAfterFirstResponse, Transport::Http3).await;
}

#[tokio::test]
async fn timeout_on_sleeping_server_over_quic() {
    run(Case::TimeoutOnSleepingServer, Transport::Quic).await;
}

#[tokio::test]
async fn timeout_on_sleeping_server_over_tcp() {
    run(Case::TimeoutOnSleepingServer, Transport::Tcp).await;
}

#[tokio::test]
async fn timeout_on_sleeping_server_over_h3() {
    run(Case::TimeoutOnSleepingServer, Transport::Http3).await;
}

#[tokio::test]
async fn concurrent_large_unary_over_quic() {
    run(Case::ConcurrentLargeUnary, Transport::Quic).await;
}

#[tokio::test]
async fn concurrent_large_unary_over_tcp() {
    run(Case::ConcurrentLargeUnary, Transport::Tcp).await;
}

#[tokio::test]
async fn concurrent_large_unary_over_h3() {
    run(Case::ConcurrentLargeUnary, Transport::Http3).await;
}
