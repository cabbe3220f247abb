//! A client finds out that a QUIC server has died without a word (`tests/tests/balance.rs`
//! has the failover); here, that a live server is never taken for dead: a call the server
//! takes seconds to answer, with nothing on the wire meanwhile, is probed and left alone.

use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::{TestServer, echo, within};

#[tokio::test]
async fn a_live_server_that_is_slow_to_answer_is_not_taken_for_dead() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Silent for 2.5 s, well past the 1 s after which an unanswered probe would close the
    // connection.
    let slow = EchoRequest {
        delay_ms: 2_500,
        ..echo("slow")
    };
    let reply = within("a slow call", client.unary(slow))
        .await
        .expect("answered, on the same connection");
    assert_eq!(reply.into_inner().message, "slow");
    assert_eq!(server.stats.connections_opened(), 1);
}
