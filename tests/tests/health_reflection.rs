//! gRPC health checking (tonic-health) and server reflection (tonic-reflection) over QUIC and
//! TCP: tonic's own implementations, added to a quicrpc server like any service.

use quicrpc::Fallback;
use quicrpc_tests::{TestServer, within};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const TRANSPORTS: [Fallback; 2] = [Fallback::QuicOnly, Fallback::TcpOnly];

async fn channel(server: &TestServer, policy: Fallback) -> quicrpc::Channel {
    server.channel_over(policy).await
}

#[tokio::test]
async fn health_checks_answer_on_both_transports() {
    let server = TestServer::start().await;
    for policy in TRANSPORTS {
        let mut health = HealthClient::new(channel(&server, policy).await);
        let request = HealthCheckRequest {
            service: "quicrpc.testing.Echo".into(),
        };
        let reply = within("health check", health.check(request))
            .await
            .unwrap_or_else(|s| panic!("{policy:?}: {s:?}"))
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{policy:?}");

        let unknown = HealthCheckRequest {
            service: "no.such.Service".into(),
        };
        let status = within("health check", health.check(unknown))
            .await
            .expect_err("unknown service");
        assert_eq!(status.code(), tonic::Code::NotFound, "{policy:?}");
    }
}

#[tokio::test]
async fn reflection_lists_and_describes_services_on_both_transports() {
    let server = TestServer::start().await;
    for policy in TRANSPORTS {
        let mut reflection = ServerReflectionClient::new(channel(&server, policy).await);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("quicrpc.testing.Echo".into()),
        ]
        .map(|request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        });
        let mut replies = within(
            "reflection",
            reflection.server_reflection_info(tokio_stream::iter(requests)),
        )
        .await
        .unwrap_or_else(|s| panic!("{policy:?}: {s:?}"))
        .into_inner();

        let first = within("services", replies.message())
            .await
            .expect("reply")
            .expect("one");
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("{policy:?}: not a service list: {first:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(
            names.contains(&"quicrpc.testing.Echo"),
            "{policy:?}: {names:?}"
        );

        let second = within("file", replies.message())
            .await
            .expect("reply")
            .expect("two");
        let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
            panic!("{policy:?}: not a file descriptor: {second:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty(), "{policy:?}");
    }
}
