//! Call priorities: the vocabulary of the `:priority` field and of `(quicrpc.priority)`.

use std::fmt;
use std::str::FromStr;

/// How urgently a call's bytes are sent, relative to other calls on the same connection.
///
/// Set per method in the `.proto` with `option (quicrpc.priority) = ...;`, and per call by
/// inserting a `Priority` into the request's extensions (`quicrpc::Priority` is this type).
/// On the wire it is the `:priority` field of a request head, by [name](Self::as_str):
///
/// ```
/// use quicrpc_wire::Priority;
///
/// assert_eq!("critical".parse::<Priority>(), Ok(Priority::Critical));
/// assert_eq!(Priority::Bulk.as_str(), "bulk");
/// ```
///
/// Priority orders each sender's queue of stream data: when several calls have bytes
/// waiting, the higher-priority call's bytes are sent first. It cannot reorder packets that
/// are already in flight, and it does not bypass congestion or flow control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Control-plane calls that must not wait behind anything.
    Critical,
    /// Latency-sensitive calls.
    High,
    /// The default.
    #[default]
    Normal,
    /// Background work.
    Low,
    /// Bulk transfers, sent when nothing else is waiting.
    Bulk,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 5] = [
        Self::Critical,
        Self::High,
        Self::Normal,
        Self::Low,
        Self::Bulk,
    ];

    /// The name used in `.proto` files and on the wire, lowercase.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
            Self::Bulk => "bulk",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Priority`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?} (expected critical, high, normal, low or bulk)")]
pub struct ParsePriorityError(String);

impl FromStr for Priority {
    type Err = ParsePriorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParsePriorityError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_names_round_trip() {
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        }
        assert_eq!("BULK".parse::<Priority>(), Ok(Priority::Bulk));
        assert!("urgent".parse::<Priority>().is_err());
        assert!(Priority::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
