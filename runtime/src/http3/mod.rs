//! What both sides of gRPC over HTTP/3 (gRFC G2) share: the ALPN, RFC 9218's `priority`
//! header as quicrpc's [`Priority`], the status an HTTP/3 error code means, and quicrpc's own
//! adapter from quinn to `h3`'s QUIC traits ([`quic`]).

pub(crate) mod quic;

use h3::error::Code;
use tonic::Status;

use crate::Priority;

/// The ALPN of HTTP/3.
pub(crate) const ALPN: &[u8] = b"h3";

/// RFC 9218's request header.
pub(crate) const PRIORITY: http::HeaderName = http::HeaderName::from_static("priority");

/// RFC 9218's `priority` header as quicrpc's priority: urgency 0 is CRITICAL, 1 and 2 HIGH,
/// 3 (HTTP's default) NORMAL, 4 and 5 LOW, 6 and 7 BULK. `None` without an urgency.
pub(crate) fn priority_from_header(headers: &http::HeaderMap) -> Option<Priority> {
    let value = headers.get(PRIORITY)?.to_str().ok()?;
    let urgency = value
        .split(',')
        .map(str::trim)
        .find_map(|param| param.strip_prefix("u="))?
        .parse::<u8>()
        .ok()?;
    Some(match urgency {
        0 => Priority::Critical,
        1 | 2 => Priority::High,
        3 => Priority::Normal,
        4 | 5 => Priority::Low,
        6 | 7 => Priority::Bulk,
        _ => return None,
    })
}

/// The `priority` header a client sends for `priority`: the urgency that
/// [`priority_from_header`] reads back as it.
pub(crate) fn priority_header(priority: Priority) -> http::HeaderValue {
    http::HeaderValue::from_static(match priority {
        Priority::Critical => "u=0",
        Priority::High => "u=1",
        Priority::Normal => "u=3",
        Priority::Low => "u=4",
        Priority::Bulk => "u=6",
    })
}

/// The status of a call whose stream the peer reset (or stopped) with HTTP/3 error `code`,
/// as gRFC G2 maps them; any other code is INTERNAL.
pub(crate) fn reset_status(code: Code) -> Status {
    let value = code.value();
    if code == Code::H3_REQUEST_REJECTED {
        Status::unavailable(format!(
            "the server rejected the request unprocessed (H3_REQUEST_REJECTED, {value:#x})"
        ))
    } else if code == Code::H3_EXCESSIVE_LOAD {
        Status::resource_exhausted(format!(
            "the peer reported excessive load (H3_EXCESSIVE_LOAD, {value:#x})"
        ))
    } else if code == Code::H3_REQUEST_CANCELLED {
        Status::cancelled(format!(
            "the peer cancelled the request (H3_REQUEST_CANCELLED, {value:#x})"
        ))
    } else {
        Status::internal(format!(
            "stream reset by the peer with HTTP/3 error {value:#x}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_priority_survives_its_header() {
        for priority in [
            Priority::Critical,
            Priority::High,
            Priority::Normal,
            Priority::Low,
            Priority::Bulk,
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(PRIORITY, priority_header(priority));
            assert_eq!(priority_from_header(&headers), Some(priority));
        }
    }

    #[test]
    fn urgency_is_read_among_other_parameters() {
        let cases = [
            ("u=0", Some(Priority::Critical)),
            ("i, u=2", Some(Priority::High)),
            ("u=5, i", Some(Priority::Low)),
            ("u=7", Some(Priority::Bulk)),
            ("u=8", None),
            ("i", None),
            ("u=x", None),
        ];
        for (value, expected) in cases {
            let mut headers = http::HeaderMap::new();
            headers.insert(PRIORITY, value.parse().unwrap());
            assert_eq!(priority_from_header(&headers), expected, "{value}");
        }
    }

    #[test]
    fn reset_codes_map_as_g2_says() {
        let cases = [
            (Code::H3_REQUEST_REJECTED, tonic::Code::Unavailable),
            (Code::H3_EXCESSIVE_LOAD, tonic::Code::ResourceExhausted),
            (Code::H3_REQUEST_CANCELLED, tonic::Code::Cancelled),
            (Code::H3_INTERNAL_ERROR, tonic::Code::Internal),
            (Code::H3_NO_ERROR, tonic::Code::Internal),
        ];
        for (code, expected) in cases {
            assert_eq!(reset_status(code).code(), expected, "{code:?}");
        }
    }
}
