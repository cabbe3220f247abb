//! [`NativeClient`]: one connection (a [`quicrpc::Channel`]) and the schema its calls use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use quicrpc::{Channel, Transport};
use quicrpc_schema::{OptionNames, Schema};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::call::{CallStatus, NativeCall};
use crate::method::{Input, Method};
use crate::options::{CallOptions, Connect, ConnectOptions};

/// The options' names in JavaScript, for the schema's error messages.
const NAMES: OptionNames = OptionNames {
    protos: "protoFiles",
    import_paths: "importPaths",
    timeout: "connectTimeoutMs",
};

/// A client of one server: `new NativeClient(uri, options)`, then `connect()`.
#[napi]
#[derive(Debug)]
pub struct NativeClient {
    shared: Arc<Shared>,
    /// The checked options, until `connect()` takes them.
    pending: Mutex<Option<Connect>>,
}

/// What the client's calls share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The connection: `None` before `connect()` and after `close()`.
    channel: Mutex<Option<Channel>>,
    schema: tokio::sync::Mutex<Option<Schema>>,
    /// Methods already looked up, by the name the caller used.
    methods: Mutex<HashMap<String, Method>>,
    /// Cancelled by `close()`: every call's token is a child of it.
    pub(crate) closed: CancellationToken,
    pub(crate) emit_defaults: bool,
}

#[napi]
impl NativeClient {
    /// Checks the options (a bad URI, PEM or fallback policy throws); connects nothing yet.
    #[napi(constructor)]
    pub fn new(uri: String, options: Option<ConnectOptions>) -> napi::Result<Self> {
        let connect = options
            .unwrap_or_default()
            .check(&uri)
            .map_err(napi::Error::from_reason)?;
        let shared = Shared {
            channel: Mutex::new(None),
            schema: tokio::sync::Mutex::new(None),
            methods: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            emit_defaults: connect.emit_defaults,
        };
        Ok(Self {
            shared: Arc::new(shared),
            pending: Mutex::new(Some(connect)),
        })
    }

    /// Connects, and compiles the `.proto` files if there are any. Resolves to `null`, or to
    /// the failure's status (UNAVAILABLE: the server could not be reached; INVALID_ARGUMENT:
    /// the `.proto` files do not compile).
    #[napi]
    pub async fn connect(&self) -> Option<CallStatus> {
        let Some(connect) = lock(&self.pending).take() else {
            return Some(CallStatus::local(
                Code::FailedPrecondition,
                "connect() runs once",
            ));
        };
        let schema = if connect.protos.is_empty() {
            None
        } else {
            let (protos, imports) = (connect.protos.clone(), connect.import_paths.clone());
            let compiled =
                tokio::task::spawn_blocking(move || Schema::from_protos(&protos, &imports, NAMES))
                    .await;
            match compiled {
                Ok(Ok(schema)) => Some(schema),
                Ok(Err(e)) => return Some(CallStatus::from_schema_error(e)),
                Err(e) => return Some(CallStatus::local(Code::Internal, &e.to_string())),
            }
        };
        let channel = match connect.builder.connect().await {
            Ok(channel) => channel,
            Err(e) => {
                return Some(CallStatus::local(
                    Code::Unavailable,
                    &format!("cannot connect: {e}"),
                ));
            }
        };
        let schema = schema.unwrap_or_else(|| {
            Schema::from_reflection(channel.clone(), connect.connect_timeout, NAMES)
        });
        *self.shared.schema.lock().await = Some(schema);
        *lock(&self.shared.channel) = Some(channel);
        None
    }

    /// Starts a call of `method` (`package.Service/Method`). `request` is the one request
    /// message of a unary or server-streaming call (JSON text or encoded bytes); the
    /// messages of a client-streaming or bidirectional call are written to the call.
    #[napi]
    pub fn start(
        &self,
        method: String,
        request: Option<Either<String, Buffer>>,
        options: Option<CallOptions>,
    ) -> NativeCall {
        let request = request.map(|message| match message {
            Either::A(text) => Input::Json(text),
            Either::B(bytes) => Input::Encoded(bytes::Bytes::copy_from_slice(&bytes)),
        });
        let settings = options.unwrap_or_default().check();
        NativeCall::start(self.shared.clone(), method, request, settings)
    }

    /// The transport new calls use: `'quic'`, `'tcp'` or `'h3'`; `'closed'` after
    /// `close()`.
    #[napi(ts_return_type = "'quic' | 'tcp' | 'h3' | 'closed' | 'unknown'")]
    pub fn transport(&self) -> &'static str {
        match lock(&self.shared.channel).as_ref().map(Channel::transport) {
            Some(Transport::Quic) => "quic",
            Some(Transport::Tcp) => "tcp",
            Some(Transport::Http3) => "h3",
            // A transport added to quicrpc after this binding was written.
            Some(_) => "unknown",
            None => "closed",
        }
    }

    /// Ends every call under way (CANCELLED) and lets the connection go; later calls fail
    /// with UNAVAILABLE.
    #[napi]
    pub fn close(&self) {
        self.shared.close();
    }
}

impl Drop for NativeClient {
    /// A client that JavaScript let go of (garbage-collected) closes like `close()`.
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Shared {
    fn close(&self) {
        self.closed.cancel();
        let channel = lock(&self.channel).take();
        // The schema holds a clone of the channel for reflection; it goes too. Dropping them
        // needs no runtime (a finalizer may run after napi-rs's is gone, as Node exits): the
        // connection's tasks see the handles go and close it.
        let schema = self.schema.try_lock().ok().and_then(|mut s| s.take());
        drop((channel, schema));
        lock(&self.methods).clear();
    }

    /// Drops the schema, which holds a clone of the channel for reflection.
    pub(crate) async fn release_schema(&self) {
        drop(self.schema.lock().await.take());
    }

    /// The connection, for a call.
    pub(crate) fn channel(&self) -> Result<Channel, Status> {
        lock(&self.channel)
            .clone()
            .ok_or_else(|| Status::unavailable("the client is closed (or not connected)"))
    }

    /// The method `name` names, from the cache or the schema (which may ask the server).
    pub(crate) async fn method(&self, name: &str) -> Result<Method, Status> {
        if let Some(method) = lock(&self.methods).get(name) {
            return Ok(method.clone());
        }
        let mut schema = self.schema.lock().await;
        let schema = schema
            .as_mut()
            .ok_or_else(|| Status::unavailable("the client is closed (or not connected)"))?;
        let descriptor = schema
            .method(name)
            .await
            .map_err(CallStatus::schema_status)?;
        let method = Method::new(&descriptor).map_err(Status::invalid_argument)?;
        lock(&self.methods).insert(name.to_owned(), method.clone());
        Ok(method)
    }
}

/// Locks `mutex`, whether or not a panic poisoned it (what it guards stays consistent: each
/// critical section is one assignment or lookup).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
