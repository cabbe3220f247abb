//! [`StreamCredit`]: how many calls one QUIC connection may have open.

/// Streams a new QUIC connection may open at first. quinn sets up the state of every stream
/// the peer may open when the connection starts (about 86 bytes each), so the server starts
/// each connection with this much credit and doubles it, up to the configured limit, as the
/// connection gets busy.
const INITIAL_STREAM_CREDIT: u32 = 128;

/// How many calls one QUIC connection may have open: [`INITIAL_STREAM_CREDIT`] at first,
/// doubled whenever more than half of it is in use, up to the configured maximum. Growing
/// costs the client a round trip when a burst outruns the credit; starting at the maximum
/// costs every connection, idle or not, the memory of all its streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StreamCredit {
    /// The limit the peer has been given.
    limit: u32,
    max: u32,
}

impl StreamCredit {
    pub(super) fn new(max: u32) -> Self {
        Self {
            limit: max.min(INITIAL_STREAM_CREDIT),
            max,
        }
    }

    /// The limit the peer has been given.
    pub(super) fn limit(self) -> u32 {
        self.limit
    }

    /// With `open` calls in progress: the new limit to give the peer, if it should grow.
    pub(super) fn grow(&mut self, open: usize) -> Option<u32> {
        if self.limit >= self.max || open.saturating_mul(2) <= self.limit as usize {
            return None;
        }
        self.limit = self.limit.saturating_mul(2).min(self.max);
        Some(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::StreamCredit;

    #[test]
    fn stream_credit_doubles_past_half_up_to_the_maximum() {
        let mut credit = StreamCredit::new(1024);
        assert_eq!(credit.limit(), 128);
        assert_eq!(credit.grow(64), None);
        assert_eq!(credit.grow(65), Some(256));
        assert_eq!(credit.grow(100), None);
        assert_eq!(credit.grow(129), Some(512));
        assert_eq!(credit.grow(257), Some(1024));
        assert_eq!(credit.grow(1024), None);
    }

    #[test]
    fn a_small_maximum_is_given_at_once() {
        let mut credit = StreamCredit::new(10);
        assert_eq!(credit.limit(), 10);
        assert_eq!(credit.grow(10), None);
        let mut credit = StreamCredit::new(200);
        assert_eq!(credit.limit(), 128);
        assert_eq!(credit.grow(100), Some(200));
    }
}
