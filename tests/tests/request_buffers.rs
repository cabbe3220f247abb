//! The budget for incomplete request messages, on both transports: a message counts at its
//! declared size from its prefix to its last byte, per connection and server-wide; a call
//! that does not fit gets RESOURCE_EXHAUSTED and the others go on.

use bytes::Bytes;
use quicrpc::Fallback;
use quicrpc_tests::upload::{CLIENT_STREAM, Upload, message_of_len};
use quicrpc_tests::{TestOptions, TestServer, until, within};
use tonic::Code;

/// The largest message the default receive limit (4 MiB) takes.
const LEN: usize = (4 << 20) - 1;
/// What such a message counts while incomplete: its prefix and its declared length.
const CHARGE: usize = LEN + 5;

/// Starts an upload and sends `message`'s prefix and first KiB.
async fn started(channel: &quicrpc::Channel, message: &Bytes) -> Upload {
    let upload = Upload::start(channel, CLIENT_STREAM);
    assert!(upload.send(message.slice(..1024)).await, "sent");
    upload
}

async fn refused(upload: Upload, budget: &str) {
    let status = within("refused upload", upload.status()).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&format!("{budget} budget")),
        "names the {budget} budget: {status:?}"
    );
}

#[tokio::test]
async fn incomplete_messages_are_bounded_per_connection_and_in_all() {
    for policy in [Fallback::QuicOnly, Fallback::TcpOnly] {
        // Two messages fit a connection, three the server.
        let server = TestServer::start_with(TestOptions::default(), |b| {
            b.request_buffer_per_connection(9 << 20)
                .request_buffer_total(13 << 20)
        })
        .await;
        let buffered = || server.stats.buffered_request_bytes();
        let message = message_of_len(LEN);
        let a = server.channel_over(policy).await;
        let b = server.channel_over(policy).await;

        let a1 = started(&a, &message).await;
        let mut a2 = started(&a, &message).await;
        until("two messages held", buffered, 2 * CHARGE).await;
        refused(started(&a, &message).await, "connection").await;

        let _b1 = started(&b, &message).await;
        until("three messages held", buffered, 3 * CHARGE).await;
        refused(started(&b, &message).await, "server").await;

        // A cancelled call gives its place back.
        a1.cancel();
        until("a cancelled call's share released", buffered, 2 * CHARGE).await;
        let _b3 = started(&b, &message).await;
        until("three messages held again", buffered, 3 * CHARGE).await;

        // A message that completes is no longer counted, and its call succeeds.
        assert!(a2.send(message.slice(1024..)).await, "rest sent");
        a2.finish();
        let status = within("completed upload", a2.status()).await;
        assert_eq!(status.code(), Code::Ok, "{policy:?}: {status:?}");
        until("a completed message released", buffered, 2 * CHARGE).await;
        println!("{policy:?}: held and refused as budgeted");
    }
}
