//! What the user gives: request JSON (`-d`), metadata (`-H`) and durations.

use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey, MetadataMap, MetadataValue};

use crate::error::CliError;

/// Parses `1.5s`, `500ms`, `250us`, `2m`, `1h`; a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use h, m, s, ms or us)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Request metadata from `-H 'key: value'` arguments. Keys ending in `-bin` take base64
/// values (padded or not), sent as binary metadata.
pub(crate) fn parse_headers(headers: &[String]) -> Result<MetadataMap, CliError> {
    let mut map = MetadataMap::new();
    for header in headers {
        let bad = |why: &str| CliError::Usage(format!("bad header {header:?}: {why}"));
        let (key, value) = header
            .split_once(':')
            .ok_or_else(|| bad("expected 'key: value'"))?;
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        if key.ends_with("-bin") {
            let key = BinaryMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| bad("invalid metadata key"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
                .map_err(|e| bad(&format!("a -bin value must be base64: {e}")))?;
            map.append_bin(key, MetadataValue::from_bytes(&bytes));
        } else {
            let key = AsciiMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| bad("invalid metadata key"))?;
            let value = value
                .parse()
                .map_err(|_| bad("a value must be printable ASCII (or use a -bin key)"))?;
            map.append(key, value);
        }
    }
    Ok(map)
}

/// The text of `-d`: the argument itself, `@FILE`'s contents, or standard input for `@-`.
/// Without `-d`, one empty message (`{}`).
pub(crate) fn read_data(data: Option<&str>) -> Result<String, CliError> {
    match data {
        None => Ok("{}".to_owned()),
        Some("@-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::NoInput(format!("reading standard input: {e}")))?;
            Ok(text)
        }
        Some(data) => match data.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| CliError::NoInput(format!("reading -d @{path}: {e}"))),
            None => Ok(data.to_owned()),
        },
    }
}

/// Request messages of type `desc` from JSON text: one JSON object per message, separated by
/// whitespace (one per line, say). Proto3's JSON mapping: field names as in the `.proto` or
/// in lowerCamelCase, 64-bit integers as numbers or strings, bytes as base64.
pub(crate) fn parse_messages(
    text: &str,
    desc: &MessageDescriptor,
) -> Result<Vec<DynamicMessage>, CliError> {
    let mut messages = Vec::new();
    let values = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for (index, value) in values.enumerate() {
        let n = index + 1;
        let value = value
            .map_err(|e| CliError::Data(format!("request message {n} is not valid JSON: {e}")))?;
        let message = message_from_json(value, desc).map_err(|e| {
            CliError::Data(format!(
                "request message {n} does not fit {}: {e}",
                desc.full_name()
            ))
        })?;
        messages.push(message);
    }
    Ok(messages)
}

/// One message from a JSON value; the error names the field that does not fit.
fn message_from_json(
    value: serde_json::Value,
    desc: &MessageDescriptor,
) -> Result<DynamicMessage, String> {
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize(desc.clone(), deserializer).map_err(|e| {
        let path = track.path().to_string();
        if path == "." || path.is_empty() {
            e.to_string()
        } else {
            format!("field `{path}`: {e}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("20us"), Ok(Duration::from_micros(20)));
        for bad in ["", "s", "ten", "5 parsecs", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers() {
        let map = parse_headers(&["X-Key: some value".into(), "x-data-bin: AAEC".into()]).unwrap();
        assert_eq!(map.get("x-key").unwrap(), "some value");
        assert_eq!(
            map.get_bin("x-data-bin")
                .unwrap()
                .to_bytes()
                .unwrap()
                .as_ref(),
            [0, 1, 2]
        );
        for bad in ["no colon", "bad key: v", "x-bin: not base64!"] {
            assert!(
                matches!(parse_headers(&[bad.into()]), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
