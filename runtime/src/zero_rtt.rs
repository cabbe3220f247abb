//! 0-RTT early data: which calls may use it, what a call used, and the per-call opt-out.

use crate::{CallKind, MethodInfo};

/// How a call used QUIC 0-RTT early data.
///
/// The client puts it into the extensions of every response that came over QUIC; the server
/// puts it into each request's extensions, so a handler can tell a call that arrived as early
/// data (`Accepted`) from one that arrived after the handshake (`NotUsed`).
///
/// Early data saves a round trip on a resumed connection, but an attacker can replay it, so
/// only methods declared `NO_SIDE_EFFECTS` or `IDEMPOTENT` (the standard `idempotency_level`
/// option) are ever sent or run from it. See `docs/PROTOCOL.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ZeroRtt {
    /// The call went out after the handshake completed.
    NotUsed,
    /// The call went out as early data and was run from it.
    Accepted,
    /// The call went out as early data, the server did not run it from there (it rejected
    /// the early data, or would not run this method from it), and the client sent it again
    /// after the handshake.
    Retried,
}

/// Keeps one call out of 0-RTT early data even though its method is replay-safe: insert it
/// into the request's extensions.
///
/// ```
/// let mut request = tonic::Request::new(());
/// request.extensions_mut().insert(quicrpc::NoZeroRtt);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoZeroRtt;

/// Whether the server may run a call to this method from early data.
pub(crate) fn replay_safe(info: Option<&MethodInfo>) -> bool {
    info.is_some_and(|m| m.idempotency().is_replay_safe())
}

/// Whether the client sends a call to this method as early data: a replay-safe method whose
/// request is one message, so that it can be buffered and sent again if the server refuses
/// it.
pub(crate) fn client_may_send(info: Option<&MethodInfo>) -> bool {
    replay_safe(info)
        && info.is_some_and(|m| matches!(m.kind(), CallKind::Unary | CallKind::ServerStreaming))
}
