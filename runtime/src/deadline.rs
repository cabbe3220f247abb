//! A call's deadline, from the `grpc-timeout` header: `TimeoutValue TimeoutUnit`, at most 8
//! digits.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;
use tonic::Status;

/// The deadline `headers` set for a call that starts now: `Ok(None)` without a
/// `grpc-timeout`, INTERNAL for a malformed one (as gRPC over HTTP/2 answers it).
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Instant>, Status> {
    static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
    match headers.get(&GRPC_TIMEOUT) {
        None => Ok(None),
        Some(value) => match parse(value) {
            Some(timeout) => Ok(Some(Instant::now() + timeout)),
            None => Err(Status::internal("malformed grpc-timeout")),
        },
    }
}

/// Parses a `grpc-timeout` value. `None` if it is malformed.
pub(crate) fn parse(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_comes_from_grpc_timeout_or_not_at_all() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_headers(&headers).ok(), Some(None));
        headers.insert("grpc-timeout", HeaderValue::from_static("5S"));
        let deadline = from_headers(&headers).unwrap().unwrap();
        assert!(deadline > Instant::now() + Duration::from_secs(4));
        headers.insert("grpc-timeout", HeaderValue::from_static("5s"));
        let err = from_headers(&headers).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
    }

    #[test]
    fn parses_every_unit_and_refuses_junk() {
        let ok = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("99999999m", Duration::from_millis(99_999_999)),
            ("5u", Duration::from_micros(5)),
            ("0n", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse(&HeaderValue::from_static(text)), Some(want), "{text}");
        }
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S", " 1S"] {
            assert_eq!(parse(&HeaderValue::from_static(bad)), None, "{bad:?}");
        }
    }
}
