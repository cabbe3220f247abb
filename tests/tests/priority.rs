//! Per-method priority from the generated method table, and the per-call override, applied
//! on both sides of the stream.

use quicrpc::{CallKind, Idempotency, Priority, method_info};
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{TestServer, echo, within};

#[test]
fn generated_method_table_is_registered() {
    let fetch = method_info("/quicrpc.testing.Echo/Fetch").expect("Fetch is registered");
    assert_eq!(
        (fetch.kind(), fetch.priority(), fetch.idempotency()),
        (
            CallKind::ServerStreaming,
            Priority::Bulk,
            Idempotency::NoSideEffects
        )
    );
    let urgent = method_info("/quicrpc.testing.Echo/Urgent").expect("Urgent is registered");
    assert_eq!(
        (urgent.kind(), urgent.priority()),
        (CallKind::Unary, Priority::Critical)
    );
    let bidi = method_info("/quicrpc.testing.Echo/Bidi").expect("Bidi is registered");
    assert_eq!(
        (bidi.kind(), bidi.priority(), bidi.idempotency()),
        (CallKind::Streaming, Priority::Normal, Idempotency::Unknown)
    );
    assert_eq!(quicrpc_tests::pb::echo_methods::ALL.len(), 8);
}

#[tokio::test]
async fn priority_comes_from_the_method_table_on_both_sides() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let response = within("urgent", client.urgent(echo("u"))).await.unwrap();
    assert_eq!(
        response.extensions().get::<Priority>(),
        Some(&Priority::Critical),
        "client side"
    );
    assert_eq!(response.into_inner().priority, "critical", "server side");

    let response = within("unary", client.unary(echo("n"))).await.unwrap();
    assert_eq!(
        response.extensions().get::<Priority>(),
        Some(&Priority::Normal)
    );
    assert_eq!(response.into_inner().priority, "normal");

    let mut stream = within(
        "fetch",
        client.fetch(EchoRequest {
            response_count: 1,
            ..echo("b")
        }),
    )
    .await
    .unwrap();
    assert_eq!(stream.extensions().get::<Priority>(), Some(&Priority::Bulk));
    assert_eq!(
        within("reply", stream.get_mut().message())
            .await
            .unwrap()
            .unwrap()
            .priority,
        "bulk"
    );
}

#[tokio::test]
async fn per_call_override_wins_on_both_sides() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for priority in Priority::ALL {
        let mut request = tonic::Request::new(echo("o"));
        request.extensions_mut().insert(priority);
        let response = within("urgent", client.urgent(request)).await.unwrap();
        assert_eq!(response.extensions().get::<Priority>(), Some(&priority));
        assert_eq!(response.into_inner().priority, priority.as_str());
    }
}
