//! 0-RTT early data: which calls may use it, what a call used, and the per-call opt-out.

use crate::{CallKind, Idempotency, MethodInfo};

/// How a call used QUIC 0-RTT early data.
///
/// The client puts it into the extensions of every response that came over QUIC; the server
/// puts it into each request's extensions, so a handler can tell a call that arrived as early
/// data (`Accepted`) from one that arrived after the handshake (`NotUsed`).
///
/// Early data saves a round trip on a resumed connection, but an attacker can replay it, so
/// only methods declared `NO_SIDE_EFFECTS` or `IDEMPOTENT` (the standard `idempotency_level`
/// option) are ever sent or run from it. See `docs/PROTOCOL.md`.
///
/// The client knows a method's idempotency from the table that generated code registers. A
/// call built at run time from descriptors (a dynamic client such as the Node.js binding)
/// has no table entry: it declares its method with a [`CallKind`] and an [`Idempotency`] in
/// the request's extensions, read from the method's descriptor. A table entry, where there
/// is one, wins over them; and the server decides from its own table whether it runs a call
/// from early data, whatever the client declared.
///
/// ```
/// use quicrpc::{CallKind, Idempotency};
///
/// let mut request = tonic::Request::new(());
/// request.extensions_mut().insert(CallKind::Unary);
/// request.extensions_mut().insert(Idempotency::NoSideEffects);
/// ```
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

/// What the client knows of a call's method for 0-RTT: its kind and idempotency, from the
/// method's table entry or, for a method that no generated table describes (a call built at
/// run time from descriptors), from the request's extensions.
///
/// A table entry always wins: a request cannot make a method that its `.proto` leaves
/// `Unknown` replay-safe. A method with no entry is replay-safe only if the request carries
/// both a [`CallKind`] and a replay-safe [`Idempotency`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Declared {
    /// `None`: nobody said, so the request may be any number of messages.
    pub(crate) kind: Option<CallKind>,
    pub(crate) idempotency: Idempotency,
}

impl Declared {
    /// From the method's table entry, else from the request's extensions.
    pub(crate) fn new(info: Option<&MethodInfo>, extensions: &http::Extensions) -> Self {
        match info {
            Some(info) => Self {
                kind: Some(info.kind()),
                idempotency: info.idempotency(),
            },
            None => Self {
                kind: extensions.get().copied(),
                idempotency: extensions.get().copied().unwrap_or_default(),
            },
        }
    }

    /// Whether the request is one message (unary and server-streaming calls), which the
    /// client may buffer and send again.
    pub(crate) fn one_message(self) -> bool {
        matches!(self.kind, Some(CallKind::Unary | CallKind::ServerStreaming))
    }

    /// Whether the client sends the call as early data: a replay-safe method whose request
    /// is one message, so that it can be buffered and sent again if the server refuses it.
    pub(crate) fn client_may_send(self) -> bool {
        self.idempotency.is_replay_safe() && self.one_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Priority;

    const LOOKUP: MethodInfo = MethodInfo::new(
        "/test.ZeroRtt/Lookup",
        CallKind::Unary,
        Priority::Normal,
        Idempotency::NoSideEffects,
    );
    const CREATE: MethodInfo = MethodInfo::new(
        "/test.ZeroRtt/Create",
        CallKind::Unary,
        Priority::Normal,
        Idempotency::Unknown,
    );

    fn extensions(kind: Option<CallKind>, idempotency: Option<Idempotency>) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        if let Some(kind) = kind {
            extensions.insert(kind);
        }
        if let Some(idempotency) = idempotency {
            extensions.insert(idempotency);
        }
        extensions
    }

    #[test]
    fn which_calls_the_client_sends_as_early_data() {
        use CallKind::{ClientStreaming, ServerStreaming, Streaming, Unary};
        use Idempotency::{Idempotent, NoSideEffects, Unknown};
        // (table entry, extensions' kind, extensions' idempotency, sent early)
        let cases = [
            (Some(&LOOKUP), None, None, true),
            (Some(&CREATE), None, None, false),
            // The table wins over the extensions, either way.
            (Some(&CREATE), Some(Unary), Some(Idempotent), false),
            (Some(&LOOKUP), Some(Streaming), Some(Unknown), true),
            // No table entry: the extensions decide, and need both.
            (None, None, None, false),
            (None, Some(Unary), Some(NoSideEffects), true),
            (None, Some(ServerStreaming), Some(Idempotent), true),
            (None, Some(Unary), Some(Unknown), false),
            (None, Some(Unary), None, false),
            (None, None, Some(Idempotent), false),
            (None, Some(ClientStreaming), Some(Idempotent), false),
            (None, Some(Streaming), Some(NoSideEffects), false),
        ];
        for (info, kind, idempotency, early) in cases {
            let declared = Declared::new(info, &extensions(kind, idempotency));
            assert_eq!(
                declared.client_may_send(),
                early,
                "{info:?}, {kind:?}, {idempotency:?}"
            );
        }
    }
}
