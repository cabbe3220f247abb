//! Client-streaming calls whose request bytes the test writes itself, through a
//! `quicrpc::Channel` on either transport: a message can be left incomplete, as a careless or
//! hostile client leaves it.

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tower::ServiceExt;

use crate::pb::EchoRequest;

/// `Echo/ClientStream`'s path.
pub const CLIENT_STREAM: &str = "/quicrpc.testing.Echo/ClientStream";

/// A gRPC message (prefix and body) encoding an `EchoRequest` of exactly `len` body bytes
/// (at least 6), all payload: the server's reply does not echo it.
pub fn message_of_len(len: usize) -> Bytes {
    // Field 2 (one tag byte), its varint length, the bytes.
    let varint_len = |n: usize| (usize::BITS - n.max(1).leading_zeros()).div_ceil(7) as usize;
    let payload_len = (1..=5)
        .map(|v| len - 1 - v)
        .find(|&p| 1 + varint_len(p) + p == len)
        .expect("some payload length adds up");
    let body = EchoRequest {
        payload: vec![0xab; payload_len],
        ..EchoRequest::default()
    }
    .encode_to_vec();
    assert_eq!(body.len(), len, "an EchoRequest of {len} bytes");
    let mut message = BytesMut::with_capacity(5 + len);
    message.put_u8(0);
    message.put_u32(u32::try_from(len).expect("fits a gRPC prefix"));
    message.put_slice(&body);
    message.freeze()
}

/// A client-streaming call whose request body is what [`send`](Self::send) is given.
#[derive(Debug)]
pub struct Upload {
    body: Option<mpsc::Sender<Result<Frame<Bytes>, Status>>>,
    response: JoinHandle<Status>,
    /// True once the response has come.
    answered: watch::Receiver<bool>,
}

impl Upload {
    /// Starts a call to `path` on `channel`.
    pub fn start(channel: &quicrpc::Channel, path: &str) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let body = tonic::body::Body::new(StreamBody::new(ReceiverStream::new(rx)));
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .expect("request");
        let channel = channel.clone();
        let (answer, answered) = watch::channel(false);
        let response = tokio::spawn(async move {
            let outcome = async {
                let response = channel.oneshot(request).await?;
                if let Some(status) = Status::from_header_map(response.headers()) {
                    return Ok(status);
                }
                let collected = response.into_body().collect().await?;
                let trailers = collected.trailers().cloned().unwrap_or_default();
                Ok(Status::from_header_map(&trailers)
                    .unwrap_or_else(|| Status::unknown("no grpc-status")))
            };
            let status = outcome.await.unwrap_or_else(|status: Status| status);
            answer.send_replace(true);
            status
        });
        Self {
            body: Some(tx),
            response,
            answered,
        }
    }

    /// Sends `bytes` as the next piece of the request body; false if the call has stopped
    /// taking them or has been answered.
    pub async fn send(&self, bytes: Bytes) -> bool {
        let Some(body) = &self.body else {
            return false;
        };
        let mut answered = self.answered.clone();
        tokio::select! {
            sent = body.send(Ok(Frame::data(bytes))) => sent.is_ok(),
            _ = answered.wait_for(|&answered| answered) => false,
        }
    }

    /// Ends the request body.
    pub fn finish(&mut self) {
        self.body = None;
    }

    /// Whether the response has come.
    pub fn answered(&self) -> bool {
        *self.answered.borrow()
    }

    /// The call's status (or the channel's error as one).
    pub async fn status(self) -> Status {
        self.response.await.expect("response task")
    }

    /// Cancels the call.
    pub fn cancel(self) {
        self.response.abort();
    }
}
