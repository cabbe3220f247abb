//! `ServerBuilder::layer`: tower layers around every service, the same on QUIC and TCP.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use quicrpc::{Fallback, HttpRequest};
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::{TestOptions, TestServer, echo, within};
use tonic::Code;

const TRANSPORTS: [Fallback; 2] = [Fallback::QuicOnly, Fallback::TcpOnly];

async fn client(server: &TestServer, policy: Fallback) -> EchoClient<quicrpc::Channel> {
    server.client_over(policy).await
}

/// Refuses calls without `x-api-key: open-sesame`, before they reach a service.
#[derive(Clone)]
struct RequireKey<S>(S);

impl<S> tower::Service<HttpRequest> for RequireKey<S>
where
    S: tower::Service<HttpRequest, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if request.headers().get("x-api-key").map(|v| v.as_bytes()) == Some(b"open-sesame") {
            Box::pin(self.0.call(request))
        } else {
            let refused = tonic::Status::unauthenticated("missing or wrong x-api-key");
            Box::pin(std::future::ready(Ok(refused.into_http())))
        }
    }
}

#[tokio::test]
async fn an_auth_layer_reads_metadata_on_both_transports() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.layer(tower::layer::layer_fn(RequireKey))
    })
    .await;
    for policy in TRANSPORTS {
        let mut client = client(&server, policy).await;
        let status = within("call without a key", client.unary(echo("no key")))
            .await
            .expect_err("refused");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{policy:?}: {status:?}"
        );
        assert_eq!(status.message(), "missing or wrong x-api-key");

        let mut request = tonic::Request::new(echo("with key"));
        request
            .metadata_mut()
            .insert("x-api-key", "open-sesame".parse().expect("ASCII"));
        let reply = within("call with a key", client.unary(request))
            .await
            .unwrap_or_else(|s| panic!("{policy:?}: {s:?}"));
        assert_eq!(reply.into_inner().message, "with key");
    }
    // Refused calls never reached the service.
    assert_eq!(server.runs().len(), TRANSPORTS.len());
}

#[tokio::test]
async fn a_timeout_layer_ends_calls_the_same_way_on_both_transports() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )))
    })
    .await;
    for policy in TRANSPORTS {
        let mut client = client(&server, policy).await;
        let status = within("call that hangs", client.hang(echo("hang")))
            .await
            .expect_err("timed out by the layer");
        // tonic's mapping of a layer's error that is not a Status: UNKNOWN with its message.
        assert_eq!(status.code(), Code::Unknown, "{policy:?}: {status:?}");
        assert_eq!(status.message(), "request timed out", "{policy:?}");
        // The handler was dropped: the layer cut the call short, it did not just answer.
        assert_eq!(server.next_event().await, quicrpc_tests::Event::HangStarted);
        assert_eq!(server.next_event().await, quicrpc_tests::Event::HangDropped);
        let reply = within("quick call", client.unary(echo("quick")))
            .await
            .expect("answered within the timeout");
        assert_eq!(reply.into_inner().message, "quick");
    }
}

/// A layer that appends `tag` to the request's `x-echo-trace` metadata, which the service
/// echoes back.
fn tag(
    tag: &'static str,
) -> tower::util::MapRequestLayer<impl Fn(HttpRequest) -> HttpRequest + Clone + Send + Sync> {
    tower::util::MapRequestLayer::new(move |mut request: HttpRequest| {
        let trace = match request.headers().get("x-echo-trace") {
            Some(before) => format!("{}{tag}", before.to_str().expect("ASCII")),
            None => tag.to_owned(),
        };
        request
            .headers_mut()
            .insert("x-echo-trace", trace.parse().expect("ASCII"));
        request
    })
}

#[tokio::test]
async fn layers_apply_in_order_first_outermost() {
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.layer(tag("a")).layer(tag("b")).layer(tag("c"))
    })
    .await;
    for policy in TRANSPORTS {
        let mut client = client(&server, policy).await;
        let response = within("call", client.unary(echo("traced")))
            .await
            .expect("call");
        let trace = response.metadata().get("x-echo-trace").expect("echoed");
        assert_eq!(trace, "abc", "{policy:?}");
    }
}
