//! A method as calls need it, from the schema: its path, kind, declared priority and
//! idempotency, and message types, and the conversions between its messages and what JavaScript passes.

use bytes::Bytes;
use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor, SerializeOptions};
use quicrpc::{CallKind, Idempotency, Priority};

/// A request message as JavaScript gave it.
#[derive(Debug)]
pub(crate) enum Input {
    /// JSON text, proto3's mapping.
    Json(String),
    /// The protobuf encoding, sent as it is.
    Encoded(Bytes),
}

/// One method of the schema, looked up once per client.
#[derive(Clone, Debug)]
pub(crate) struct Method {
    pub(crate) path: PathAndQuery,
    pub(crate) client_streaming: bool,
    pub(crate) server_streaming: bool,
    /// `option (quicrpc.priority)`, applied unless the call names one.
    pub(crate) priority: Option<Priority>,
    /// The method's shape, for quicrpc's 0-RTT decision.
    pub(crate) kind: CallKind,
    /// `option idempotency_level`, from the descriptor and nowhere else: quicrpc sends a
    /// call as 0-RTT early data, which can be replayed, only if it is replay-safe.
    pub(crate) idempotency: Idempotency,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

impl Method {
    pub(crate) fn new(method: &MethodDescriptor) -> Result<Self, String> {
        let path = PathAndQuery::from_maybe_shared(quicrpc_schema::method_path(method))
            .map_err(|e| format!("method {}: {e}", method.full_name()))?;
        Ok(Self {
            path,
            client_streaming: method.is_client_streaming(),
            server_streaming: method.is_server_streaming(),
            priority: quicrpc_schema::declared_priority(method),
            kind: quicrpc_schema::call_kind(method),
            idempotency: quicrpc_schema::declared_idempotency(method),
            input: method.input(),
            output: method.output(),
        })
    }

    /// A request message's encoding; the error names the field that does not fit.
    pub(crate) fn encode(&self, input: Input) -> Result<Bytes, String> {
        let text = match input {
            Input::Encoded(bytes) => return Ok(bytes),
            Input::Json(text) => text,
        };
        let bad =
            |why: String| format!("the request does not fit {}: {why}", self.input.full_name());
        let mut json = serde_json::Deserializer::from_str(&text);
        let message = quicrpc_schema::message_from_json(&mut json, &self.input)
            .map_err(|e| bad(e.to_string()))?;
        // Nothing but whitespace may follow the message.
        json.end().map_err(|e| bad(e.to_string()))?;
        Ok(message.encode_to_vec().into())
    }

    /// A response message as JSON text (proto3's mapping).
    pub(crate) fn to_json(&self, bytes: Bytes, emit_defaults: bool) -> Result<String, String> {
        let message = DynamicMessage::decode(self.output.clone(), bytes).map_err(|e| {
            format!(
                "the response is not a valid {}: {e}",
                self.output.full_name()
            )
        })?;
        let options = SerializeOptions::new().skip_default_fields(!emit_defaults);
        let mut text = Vec::new();
        let mut serializer = serde_json::Serializer::new(&mut text);
        message
            .serialize_with_options(&mut serializer, &options)
            .map_err(|e| format!("the response as JSON: {e}"))?;
        // serde_json writes UTF-8 only.
        String::from_utf8(text).map_err(|e| format!("the response as JSON: {e}"))
    }
}
