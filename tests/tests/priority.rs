//! Per-method priority from the generated method table, and the per-call override: what the
//! client sends as `:priority`, what the server's handler sees, and what it does to a
//! saturated link.

use quicrpc::{CallKind, Idempotency, Priority, method_info};
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::pb::{EchoReply, EchoRequest};
use quicrpc_tests::raw::{self, Answer, RawClient, RawServer};
use quicrpc_tests::{TestServer, echo, within};
use quicrpc_wire::frame;

const UNARY: &str = "/quicrpc.testing.Echo/Unary";
const URGENT: &str = "/quicrpc.testing.Echo/Urgent";
const FETCH: &str = "/quicrpc.testing.Echo/Fetch";

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

/// Makes a call to `path` (a unary method, or `Fetch`) with `priority` in its extensions if
/// given, and returns the response's priority extension (the one the client applied) and the
/// first reply.
async fn call(
    client: &mut EchoClient<quicrpc::Channel>,
    path: &str,
    priority: Option<Priority>,
) -> (Option<Priority>, EchoReply) {
    let mut request = tonic::Request::new(EchoRequest {
        response_count: 1,
        ..echo(path)
    });
    if let Some(priority) = priority {
        request.extensions_mut().insert(priority);
    }
    let what = format!("{path} at {priority:?}");
    if path == FETCH {
        let mut response = within(&what, client.fetch(request)).await.unwrap();
        let applied = response.extensions().get().copied();
        let reply = within(&what, response.get_mut().message()).await.unwrap();
        (applied, reply.expect("a reply"))
    } else {
        let response = match path {
            UNARY => within(&what, client.unary(request)).await,
            URGENT => within(&what, client.urgent(request)).await,
            _ => unreachable!("{path}"),
        };
        let response = response.unwrap();
        (response.extensions().get().copied(), response.into_inner())
    }
}

#[tokio::test]
async fn the_server_handler_sees_the_call_s_priority() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut cases = vec![
        // The method's (quicrpc.priority), else NORMAL.
        (URGENT, None, Priority::Critical),
        (FETCH, None, Priority::Bulk),
        (UNARY, None, Priority::Normal),
    ];
    // A per-call override wins over the method's, whichever way.
    for priority in Priority::ALL {
        cases.push((URGENT, Some(priority), priority));
        cases.push((FETCH, Some(priority), priority));
    }
    for (path, chosen, want) in cases {
        let (applied, reply) = call(&mut client, path, chosen).await;
        // `EchoReply.priority` is the `quicrpc::Priority` in the handler's request extensions.
        assert_eq!(reply.priority, want.as_str(), "{path} at {chosen:?}");
        assert_eq!(applied, Some(want), "client side: {path} at {chosen:?}");
    }
}

#[tokio::test]
async fn the_client_sends_the_resolved_priority_in_every_head() {
    fn reply(_: &str) -> Answer {
        let reply = EchoReply::default();
        Answer::Finish(vec![
            raw::response_head(&[]),
            raw::data_message(&reply),
            raw::status_trailers(tonic::Code::Ok),
        ])
    }
    // A raw server shows the head as it came over the wire.
    let server = RawServer::start(reply).await;
    let mut client = EchoClient::new(within("connect", server.channel()).await);
    let cases = [
        (URGENT, None, Priority::Critical),
        (FETCH, None, Priority::Bulk),
        (UNARY, None, Priority::Normal),
        (URGENT, Some(Priority::Low), Priority::Low),
        (UNARY, Some(Priority::High), Priority::High),
    ];
    for (i, (path, chosen, want)) in cases.into_iter().enumerate() {
        call(&mut client, path, chosen).await;
        let heads = server.heads();
        assert_eq!(heads.len(), i + 1);
        let head = &heads[i];
        assert_eq!(head.path, path);
        assert_eq!(head.priority, Some(want), "{path} at {chosen:?}");
    }
}

#[tokio::test]
async fn the_server_takes_priority_from_the_head_else_from_its_own_table() {
    let server = TestServer::start().await;
    let client = RawClient::connect(server.addr, &server.cert.ca_certificate()).await;
    let cases: [(&str, Option<&[u8]>, &str); 5] = [
        // No :priority: the server looks the method up itself.
        (URGENT, None, "critical"),
        (UNARY, None, "normal"),
        // :priority wins over the server's table, whichever way.
        (URGENT, Some(b"bulk"), "bulk"),
        (UNARY, Some(b"critical"), "critical"),
        (UNARY, Some(b"low"), "low"),
    ];
    for (path, priority, want) in cases {
        let mut fields: Vec<(&[u8], &[u8])> = vec![(b":path", path.as_bytes())];
        fields.extend(priority.map(|p| (&b":priority"[..], p)));
        fields.push((b"content-type", b"application/grpc"));
        let mut bytes = raw::raw_fields(frame::HEADERS, &fields).to_vec();
        bytes.extend_from_slice(&raw::data_message(&echo("raw")));
        let (_send, recv) = client.send(&bytes, true).await;
        let response = within("raw call", raw::read_response(recv)).await;
        assert_eq!(response.code(), Some(tonic::Code::Ok), "{response:?}");
        let reply = response.message::<EchoReply>();
        assert_eq!(reply.priority, want, "{path} with :priority {priority:?}");
    }
}

/// A CRITICAL call is not queued behind a BULK transfer that fills the link: on a 20 Mbit/s
/// link with a 128 KiB bottleneck queue, a 8 MiB BULK download takes about 3.4 s, and CRITICAL
/// calls made while it runs complete before it does. Priority orders the sender's queue;
/// what is already in the bottleneck queue is not overtaken, so each call still waits for
/// that (at most ~52 ms here).
#[tokio::test]
async fn critical_calls_overtake_a_bulk_transfer_on_a_saturated_link() {
    use quicrpc_netlab::LinkConfig;
    use quicrpc_tests::link::ServerBehindLink;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    const REPLIES: u32 = 64;
    let behind = ServerBehindLink::start(LinkConfig {
        delay: Duration::from_millis(5),
        rate: Some(20_000_000),
        queue_bytes: 128 * 1024,
        ..LinkConfig::default()
    })
    .await;
    let channel = behind.channel().connect();
    let mut client = quicrpc_tests::pb::echo_client::EchoClient::new(
        within("connect", channel).await.expect("connect"),
    );

    // `Fetch` is declared BULK: 64 replies of 128 KiB.
    let request = EchoRequest {
        response_count: REPLIES,
        response_size: 128 * 1024,
        ..echo("bulk")
    };
    let mut bulk = within("bulk transfer", client.fetch(request))
        .await
        .expect("bulk transfer starts")
        .into_inner();
    let received = Arc::new(AtomicU32::new(0));
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let drain = tokio::spawn({
        let received = received.clone();
        async move {
            let mut started_tx = Some(started_tx);
            while let Some(_reply) = bulk.message().await.expect("bulk reply") {
                received.fetch_add(1, Ordering::Relaxed);
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    within("bulk transfer under way", started)
        .await
        .expect("first bulk reply");

    // `Urgent` is declared CRITICAL.
    let mut urgent = client.clone();
    for i in 0..5 {
        let start = Instant::now();
        let reply = within("critical call", urgent.urgent(echo("now")))
            .await
            .expect("critical call")
            .into_inner();
        assert_eq!(reply.priority, "critical");
        println!(
            "critical call {i}: {:?}, with {} of {REPLIES} bulk replies received",
            start.elapsed(),
            received.load(Ordering::Relaxed)
        );
    }
    assert!(
        !drain.is_finished(),
        "the bulk transfer ended before the critical calls: they waited behind it"
    );
    let before = received.load(Ordering::Relaxed);
    within("bulk transfer ends", drain)
        .await
        .expect("bulk transfer");
    assert!(before < REPLIES);
    assert_eq!(received.load(Ordering::Relaxed), REPLIES);
    let (up, down) = behind.lab.counts();
    println!("link: client -> server {up}; server -> client {down}");
}
