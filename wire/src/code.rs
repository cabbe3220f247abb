//! Application error codes for RESET_STREAM, STOP_SENDING and CONNECTION_CLOSE.

/// Why a stream or connection was abandoned. Carried in QUIC's RESET_STREAM, STOP_SENDING
/// and application CONNECTION_CLOSE frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Nothing went wrong: the call or connection is simply over (e.g. the server has sent its
    /// status and stops reading the request, or a drained connection closes).
    NoError,
    /// The call was cancelled: the client dropped it, or the server's handler went away.
    Cancelled,
    /// The server did not process the call at all (it is draining); the client may retry it.
    RefusedStream,
    /// The peer broke the wire format.
    ProtocolError,
    /// The call's deadline passed.
    DeadlineExceeded,
    /// The peer failed in a way that is not the caller's fault.
    InternalError,
    /// A message exceeded the receiver's size limit.
    MessageTooLarge,
    /// The call arrived in 0-RTT early data, which an attacker can replay, and its method is
    /// not declared safe to replay: the server did not run it. The client sends it again
    /// once the handshake is complete.
    TooEarly,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 8] = [
        Self::NoError,
        Self::Cancelled,
        Self::RefusedStream,
        Self::ProtocolError,
        Self::DeadlineExceeded,
        Self::InternalError,
        Self::MessageTooLarge,
        Self::TooEarly,
    ];

    /// The code's value on the wire.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::NoError => 0x0,
            Self::Cancelled => 0x1,
            Self::RefusedStream => 0x2,
            Self::ProtocolError => 0x3,
            Self::DeadlineExceeded => 0x4,
            Self::InternalError => 0x5,
            Self::MessageTooLarge => 0x6,
            Self::TooEarly => 0x7,
        }
    }

    /// The code for a wire value, if it is one this version knows.
    pub fn from_u64(value: u64) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| u64::from(c.to_u32()) == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u64(code.to_u32().into()), Some(code));
        }
        assert_eq!(ErrorCode::from_u64(0x100), None);
    }
}
