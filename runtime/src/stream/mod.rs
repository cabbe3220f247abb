//! The async layer over one call's QUIC stream, shared by client and server: writing frames
//! from an `http_body::Body` ([`send`]), reading a stream's head ([`recv`]), and reading the
//! rest of it as an `http_body::Body` ([`body`]).

mod body;
mod gate;
mod handles;
mod recv;
mod send;

use quinn::VarInt;

pub(crate) use self::body::{ClientCallParts, RecvBody};
pub(crate) use self::gate::WriteGate;
pub(crate) use self::handles::{HandleToken, Handles};
pub(crate) use self::recv::{HeadError, RecvHalf, read_head};
pub(crate) use self::send::{Ready, SendBodyError, SendHalf, send_body, take_ready};
use crate::wire::code::ErrorCode;

/// `code` as QUIC carries it in RESET_STREAM, STOP_SENDING and CONNECTION_CLOSE.
pub(crate) fn quic_code(code: ErrorCode) -> VarInt {
    VarInt::from_u32(code.to_u32())
}

/// Closes `conn` without error (NO_ERROR), telling the peer `reason`.
pub(crate) fn close_quietly(conn: &quinn::Connection, reason: &'static str) {
    conn.close(quic_code(ErrorCode::NoError), reason.as_bytes());
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
