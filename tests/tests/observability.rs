//! Metrics through the `metrics` facade: calls started and finished by side, method, code and
//! transport, and their latency. (One test in this file: it installs the process's global
//! recorder.)

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use quicrpc::{Fallback, ZeroRtt};
use quicrpc_tests::pb::EchoRequest;
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestServer, echo, within};
use tonic::Code;

const UNARY: &str = "/quicrpc.testing.Echo/Unary";

/// Totals of what the recorder saw: each snapshot drains it, so they are added up here.
struct Totals {
    snapshotter: Snapshotter,
    seen: HashMap<(String, Vec<(String, String)>), u64>,
}

impl Totals {
    fn refresh(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => continue,
            };
            *self
                .seen
                .entry((key.name().to_owned(), labels))
                .or_default() += n;
        }
    }

    /// A counter's total, or a histogram's number of samples, with exactly these labels.
    fn get(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.refresh();
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.seen
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0)
    }

    /// Waits until the server side has recorded `n` finished calls with these labels: the
    /// server records a call just after its last frame leaves, so it may trail the client.
    async fn server_finished(&mut self, labels: &[(&str, &str)], n: u64) {
        within("server-side metrics", async {
            while self.get("quicrpc_calls_finished_total", labels) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

#[tokio::test]
async fn calls_are_counted_by_side_method_code_and_transport() {
    let recorder = DebuggingRecorder::new();
    let mut totals = Totals {
        snapshotter: recorder.snapshotter(),
        seen: HashMap::new(),
    };
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let server = TestServer::start().await;
    let mut quic = server.client().await;
    within("ok", quic.unary(echo("a"))).await.unwrap();
    within("ok", quic.unary(echo("b"))).await.unwrap();
    let failing = EchoRequest {
        fail_code: Code::NotFound as i32,
        ..echo("")
    };
    within("fails", quic.unary(failing)).await.unwrap_err();
    let channel = within(
        "tcp",
        server
            .any_transport_builder()
            .fallback(Fallback::TcpOnly)
            .connect(),
    )
    .await
    .unwrap();
    let mut tcp = EchoClient::new(channel);
    within("ok over tcp", tcp.unary(echo("c"))).await.unwrap();

    let client_quic_ok = [
        ("side", "client"),
        ("method", UNARY),
        ("transport", "quic"),
        ("code", "OK"),
    ];
    assert_eq!(
        totals.get("quicrpc_calls_finished_total", &client_quic_ok),
        2
    );
    let client_quic_not_found = [
        ("side", "client"),
        ("method", UNARY),
        ("transport", "quic"),
        ("code", "NOT_FOUND"),
    ];
    assert_eq!(
        totals.get("quicrpc_calls_finished_total", &client_quic_not_found),
        1
    );
    let client_tcp_ok = [
        ("side", "client"),
        ("method", UNARY),
        ("transport", "tcp"),
        ("code", "OK"),
    ];
    assert_eq!(
        totals.get("quicrpc_calls_finished_total", &client_tcp_ok),
        1
    );
    let started = [("side", "client"), ("method", UNARY), ("transport", "quic")];
    assert_eq!(totals.get("quicrpc_calls_started_total", &started), 3);
    assert_eq!(totals.get("quicrpc_call_duration_seconds", &started), 3);

    totals
        .server_finished(
            &[
                ("side", "server"),
                ("method", UNARY),
                ("transport", "quic"),
                ("code", "OK"),
            ],
            2,
        )
        .await;
    totals
        .server_finished(
            &[
                ("side", "server"),
                ("method", UNARY),
                ("transport", "quic"),
                ("code", "NOT_FOUND"),
            ],
            1,
        )
        .await;
    totals
        .server_finished(
            &[
                ("side", "server"),
                ("method", UNARY),
                ("transport", "tcp"),
                ("code", "OK"),
            ],
            1,
        )
        .await;

    // A streaming call is finished by its trailers, on both sides.
    let request = EchoRequest {
        response_count: 3,
        ..echo("s")
    };
    let mut stream = within("stream", quic.server_stream(request))
        .await
        .unwrap()
        .into_inner();
    while within("reply", stream.message()).await.unwrap().is_some() {}
    let method = "/quicrpc.testing.Echo/ServerStream";
    let client_stream_ok = [
        ("side", "client"),
        ("method", method),
        ("transport", "quic"),
        ("code", "OK"),
    ];
    assert_eq!(
        totals.get("quicrpc_calls_finished_total", &client_stream_ok),
        1
    );
    totals
        .server_finished(
            &[
                ("side", "server"),
                ("method", method),
                ("transport", "quic"),
                ("code", "OK"),
            ],
            1,
        )
        .await;

    // A deadline that passes is counted as such on the client.
    let mut request = tonic::Request::new(echo("hang"));
    request.set_timeout(Duration::from_millis(100));
    within("hang", quic.hang(request)).await.unwrap_err();
    let hang = [
        ("side", "client"),
        ("method", "/quicrpc.testing.Echo/Hang"),
        ("transport", "quic"),
        ("code", "DEADLINE_EXCEEDED"),
    ];
    assert_eq!(totals.get("quicrpc_calls_finished_total", &hang), 1);

    // 0-RTT: a new channel resumes the first channel's session and sends a replay-safe call
    // as early data.
    let mut resumed = EchoClient::new(server.channel_builder().connect_lazy().unwrap());
    let response = within("early call", resumed.lookup(echo("early")))
        .await
        .unwrap();
    assert_eq!(
        response.extensions().get::<ZeroRtt>(),
        Some(&ZeroRtt::Accepted)
    );
    let zero_rtt = "quicrpc_client_zero_rtt_total";
    assert_eq!(totals.get(zero_rtt, &[("outcome", "offered")]), 1);
    // Counted before the handler runs.
    let early_calls = "quicrpc_server_early_calls_total";
    assert_eq!(totals.get(early_calls, &[("outcome", "run")]), 1);
    // Counted when the handshake completes, which the response may beat.
    within("0-RTT verdict counted", async {
        while totals.get(zero_rtt, &[("outcome", "accepted")]) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(totals.get(zero_rtt, &[("outcome", "rejected")]), 0);
}
