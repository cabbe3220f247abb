//! The send priority a method declares in its `.proto`: `option (quicrpc.priority) = ...;`.

use prost_reflect::{Kind, MethodDescriptor, Value};
use quicrpc::Priority;

/// The full name of quicrpc's method option (`proto/quicrpc/options.proto`).
const PRIORITY_OPTION: &str = "quicrpc.priority";

/// The priority `method` declares with `option (quicrpc.priority)`, if it declares one
/// (`PRIORITY_UNSPECIFIED` declares none).
///
/// Generated code registers each method's priority with quicrpc, which applies it to every
/// call; a call made from descriptors at run time has no such entry, so a client that
/// builds calls this way sets this as the call's priority itself (unless the caller chose
/// one).
pub fn declared_priority(method: &MethodDescriptor) -> Option<Priority> {
    let options = method.options();
    let (extension, value) = options
        .extensions()
        .find(|(extension, _)| extension.full_name() == PRIORITY_OPTION)?;
    let (Kind::Enum(values), Value::EnumNumber(number)) = (extension.kind(), value) else {
        return None;
    };
    // The enum's value names are the priorities' names (CRITICAL, ..., BULK), in any case;
    // PRIORITY_UNSPECIFIED names none.
    values.get_value(*number)?.name().parse().ok()
}
