//! `quicrpc call`: one call of any kind, JSON in and out.

use std::collections::VecDeque;
use std::io::Write as _;
use std::pin::Pin;
use std::time::Duration;

use clap::Args;
use futures_util::{Stream, StreamExt as _};
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor, SerializeOptions};
use quicrpc::{Channel, Priority, Transport};
use quicrpc_schema::{DynamicCodec, escape, method_path, split_method};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::oneshot;
use tonic::metadata::MetadataMap;

use crate::error::CliError;
use crate::input::{parse_duration, parse_headers, parse_messages, read_data};
use crate::schema::SchemaArgs;
use crate::target::TargetArgs;

/// `quicrpc call`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  quicrpc call localhost:50051 quicrpc.testing.Echo/Unary -d '{\"message\": \"hi\"}'
  quicrpc call localhost:50051 quicrpc.testing.Echo/ServerStream -d '{\"responseCount\": 3}'
  printf '{\"message\":\"a\"}\\n{\"message\":\"b\"}\\n' | quicrpc call localhost:50051 quicrpc.testing.Echo/Bidi -d @-
  quicrpc call localhost:50051 pkg.Svc/Get --proto api.proto -I protos -H 'authorization: Bearer x'

The request's JSON uses proto3's JSON mapping (field names as in the .proto or in
lowerCamelCase, 64-bit integers as strings or numbers, bytes as base64). Each response
message is printed on standard output as one line of JSON; the status goes to standard
error, and the exit code is its code (0 OK).")]
pub(crate) struct CallArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// The method: package.Service/Method.
    #[arg(value_name = "METHOD")]
    pub(crate) method: String,

    /// The request: JSON text, @FILE, or @- for standard input. Several messages (client
    /// and bidirectional streaming): one JSON object per line. With @- and a streaming
    /// request, each line is sent as it is read, so a bidirectional call is interactive.
    /// Default: {}.
    #[arg(short = 'd', long = "data", value_name = "JSON|@FILE|@-")]
    pub(crate) data: Option<String>,

    /// Request metadata, 'key: value'. Repeatable. Keys ending in -bin take base64 values.
    #[arg(short = 'H', long = "header", value_name = "KEY: VALUE")]
    pub(crate) headers: Vec<String>,

    /// The call's deadline (sent as grpc-timeout), e.g. 5s or 200ms; at most 8760h (365
    /// days).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,

    /// Overrides the method's send priority for this call: critical, high, normal, low or
    /// bulk (QUIC only; gRPC over TCP has no priorities).
    #[arg(long, value_name = "PRIORITY", value_parser = parse_priority)]
    pub(crate) priority: Option<Priority>,

    /// Prints fields that have their default value too (proto3 JSON leaves them out).
    #[arg(long)]
    pub(crate) emit_defaults: bool,

    /// Also prints the transport, response metadata and trailers on standard error.
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,

    #[command(flatten)]
    pub(crate) schema: SchemaArgs,
}

/// `--priority`'s parser: the names as the `.proto` option spells them, any case.
pub(crate) fn parse_priority(text: &str) -> Result<Priority, String> {
    text.parse().map_err(|_| {
        let names: Vec<String> = Priority::ALL.iter().map(|p| p.to_string()).collect();
        format!("unknown priority {text:?} (one of: {})", names.join(", "))
    })
}

/// A call, ready to make (once or, for `bench`, many times).
#[derive(Clone, Debug)]
pub(crate) struct Invocation {
    pub(crate) method: MethodDescriptor,
    /// The request messages; empty when they come from standard input as the call runs
    /// ([`Self::from_stdin`]).
    pub(crate) messages: Vec<DynamicMessage>,
    /// Whether the request messages are read from standard input line by line while the
    /// call runs (`-d @-` with a streaming request).
    pub(crate) from_stdin: bool,
    pub(crate) metadata: MetadataMap,
    pub(crate) timeout: Option<Duration>,
    pub(crate) priority: Option<Priority>,
}

/// What a successful call returned besides its messages.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) headers: MetadataMap,
    pub(crate) trailers: Option<MetadataMap>,
    pub(crate) transport: Option<Transport>,
}

/// The options `call` and `bench` share for building a call.
pub(crate) struct CallSpec<'a> {
    pub(crate) method: &'a str,
    pub(crate) data: Option<&'a str>,
    pub(crate) headers: &'a [String],
    pub(crate) timeout: Option<Duration>,
    pub(crate) priority: Option<Priority>,
    pub(crate) schema: &'a SchemaArgs,
    /// Whether `-d @-` with a streaming request may be read as the call runs (`call`), or
    /// must be read whole first (`bench`, which sends it again and again).
    pub(crate) stream_stdin: bool,
}

impl CallSpec<'_> {
    /// Reads the input, connects, finds the method and builds its request messages. What
    /// can be checked without the server (with `--proto`, the method and the JSON too) is
    /// checked before connecting.
    pub(crate) async fn prepare(
        &self,
        target: &TargetArgs,
    ) -> Result<(Channel, Invocation), CliError> {
        target.uri()?;
        split_method(self.method)?;
        let metadata = parse_headers(self.headers)?;
        // Standard input is read once the method is known: it may be read as the call runs.
        let text = match self.data {
            Some("@-") => None,
            data => Some(read_data(data)?),
        };
        let local = match self.schema.has_protos() {
            true => {
                let method = self
                    .schema
                    .open(None, target.connect_timeout)?
                    .method(self.method)
                    .await?;
                Some(self.requests(method, text.as_deref())?)
            }
            false => None,
        };
        let channel = target.connect().await?;
        let (method, messages, from_stdin) = match local {
            Some(requests) => requests,
            None => {
                let mut schema = self
                    .schema
                    .open(Some(channel.clone()), target.connect_timeout)?;
                let method = schema.method(self.method).await?;
                self.requests(method, text.as_deref())?
            }
        };
        let invocation = Invocation {
            method,
            messages,
            from_stdin,
            metadata,
            timeout: self.timeout,
            priority: self.priority,
        };
        Ok((channel, invocation))
    }

    /// The request messages for `method` from `text` (`None`: `-d @-`), or, for a streaming
    /// request from standard input, none yet and `true`.
    fn requests(
        &self,
        method: MethodDescriptor,
        text: Option<&str>,
    ) -> Result<(MethodDescriptor, Vec<DynamicMessage>, bool), CliError> {
        if text.is_none() && self.stream_stdin && method.is_client_streaming() {
            return Ok((method, Vec::new(), true));
        }
        let text = match text {
            Some(text) => text.to_owned(),
            None => read_data(Some("@-"))?,
        };
        let messages = parse_messages(&text, &method.input())?;
        if !method.is_client_streaming() && messages.len() != 1 {
            return Err(CliError::Data(format!(
                "{} takes exactly one request message; -d held {}",
                method.full_name(),
                messages.len()
            )));
        }
        Ok((method, messages, false))
    }
}

/// Runs `quicrpc call`.
pub(crate) async fn run(args: CallArgs) -> Result<(), CliError> {
    let spec = CallSpec {
        method: &args.method,
        data: args.data.as_deref(),
        headers: &args.headers,
        timeout: args.timeout,
        priority: args.priority,
        schema: &args.schema,
        stream_stdin: true,
    };
    let (channel, invocation) = spec.prepare(&args.target).await?;
    let options = SerializeOptions::new().skip_default_fields(!args.emit_defaults);
    let print = |message: DynamicMessage| print_json(&message, &options);
    let result = if invocation.from_stdin {
        // A line that is not a request message ends the call (cancelling it) with that
        // error.
        let (requests, mut bad_input) = stdin_requests(invocation.method.input());
        let call = invoke_with(channel, &invocation, requests, print);
        tokio::select! {
            result = call => match bad_input.try_recv() {
                Ok(error) => Err(error),
                Err(_) => result,
            },
            Ok(error) = &mut bad_input => Err(error),
        }
    } else {
        invoke(channel, &invocation, print).await
    };
    match result {
        Ok(outcome) => {
            if args.verbose {
                print_outcome(&outcome);
            }
            eprintln!("status: OK (0)");
            Ok(())
        }
        Err(CliError::Status(status)) => {
            if args.verbose {
                print_metadata("trailer", status.metadata());
            }
            Err(CliError::Status(status))
        }
        Err(e) => Err(e),
    }
}

/// Request messages read from standard input, one JSON object per line, as the call runs.
/// The receiver gets the error that ended the stream early, if one did.
fn stdin_requests(desc: MessageDescriptor) -> (Requests, oneshot::Receiver<CliError>) {
    let (error_tx, error_rx) = oneshot::channel();
    let lines = BufReader::new(tokio::io::stdin()).lines();
    let state = (lines, Some(error_tx), 0_usize, VecDeque::new());
    let messages = futures_util::stream::unfold(state, move |state| {
        let desc = desc.clone();
        async move {
            let (mut lines, mut error_tx, mut line_number, mut ready) = state;
            loop {
                if let Some(message) = ready.pop_front() {
                    return Some((message, (lines, error_tx, line_number, ready)));
                }
                let failed = match lines.next_line().await {
                    Ok(Some(line)) => {
                        line_number += 1;
                        match parse_messages(&line, &desc) {
                            Ok(messages) => {
                                ready.extend(messages);
                                continue;
                            }
                            Err(e) => CliError::Data(format!("line {line_number}: {e}")),
                        }
                    }
                    Ok(None) => return None,
                    Err(e) => CliError::NoInput(format!("reading standard input: {e}")),
                };
                if let Some(tx) = error_tx.take() {
                    let _ = tx.send(failed);
                }
                return None;
            }
        }
    });
    (Box::pin(messages), error_rx)
}

/// Request messages for [`invoke_with`].
pub(crate) type Requests = Pin<Box<dyn Stream<Item = DynamicMessage> + Send>>;

/// Makes the call with the invocation's messages, handing each response message to
/// `on_message`. A status other than OK is [`CliError::Status`].
pub(crate) async fn invoke(
    channel: Channel,
    invocation: &Invocation,
    on_message: impl FnMut(DynamicMessage) -> Result<(), CliError>,
) -> Result<Outcome, CliError> {
    let requests = Box::pin(futures_util::stream::iter(invocation.messages.clone()));
    invoke_with(channel, invocation, requests, on_message).await
}

/// Makes the call with the messages of `requests` (only the first for a method that takes
/// one).
pub(crate) async fn invoke_with(
    channel: Channel,
    invocation: &Invocation,
    mut requests: Requests,
    mut on_message: impl FnMut(DynamicMessage) -> Result<(), CliError>,
) -> Result<Outcome, CliError> {
    let method = &invocation.method;
    let path = http::uri::PathAndQuery::from_maybe_shared(method_path(method))
        .map_err(|e| CliError::Usage(format!("method path: {e}")))?;
    let codec = DynamicCodec::new(method.output());
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let first = match method.is_client_streaming() {
        true => None,
        false => requests.next().await,
    };
    let no_request = || CliError::Data(format!("{} needs a request message", method.full_name()));
    let (headers, transport, mut responses) =
        match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => {
                let request = invocation.request(first.ok_or_else(no_request)?);
                let (headers, message, extensions) =
                    grpc.unary(request, path, codec).await?.into_parts();
                on_message(message)?;
                (headers, extensions.get::<Transport>().copied(), None)
            }
            (true, false) => {
                let request = invocation.request(requests);
                let (headers, message, extensions) = grpc
                    .client_streaming(request, path, codec)
                    .await?
                    .into_parts();
                on_message(message)?;
                (headers, extensions.get::<Transport>().copied(), None)
            }
            (false, true) => {
                let request = invocation.request(first.ok_or_else(no_request)?);
                let (headers, responses, extensions) = grpc
                    .server_streaming(request, path, codec)
                    .await?
                    .into_parts();
                (
                    headers,
                    extensions.get::<Transport>().copied(),
                    Some(responses),
                )
            }
            (true, true) => {
                let request = invocation.request(requests);
                let (headers, responses, extensions) =
                    grpc.streaming(request, path, codec).await?.into_parts();
                (
                    headers,
                    extensions.get::<Transport>().copied(),
                    Some(responses),
                )
            }
        };
    let mut trailers = None;
    if let Some(responses) = &mut responses {
        while let Some(message) = responses.message().await? {
            on_message(message)?;
        }
        trailers = responses.trailers().await?;
    }
    Ok(Outcome {
        headers,
        trailers,
        transport,
    })
}

impl Invocation {
    fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        if let Some(priority) = self.priority {
            request.extensions_mut().insert(priority);
        }
        request
    }
}

/// One message as one line of JSON on standard output.
fn print_json(message: &DynamicMessage, options: &SerializeOptions) -> Result<(), CliError> {
    let failed = |e: &dyn std::fmt::Display| {
        CliError::CantCreate(format!("writing the response to standard output: {e}"))
    };
    let mut out = std::io::stdout().lock();
    let mut serializer = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(&mut serializer, options)
        .map_err(|e| failed(&e))?;
    writeln!(out)
        .and_then(|()| out.flush())
        .map_err(|e| failed(&e))
}

fn print_outcome(outcome: &Outcome) {
    if let Some(transport) = outcome.transport {
        eprintln!("transport: {transport}");
    }
    print_metadata("header", &outcome.headers);
    if let Some(trailers) = &outcome.trailers {
        print_metadata("trailer", trailers);
    }
}

/// Metadata on standard error, without gRPC's own fields (the status is printed anyway),
/// escaped: the server chose it.
fn print_metadata(what: &str, metadata: &MetadataMap) {
    const GRPC_FIELDS: [&str; 4] = [
        "content-type",
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
    ];
    for (key, value) in metadata.clone().into_headers().iter() {
        if GRPC_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        eprintln!("{what}: {}: {}", escape(key.as_str()), escape(&value));
    }
}
