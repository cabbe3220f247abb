//! The memory that incomplete request messages pin in the server stays within the request
//! buffer budget, measured as the process's peak resident set (VmHWM). A test binary of its
//! own, so that no other test's allocations count.

use bytes::Bytes;
use quicrpc::Fallback;
use quicrpc_tests::upload::{CLIENT_STREAM, Upload, message_of_len};
use quicrpc_tests::{TestOptions, TestServer, within};
use tonic::Code;

/// The largest message the default receive limit (4 MiB) takes.
const LEN: usize = (4 << 20) - 1;
/// The server's budget for incomplete messages, per connection and in all: three of them.
const BUDGET: usize = 16 << 20;
/// Uploads that each leave such a message one byte short: 128 MiB without a budget.
const UPLOADS: usize = 32;
/// What the process may grow by beyond the budget: the client's and the server's QUIC and
/// HTTP/2 buffers (windows of 16 MiB and less), and the allocator's own.
const SLACK: usize = 48 << 20;

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// Sends all of `message` but its last byte, in 64 KiB pieces, unless the call is refused
/// first.
async fn all_but_the_last_byte(upload: Upload, message: Bytes) -> Upload {
    let mut at = 0;
    while at < message.len() - 1 {
        let end = (at + (64 << 10)).min(message.len() - 1);
        if !upload.send(message.slice(at..end)).await {
            break;
        }
        at = end;
    }
    upload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_requests_pin_no_more_than_the_budget() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.request_buffer_per_connection(BUDGET)
            .request_buffer_total(BUDGET)
    })
    .await;
    let message = message_of_len(LEN);
    for policy in [Fallback::QuicOnly, Fallback::TcpOnly] {
        let channel = server.channel_over(policy).await;
        // The peak from here on (Linux: writing 5 to clear_refs resets VmHWM).
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
        let base = status_bytes("VmRSS:");

        let uploads: Vec<_> = (0..UPLOADS)
            .map(|_| {
                let upload = Upload::start(&channel, CLIENT_STREAM);
                tokio::spawn(all_but_the_last_byte(upload, message.clone()))
            })
            .collect();
        let mut uploads_sent = Vec::new();
        for upload in uploads {
            uploads_sent.push(within("upload sent", upload).await.expect("upload task"));
        }
        // Each upload is either refused or holds its message's place: wait until the server
        // has decided on all of them.
        let charge = LEN + 5;
        within("every upload refused or held", async {
            loop {
                let answered = uploads_sent.iter().filter(|u| u.answered()).count();
                if answered + server.stats.buffered_request_bytes() / charge == UPLOADS {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        let (refused, held): (Vec<_>, Vec<_>) =
            uploads_sent.into_iter().partition(Upload::answered);
        let refused_count = refused.len();
        for upload in refused {
            let status = within("refused upload", upload.status()).await;
            assert_eq!(
                status.code(),
                Code::ResourceExhausted,
                "{policy:?}: {status:?}"
            );
        }
        // The uploads still held get their last byte, and succeed.
        let kept = held.len();
        for mut upload in held {
            assert!(
                upload.send(message.slice(LEN + 4..)).await,
                "last byte sent"
            );
            upload.finish();
            let status = within("completed upload", upload.status()).await;
            assert_eq!(status.code(), Code::Ok, "{policy:?}: {status:?}");
        }
        let grown = status_bytes("VmHWM:").saturating_sub(base);
        println!(
            "{policy:?}: {refused_count} uploads refused, {kept} held; peak RSS grew by {} KiB",
            grown >> 10
        );
        assert!(kept <= BUDGET / (LEN + 5), "{policy:?}: {kept} held");
        assert!(
            grown <= BUDGET + SLACK,
            "{policy:?}: the peak RSS grew by {grown} bytes, over the budget of {BUDGET} plus \
             {SLACK} of slack"
        );
        assert_eq!(server.stats.buffered_request_bytes(), 0);
    }
}
