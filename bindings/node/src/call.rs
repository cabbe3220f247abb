//! [`NativeCall`]: one call of any kind, as a Tokio task that JavaScript writes to and reads
//! from through bounded channels.
//!
//! The task resolves the method (once per client), encodes the request, makes the call
//! with tonic's `Grpc` over the client's channel, and hands JavaScript [`CallEvent`]s: the
//! response headers, each message, and last the status. Cancelling (`cancel()`, an
//! `AbortSignal`, `close()` on the client, or the call object collected) drops the call,
//! which resets its stream: the server sees the cancellation.

use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use quicrpc_schema::RawCodec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::client::{Shared, lock};
use crate::metadata::{self, MetadataEntry};
use crate::method::{Input, Method};
use crate::options::CallSettings;

/// Request messages JavaScript may write ahead of the network: `write()` resolves only once
/// its message is in this buffer, so a writer faster than the connection waits.
const REQUEST_BUFFER: usize = 16;

/// Events the call may read ahead of JavaScript: past this, the call stops reading from its
/// stream, and QUIC's flow control holds the server back.
const EVENT_BUFFER: usize = 16;

/// The most events one `next()` hands over.
const EVENTS_PER_READ: usize = 64;

/// How a call ended: gRPC's status, in `@grpc/grpc-js`'s terms.
#[napi(object)]
#[derive(Debug)]
pub struct CallStatus {
    /// The status code: 0 OK, 1 CANCELLED, ... 16 UNAUTHENTICATED.
    pub code: u32,
    /// The status message.
    pub details: String,
    /// The trailers: the trailing metadata, with `grpc-status-details-bin` when the status
    /// has details.
    pub metadata: Vec<MetadataEntry>,
}

/// What the call has for JavaScript, one thing at a time: its response headers (before any
/// message), a response message, or the status, which is last.
#[napi(object)]
pub struct CallEvent {
    /// The response headers (metadata).
    pub headers: Option<Vec<MetadataEntry>>,
    /// A response message: JSON text, or its encoding for a call with `raw: true`.
    pub message: Option<Either<String, Buffer>>,
    /// The status; nothing follows it.
    pub status: Option<CallStatus>,
}

impl fmt::Debug for CallEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.message.as_ref().map(|message| match message {
            Either::A(text) => text.len(),
            Either::B(bytes) => bytes.len(),
        });
        f.debug_struct("CallEvent")
            .field("headers", &self.headers)
            .field("message_len", &message)
            .field("status", &self.status)
            .finish()
    }
}

/// One call under way.
#[napi]
#[derive(Debug)]
pub struct NativeCall {
    requests: Mutex<Option<mpsc::Sender<Input>>>,
    events: Arc<tokio::sync::Mutex<mpsc::Receiver<CallEvent>>>,
    cancel: CancellationToken,
}

#[napi]
impl NativeCall {
    /// Sends a request message (JSON text or encoded bytes) of a client-streaming or
    /// bidirectional call. Resolves once the call has taken it (`true`), or to `false` if
    /// the call has ended, or its requests were ended, before it could.
    #[napi]
    pub async fn write(&self, message: Either<String, Buffer>) -> bool {
        let Some(requests) = lock(&self.requests).clone() else {
            return false;
        };
        let input = match message {
            Either::A(text) => Input::Json(text),
            Either::B(bytes) => Input::Encoded(Bytes::copy_from_slice(&bytes)),
        };
        requests.send(input).await.is_ok()
    }

    /// Ends the request stream: the server sees the end of its requests.
    #[napi]
    pub fn end(&self) {
        lock(&self.requests).take();
    }

    /// The next events, at least one unless the call is over (then none), at most 64.
    #[napi]
    pub async fn next(&self) -> Vec<CallEvent> {
        let mut events = self.events.lock().await;
        let Some(first) = events.recv().await else {
            return Vec::new();
        };
        let mut batch = vec![first];
        while batch.len() < EVENTS_PER_READ {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        batch
    }

    /// Cancels the call: it ends with CANCELLED, and the server sees the cancellation.
    #[napi]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for NativeCall {
    /// A call that JavaScript let go of is not finished for nothing.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl NativeCall {
    /// Starts the call's task on the shared runtime.
    pub(crate) fn start(
        shared: Arc<Shared>,
        method: String,
        request: Option<Input>,
        settings: Result<CallSettings, String>,
    ) -> Self {
        let (requests, requests_rx) = mpsc::channel(REQUEST_BUFFER);
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let cancel = shared.closed.child_token();
        let task = Task {
            shared,
            method,
            events: events_tx,
            cancel: cancel.clone(),
            bad_request: Arc::new(Mutex::new(None)),
        };
        napi::bindgen_prelude::spawn(task.run(request, settings, requests_rx));
        Self {
            requests: Mutex::new(Some(requests)),
            events: Arc::new(tokio::sync::Mutex::new(events)),
            cancel,
        }
    }
}

/// What the call's task holds.
struct Task {
    shared: Arc<Shared>,
    method: String,
    events: mpsc::Sender<CallEvent>,
    cancel: CancellationToken,
    /// A written request message that did not fit the request type: the call is cancelled,
    /// and ends with this status rather than CANCELLED.
    bad_request: Arc<Mutex<Option<Status>>>,
}

impl Task {
    /// Runs the call to its status, which is the last event.
    async fn run(
        self,
        request: Option<Input>,
        settings: Result<CallSettings, String>,
        requests: mpsc::Receiver<Input>,
    ) {
        let outcome = match self.shared.closed.is_cancelled() {
            true => Err(Status::unavailable("the client is closed")),
            false => tokio::select! {
                biased;
                () = self.cancel.cancelled() => Err(self.cancelled()),
                outcome = self.call(request, settings, requests) => outcome,
            },
        };
        // close() could not take the schema (and its clone of the channel) while a call was
        // looking a method up in it; the call, cancelled, lets it go now.
        if self.shared.closed.is_cancelled() {
            self.shared.release_schema().await;
        }
        let status = match outcome {
            Ok(trailers) => CallStatus::ok(&trailers),
            Err(status) => CallStatus::from_status(&status),
        };
        let end = CallEvent {
            headers: None,
            message: None,
            status: Some(status),
        };
        // JavaScript may have let go of the call: then no one is told.
        let _ = self.events.send(end).await;
    }

    /// Why the call was cancelled: a bad request message, the client closed, or the caller.
    fn cancelled(&self) -> Status {
        if let Some(status) = lock(&self.bad_request).take() {
            return status;
        }
        match self.shared.closed.is_cancelled() {
            true => Status::cancelled("the client was closed"),
            false => Status::cancelled("cancelled by the client"),
        }
    }

    /// The call itself. `Ok`: the trailers of an OK status.
    async fn call(
        &self,
        request: Option<Input>,
        settings: Result<CallSettings, String>,
        requests: mpsc::Receiver<Input>,
    ) -> Result<MetadataMap, Status> {
        let settings = settings.map_err(Status::invalid_argument)?;
        let method = self.shared.method(&self.method).await?;
        let first = match method.client_streaming {
            true => None,
            false => {
                let input = request.ok_or_else(|| {
                    Status::invalid_argument(format!("{} takes one request message", self.method))
                })?;
                Some(method.encode(input).map_err(Status::invalid_argument)?)
            }
        };
        let mut grpc = tonic::client::Grpc::new(self.shared.channel()?);
        grpc.ready().await?;
        let path = method.path.clone();
        let raw = settings.raw;
        match (first, method.server_streaming) {
            (Some(first), false) => {
                let request = request_with(&method, &settings, first);
                let (headers, message, _) = grpc.unary(request, path, RawCodec).await?.into_parts();
                self.headers(&headers).await?;
                self.message(&method, raw, message).await?;
                Ok(MetadataMap::new())
            }
            (Some(first), true) => {
                let request = request_with(&method, &settings, first);
                let response = grpc.server_streaming(request, path, RawCodec).await?;
                self.stream(&method, raw, response).await
            }
            (None, false) => {
                let body = self.request_stream(method.clone(), requests);
                let request = request_with(&method, &settings, body);
                let (headers, message, _) = grpc
                    .client_streaming(request, path, RawCodec)
                    .await?
                    .into_parts();
                self.headers(&headers).await?;
                self.message(&method, raw, message).await?;
                Ok(MetadataMap::new())
            }
            (None, true) => {
                let body = self.request_stream(method.clone(), requests);
                let request = request_with(&method, &settings, body);
                let response = grpc.streaming(request, path, RawCodec).await?;
                self.stream(&method, raw, response).await
            }
        }
    }

    /// The written messages, encoded. One that does not fit cancels the call with its
    /// error, and the stream never ends: the server must not see a clean end of requests.
    fn request_stream(
        &self,
        method: Method,
        requests: mpsc::Receiver<Input>,
    ) -> impl Stream<Item = Bytes> + Send + 'static {
        let state = RequestState {
            requests,
            method,
            cancel: self.cancel.clone(),
            bad_request: self.bad_request.clone(),
        };
        futures_util::stream::unfold(state, |mut state| async move {
            // `None`: JavaScript called end().
            let input = state.requests.recv().await?;
            match state.method.encode(input) {
                Ok(bytes) => Some((bytes, state)),
                Err(why) => {
                    *lock(&state.bad_request) = Some(Status::invalid_argument(why));
                    state.cancel.cancel();
                    std::future::pending::<Option<(Bytes, RequestState)>>().await
                }
            }
        })
    }

    /// The response stream's headers, messages and trailers.
    async fn stream(
        &self,
        method: &Method,
        raw: bool,
        response: tonic::Response<tonic::Streaming<Bytes>>,
    ) -> Result<MetadataMap, Status> {
        let (headers, mut messages, _) = response.into_parts();
        self.headers(&headers).await?;
        while let Some(message) = messages.message().await? {
            self.message(method, raw, message).await?;
        }
        Ok(messages.trailers().await?.unwrap_or_default())
    }

    async fn headers(&self, headers: &MetadataMap) -> Result<(), Status> {
        self.send(CallEvent {
            headers: Some(metadata::from_map(headers)),
            message: None,
            status: None,
        })
        .await
    }

    async fn message(&self, method: &Method, raw: bool, message: Bytes) -> Result<(), Status> {
        let message = match raw {
            true => Either::B(Buffer::from(message.to_vec())),
            false => Either::A(
                method
                    .to_json(message, self.shared.emit_defaults)
                    .map_err(Status::internal)?,
            ),
        };
        self.send(CallEvent {
            headers: None,
            message: Some(message),
            status: None,
        })
        .await
    }

    /// Hands JavaScript an event, waiting while it has [`EVENT_BUFFER`] unread.
    async fn send(&self, event: CallEvent) -> Result<(), Status> {
        self.events
            .send(event)
            .await
            .map_err(|_| Status::cancelled("the call was let go of"))
    }
}

/// What the request stream of a client-streaming or bidirectional call reads.
struct RequestState {
    requests: mpsc::Receiver<Input>,
    method: Method,
    cancel: CancellationToken,
    bad_request: Arc<Mutex<Option<Status>>>,
}

/// A request with the call's metadata, deadline and priority (the caller's, or the one the
/// method declares), and the method's kind and idempotency from its descriptor, by which
/// quicrpc sends a replay-safe call as 0-RTT early data on a resumed connection (generated
/// code has them in its method tables; a call built at run time passes them along).
fn request_with<T>(method: &Method, settings: &CallSettings, body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    *request.metadata_mut() = settings.metadata.clone();
    if let Some(timeout) = settings.timeout {
        request.set_timeout(timeout);
    }
    let extensions = request.extensions_mut();
    if let Some(priority) = settings.priority.or(method.priority) {
        extensions.insert(priority);
    }
    extensions.insert(method.kind);
    extensions.insert(method.idempotency);
    request
}

impl CallStatus {
    /// OK, with the trailers.
    fn ok(trailers: &MetadataMap) -> Self {
        Self {
            code: 0,
            details: String::new(),
            metadata: metadata::from_map(trailers),
        }
    }

    /// A status from tonic, its details (if any) among the metadata as gRPC sends them.
    pub(crate) fn from_status(status: &Status) -> Self {
        let mut metadata = metadata::from_map(status.metadata());
        if !status.details().is_empty() {
            metadata.push(MetadataEntry {
                key: "grpc-status-details-bin".into(),
                value: Either::B(status.details().to_vec().into()),
            });
        }
        Self {
            code: status.code() as u32,
            details: status.message().to_owned(),
            metadata,
        }
    }

    /// A failure on this side, before any call.
    pub(crate) fn local(code: Code, details: &str) -> Self {
        Self::from_status(&Status::new(code, details))
    }

    /// A schema that could not be had, or a method not in it, as a status.
    pub(crate) fn schema_status(error: quicrpc_schema::Error) -> Status {
        use quicrpc_schema::Error;
        match error {
            Error::Status(status) => status,
            Error::UnknownName(m) => Status::unimplemented(m),
            other => Status::invalid_argument(other.to_string()),
        }
    }

    /// As [`Self::schema_status`], for JavaScript.
    pub(crate) fn from_schema_error(error: quicrpc_schema::Error) -> Self {
        Self::from_status(&Self::schema_status(error))
    }
}
