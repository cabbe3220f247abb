//! Messages from proto3's JSON mapping, with the field that does not fit named.

use std::fmt;

use prost_reflect::{DynamicMessage, MessageDescriptor};

/// JSON that is not a message of the expected type: the field where it stops fitting (as a
/// path, `items[2].name`) and why.
#[derive(Debug)]
pub struct JsonError {
    path: Option<String>,
    reason: String,
}

impl JsonError {
    /// The path of the field that does not fit (`payload`, `items[2].name`); `None` when the
    /// whole value does not (not a JSON object, say, or not JSON at all).
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "field `{path}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for JsonError {}

/// One `desc` message from JSON in proto3's mapping: field names as in the `.proto` or in
/// lowerCamelCase, 64-bit integers as numbers or strings, bytes as base64, enums by name
/// or number. The error names the field that does not fit.
///
/// Takes any serde deserializer: a `serde_json::Value`, or `&mut
/// serde_json::Deserializer::from_str(text)` to read text without building a value first.
pub fn message_from_json<'de, D>(
    deserializer: D,
    desc: &MessageDescriptor,
) -> Result<DynamicMessage, JsonError>
where
    D: serde::Deserializer<'de>,
{
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
    DynamicMessage::deserialize(desc.clone(), tracked).map_err(|e| {
        let path = track.path().to_string();
        JsonError {
            path: (path != "." && !path.is_empty()).then_some(path),
            reason: e.to_string(),
        }
    })
}
