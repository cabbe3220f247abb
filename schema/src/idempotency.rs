//! What 0-RTT needs to know of a method called at run time: its call kind and its standard
//! `idempotency_level` option.

use prost_reflect::{MethodDescriptor, Value};
use quicrpc::{CallKind, Idempotency};

/// The `idempotency_level` that `method` declares in its `.proto`
/// (`option idempotency_level = NO_SIDE_EFFECTS;` or `IDEMPOTENT`); `Unknown` when it
/// declares none.
///
/// Generated code registers each method's idempotency with quicrpc, which sends calls to
/// replay-safe methods as 0-RTT early data on a resumed connection; a call made from
/// descriptors at run time has no such entry, so a client that builds calls this way puts
/// this (with [`call_kind`]) into the request's extensions. It comes from the descriptor
/// only: a caller's say-so must never make a method replayable.
pub fn declared_idempotency(method: &MethodDescriptor) -> Idempotency {
    match method
        .options()
        .get_field_by_name("idempotency_level")
        .as_deref()
    {
        Some(Value::EnumNumber(1)) => Idempotency::NoSideEffects,
        Some(Value::EnumNumber(2)) => Idempotency::Idempotent,
        _ => Idempotency::Unknown,
    }
}

/// The shape of `method`'s messages.
pub fn call_kind(method: &MethodDescriptor) -> CallKind {
    match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => CallKind::Unary,
        (false, true) => CallKind::ServerStreaming,
        (true, false) => CallKind::ClientStreaming,
        (true, true) => CallKind::Streaming,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_and_kind_come_from_the_descriptor() {
        let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
        let files = protox::compile(["testing/echo.proto", "agents/agents.proto"], [protos])
            .expect("compile");
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(files).expect("pool");
        let method = |path: &str| {
            let (service, name) = crate::split_method(path).expect("a method path");
            pool.get_service_by_name(service)
                .and_then(|s| s.methods().find(|m| m.name() == name))
                .unwrap_or_else(|| panic!("no method {path}"))
        };
        use CallKind::{ClientStreaming, ServerStreaming, Streaming, Unary};
        use Idempotency::{Idempotent, NoSideEffects, Unknown};
        let cases = [
            ("quicrpc.testing.Echo/Unary", Unknown, Unary),
            ("quicrpc.testing.Echo/Lookup", NoSideEffects, Unary),
            ("quicrpc.testing.Echo/Fetch", NoSideEffects, ServerStreaming),
            (
                "quicrpc.testing.Echo/ClientStream",
                Unknown,
                ClientStreaming,
            ),
            ("quicrpc.testing.Echo/Bidi", Unknown, Streaming),
            ("agents.v1.AgentControl/Terminate", Idempotent, Unary),
        ];
        for (name, idempotency, kind) in cases {
            assert_eq!(declared_idempotency(&method(name)), idempotency, "{name}");
            assert_eq!(call_kind(&method(name)), kind, "{name}");
        }
    }
}
