//! Which priority a call runs at, and what quinn makes of it.

use crate::{MethodInfo, Priority};

/// A call's priority: the one chosen for this call (a [`Priority`] in the request's
/// extensions on the client, the `:priority` field on the server), else the method's
/// `(quicrpc.priority)`, else [`Priority::Normal`].
pub(crate) fn resolve(chosen: Option<Priority>, method: Option<&MethodInfo>) -> Priority {
    chosen
        .or_else(|| method.map(MethodInfo::priority))
        .unwrap_or_default()
}

/// The value given to quinn's `SendStream::set_priority`: higher is sent first, and quinn's
/// default, 0, is [`Priority::Normal`].
pub(crate) const fn quinn_priority(priority: Priority) -> i32 {
    match priority {
        Priority::Critical => 2,
        Priority::High => 1,
        Priority::Normal => 0,
        Priority::Low => -1,
        Priority::Bulk => -2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallKind, Idempotency};

    #[test]
    fn quinn_order_matches_urgency() {
        let quinn: Vec<i32> = Priority::ALL.into_iter().map(quinn_priority).collect();
        assert!(quinn.windows(2).all(|w| w[0] > w[1]), "{quinn:?}");
        assert_eq!(quinn_priority(Priority::default()), 0);
    }

    #[test]
    fn the_call_s_choice_beats_the_method_s() {
        let bulk = MethodInfo::new(
            "/p.S/M",
            CallKind::Unary,
            Priority::Bulk,
            Idempotency::Unknown,
        );
        assert_eq!(resolve(Some(Priority::High), Some(&bulk)), Priority::High);
        assert_eq!(resolve(None, Some(&bulk)), Priority::Bulk);
        assert_eq!(resolve(None, None), Priority::Normal);
    }
}
