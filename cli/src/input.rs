//! What the user gives: request JSON (`-d`), metadata (`-H`) and durations.

use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey, MetadataMap, MetadataValue};

use crate::error::CliError;

/// The longest duration any option takes: 365 days (8760h).
///
/// Far beyond any real deadline, connect timeout or load test, and it keeps every timer the
/// tool sets from it (a deadline, twice the connect timeout and a second) inside tokio's
/// timer range (about 2.2 years) and far from where `Instant + Duration` overflows and
/// panics.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Parses `1.5s`, `500ms`, `250us`, `2m`, `1h`; a bare number is seconds. At most
/// [`MAX_DURATION`].
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
    let too_long = || format!("{text:?} is too long: the most is 8760h (365 days)");
    let duration = Duration::try_from_secs_f64(seconds).map_err(|e| match seconds > 0.0 {
        // Past what a `Duration` holds (or infinite): too long all the same.
        true => too_long(),
        false => format!("{text:?}: {e}"),
    })?;
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// Parses `--rate`: calls per second, a positive number, at least one call per
/// [`MAX_DURATION`] (so the time between calls is a duration like any other).
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of calls per second"))?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!(
            "{text:?}: must be a positive number of calls per second"
        ));
    }
    let slowest = 1.0 / MAX_DURATION.as_secs_f64();
    if rate < slowest {
        return Err(format!(
            "{text:?} is too slow: the least is one call in 365 days ({slowest:.2e} calls/s)"
        ));
    }
    Ok(rate)
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
        let message = quicrpc_schema::message_from_json(value, desc).map_err(|e| {
            CliError::Data(format!(
                "request message {n} does not fit {}: {e}",
                desc.full_name()
            ))
        })?;
        messages.push(message);
    }
    Ok(messages)
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
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for bad in ["", "s", "ten", "5 parsecs", "-1s", "nan", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        // Past the bound, and past what a `Duration` (or an `f64`) holds.
        let huge = format!("1{}s", "0".repeat(400));
        for long in ["8761h", "10000000000000000000", "100000000h", huge.as_str()] {
            let error = parse_duration(long).expect_err(long);
            assert!(error.contains("too long"), "{long:?}: {error}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100"), Ok(100.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert_eq!(parse_rate("1e-7"), Ok(1e-7));
        for bad in ["", "fast", "0", "-1", "NaN", "inf", "1e-300", "1e-8"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
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
