//! gRPC statuses: the one place where transport events, a peer's mistakes and status fields
//! become a [`Status`], so that a status means the same on QUIC and on TCP, on the client and
//! on the server.

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use quinn::{ConnectionError, ReadError};
use tonic::{Code, Status};

use crate::wire::code::ErrorCode;
use crate::wire::fields::FieldError;

/// gRPC's status field names, looked up by a `HeaderName` rather than a `&str`, which
/// `HeaderMap` would parse and check on every lookup.
pub(crate) static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");

/// Which end of a call a message is about, for status messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Client,
    Server,
}

impl Peer {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// The gRPC status code in `fields`, if they carry one.
pub(crate) fn status_code(fields: &HeaderMap) -> Option<Code> {
    fields
        .get(&GRPC_STATUS)
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// The fields that carry `status`: `grpc-status`, `grpc-message`, details and its metadata,
/// plus `content-type` when they open a response (trailers-only).
pub(crate) fn status_fields(status: &Status, opens_response: bool) -> HeaderMap {
    let mut fields = status.metadata().clone().into_headers();
    if opens_response {
        fields.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
    }
    if status.add_header(&mut fields).is_err() {
        // Only the details can fail to encode; the code alone still gets through.
        fields.insert(
            GRPC_STATUS.clone(),
            http::HeaderValue::from(status.code() as i32),
        );
    }
    fields
}

/// The gRPC status code a call ends with when its stream is reset with wire value `value`
/// before the call's status arrived; values this version does not know give INTERNAL.
pub(crate) fn reset_code(value: u64) -> Code {
    match ErrorCode::from_u64(value) {
        Some(ErrorCode::Cancelled) => Code::Cancelled,
        Some(ErrorCode::RefusedStream | ErrorCode::TooEarly) => Code::Unavailable,
        Some(ErrorCode::DeadlineExceeded) => Code::DeadlineExceeded,
        Some(ErrorCode::MessageTooLarge) => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

/// The status for a call whose stream `peer` reset with wire value `value`.
pub(crate) fn reset_status(value: u64, peer: Peer) -> Status {
    Status::new(
        reset_code(value),
        format!("stream reset by {} (error code {value:#x})", peer.as_str()),
    )
}

/// The status for a call whose incoming half failed while `peer` was sending it.
pub(crate) fn read_status(err: ReadError, peer: Peer) -> Status {
    match err {
        ReadError::Reset(code) => reset_status(code.into_inner(), peer),
        ReadError::ConnectionLost(e) => connection_status(&e),
        ReadError::ZeroRttRejected => Status::unavailable("0-RTT data rejected by server"),
        ReadError::ClosedStream | ReadError::IllegalOrderedRead => {
            Status::internal("stream closed unexpectedly")
        }
    }
}

/// The status a call ends with when its connection goes away.
pub(crate) fn connection_status(err: &ConnectionError) -> Status {
    match err {
        ConnectionError::TimedOut => Status::unavailable("connection timed out"),
        ConnectionError::LocallyClosed => Status::unavailable("connection closed locally"),
        ConnectionError::ApplicationClosed(close)
            if close.error_code.into_inner() == u64::from(ErrorCode::NoError.to_u32()) =>
        {
            Status::unavailable("connection closed by peer (shutting down)")
        }
        other => Status::unavailable(format!("connection lost: {other}")),
    }
}

/// Gives an oversized message the status gRPC specifies. tonic's codec reports a message over
/// its decoding limit as OUT_OF_RANGE; gRPC (and quicrpc's own limit) say RESOURCE_EXHAUSTED,
/// and a status must mean the same whichever limit caught the message.
pub(crate) fn normalize_status(fields: &mut HeaderMap) {
    const TONIC_TOO_LARGE: &[u8] = b"Error, decoded message length too large";
    let out_of_range = fields
        .get(&GRPC_STATUS)
        .is_some_and(|s| s.as_bytes() == b"11");
    let too_large = || {
        fields.get(&GRPC_MESSAGE).is_some_and(|m| {
            // tonic percent-encodes the message: compare the part before the first escape.
            let m = m.as_bytes();
            m.starts_with(b"Error,%20decoded%20message%20length%20too%20large")
                || m.starts_with(TONIC_TOO_LARGE)
        })
    };
    if out_of_range && too_large() {
        fields.insert(GRPC_STATUS.clone(), http::HeaderValue::from_static("8"));
    }
}

/// tonic's server ends a call whose `grpc-timeout` expires with CANCELLED ("Timeout
/// expired"), from a layer outside anything quicrpc can wrap; gRPC, and quicrpc's QUIC side,
/// say DEADLINE_EXCEEDED. The client rewrites a CANCELLED status that reaches it at or after
/// the call's deadline, so that a status means the same on both transports.
pub(crate) fn deadline_status(fields: &mut HeaderMap, deadline: Option<tokio::time::Instant>) {
    let cancelled = fields
        .get(&GRPC_STATUS)
        .is_some_and(|s| s.as_bytes() == b"1");
    if cancelled && deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
        fields.insert(GRPC_STATUS.clone(), http::HeaderValue::from_static("4"));
        fields.insert(
            GRPC_MESSAGE.clone(),
            http::HeaderValue::from_static("deadline%20exceeded"),
        );
    }
}

/// Checks what tonic would otherwise trust in a peer's status fields: tonic panics on a
/// `grpc-status-details-bin` that is not base64.
pub(crate) fn check_status_fields(fields: &HeaderMap) -> Result<(), Status> {
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    match fields.get(&GRPC_STATUS_DETAILS) {
        Some(details) if LENIENT.decode(details.as_bytes()).is_err() => Err(Status::internal(
            "protocol error: grpc-status-details-bin is not base64",
        )),
        _ => Ok(()),
    }
}

/// The status for a field block that does not decode: RESOURCE_EXHAUSTED for one over the
/// size limit (as a block over it on the wire gets), INTERNAL otherwise.
pub(crate) fn malformed(err: FieldError) -> Status {
    match err {
        FieldError::ListTooLarge { .. } => Status::resource_exhausted(err.to_string()),
        err => Status::internal(format!("protocol error: malformed field block: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_fields(code: &'static str) -> HeaderMap {
        let mut fields = HeaderMap::new();
        fields.insert("grpc-status", http::HeaderValue::from_static(code));
        fields.insert(
            "grpc-message",
            http::HeaderValue::from_static("Timeout%20expired"),
        );
        fields
    }

    #[test]
    fn cancelled_at_the_deadline_reads_as_deadline_exceeded() {
        let past = Some(tokio::time::Instant::now());
        let future = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(60));

        let mut fields = status_fields("1");
        deadline_status(&mut fields, past);
        assert_eq!(fields["grpc-status"], "4");
        assert_eq!(fields["grpc-message"], "deadline%20exceeded");

        // Before the deadline, or without one, CANCELLED means cancelled.
        for deadline in [future, None] {
            let mut fields = status_fields("1");
            deadline_status(&mut fields, deadline);
            assert_eq!(fields["grpc-status"], "1");
        }
        // Other codes are left alone.
        let mut fields = status_fields("13");
        deadline_status(&mut fields, past);
        assert_eq!(fields["grpc-status"], "13");
    }

    #[test]
    fn resets_map_to_the_codes_protocol_md_gives() {
        assert_eq!(reset_code(0x0), Code::Internal);
        assert_eq!(reset_code(0x1), Code::Cancelled);
        assert_eq!(reset_code(0x2), Code::Unavailable);
        assert_eq!(reset_code(0x3), Code::Internal);
        assert_eq!(reset_code(0x4), Code::DeadlineExceeded);
        assert_eq!(reset_code(0x5), Code::Internal);
        assert_eq!(reset_code(0x6), Code::ResourceExhausted);
        assert_eq!(reset_code(0x7), Code::Unavailable);
        assert_eq!(reset_code(0x100), Code::Internal);
    }
}
