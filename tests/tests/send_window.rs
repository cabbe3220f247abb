//! The QUIC send window follows the path: on a slow link, BULK uploads keep about a window of
//! a few bandwidth-delay products written ahead of what the link has delivered, not quinn's
//! fixed 10 MB, so what an urgent call queues behind stays small.
//!
//! A bound on bytes, not on speed: the bytes the uploads handed to the channel, less what
//! the emulated link delivered to the server, is what waits at the client.

use std::time::Duration;

use quicrpc_netlab::LinkConfig;
use quicrpc_tests::link::{BulkUploads, ServerBehindLink};
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::within;

const UPLOADS: usize = 8;
const MESSAGE: usize = 16 * 1024;
/// IPv4 and UDP headers: what a delivered packet holds beyond QUIC's datagram.
const IP_UDP_HEADERS: u64 = 28;
/// More than QUIC adds to a datagram's stream data: its header, AEAD tag and frame headers.
const QUIC_OVERHEAD: u64 = 100;

/// A 40 Mbit/s link with a 10 ms round trip: 50 kB a round trip.
fn short_thin() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(5),
        rate: Some(40_000_000),
        queue_bytes: 128 * 1024,
        ..LinkConfig::default()
    }
}

/// What the uploads handed over beyond what the link delivered, once they have handed over
/// `total` bytes, over `link`; the client's send window `fixed` by the application, or not.
/// Returns bounds on it, (below, above): the link counts datagrams and their bytes, not the
/// stream data in them.
async fn backlog_after(link: LinkConfig, total: u64, fixed: Option<u64>) -> (u64, u64) {
    let behind = ServerBehindLink::start(link).await;
    let builder = behind.channel();
    let builder = match fixed {
        Some(bytes) => builder.send_window(bytes),
        None => builder,
    };
    let client = EchoClient::new(within("connect", builder.connect()).await.expect("connect"));

    let uploads = BulkUploads::start(&client, UPLOADS, MESSAGE);
    within("uploads hand over their bytes", uploads.until_handed(total)).await;
    let handed = uploads.handed();
    let (up, _down) = behind.lab.counts();
    drop(uploads);
    let datagram_bytes = up.delivered_bytes - up.delivered * IP_UDP_HEADERS;
    let least_data = datagram_bytes.saturating_sub(up.delivered * QUIC_OVERHEAD);
    (
        handed.saturating_sub(datagram_bytes),
        handed.saturating_sub(least_data),
    )
}

#[tokio::test]
async fn uploads_queue_a_few_round_trips_not_ten_megabytes() {
    // 40 Mbit/s at 10 ms is 50 kB a round trip: the window is its minimum, 1 MiB. What waits
    // beyond it is a few messages per upload in tonic's and quicrpc's buffers, and the
    // link's own 128 KiB queue.
    let (_, backlog) = backlog_after(short_thin(), 12 << 20, None).await;
    println!(
        "backlog with the window sized to the path: at most {} KiB",
        backlog >> 10
    );
    assert!(
        backlog < 4 << 20,
        "{} KiB wait at the client: the send window did not follow the path",
        backlog >> 10
    );
}

#[tokio::test]
async fn a_window_the_application_fixes_is_kept() {
    // quinn's old default: the uploads fill it.
    let (backlog, _) = backlog_after(short_thin(), 14 << 20, Some(10_000_000)).await;
    println!(
        "backlog with a fixed 10 MB window: at least {} KiB",
        backlog >> 10
    );
    assert!(
        backlog > 6 << 20,
        "only {} KiB wait at the client with a fixed 10 MB window",
        backlog >> 10
    );
}
