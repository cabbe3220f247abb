//! gRPC message boundaries inside the DATA stream.

/// The size of gRPC's message prefix: a compression flag and a 32-bit big-endian length.
pub const PREFIX_LEN: usize = 5;

/// Follows gRPC's length-prefixed messages through a byte stream cut at arbitrary points, and
/// refuses a message as soon as its prefix declares more than the limit, before any of the
/// message is buffered.
#[derive(Debug, Clone)]
pub struct MessageLimiter {
    limit: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    body_remaining: u64,
    /// The declared length of the message whose body is under way.
    body_len: u64,
}

/// A message whose prefix declares more bytes than the receiver accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("message of {len} bytes exceeds the limit of {limit} bytes")]
pub struct MessageTooLarge {
    /// The length the prefix declared.
    pub len: u64,
    /// The receiver's limit.
    pub limit: usize,
}

impl MessageLimiter {
    /// A limiter that refuses messages longer than `limit` bytes (not counting the prefix).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            body_remaining: 0,
            body_len: 0,
        }
    }

    /// The bytes of the message under way at this point of the stream, as a receiver that
    /// buffers each message whole holds them: its prefix and declared length once its prefix
    /// is complete, the part of its prefix seen so far before that, 0 at a boundary.
    pub fn pending_message_bytes(&self) -> usize {
        if self.body_remaining > 0 {
            usize::try_from(self.body_len).map_or(usize::MAX, |len| len.saturating_add(PREFIX_LEN))
        } else {
            self.prefix_len
        }
    }

    /// Whether the bytes seen so far end exactly at a message boundary.
    pub fn at_message_boundary(&self) -> bool {
        self.prefix_len == 0 && self.body_remaining == 0
    }

    /// Accounts for the next bytes of the stream.
    pub fn observe(&mut self, mut data: &[u8]) -> Result<(), MessageTooLarge> {
        while !data.is_empty() {
            if self.body_remaining > 0 {
                let n =
                    usize::try_from(self.body_remaining).map_or(data.len(), |r| r.min(data.len()));
                self.body_remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (PREFIX_LEN - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == PREFIX_LEN {
                self.prefix_len = 0;
                let len = u64::from(u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]));
                if len > self.limit as u64 {
                    return Err(MessageTooLarge {
                        len,
                        limit: self.limit,
                    });
                }
                self.body_remaining = len;
                self.body_len = len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&len.to_be_bytes());
        m.resize(PREFIX_LEN + len as usize, 0xab);
        m
    }

    #[test]
    fn tracks_boundaries_across_any_split() {
        let mut stream = message(3);
        stream.extend(message(0));
        stream.extend(message(10));
        for step in 1..stream.len() {
            let mut limiter = MessageLimiter::new(10);
            for piece in stream.chunks(step) {
                limiter.observe(piece).unwrap();
            }
            assert!(limiter.at_message_boundary(), "step {step}");
        }
        let mut limiter = MessageLimiter::new(10);
        limiter.observe(&stream[..4]).unwrap();
        assert!(!limiter.at_message_boundary());
    }

    #[test]
    fn pending_message_bytes_follow_the_message_under_way() {
        let mut limiter = MessageLimiter::new(100);
        assert_eq!(limiter.pending_message_bytes(), 0);
        limiter.observe(&[0, 0, 0]).unwrap();
        assert_eq!(limiter.pending_message_bytes(), 3);
        limiter.observe(&[0, 50, 1, 2]).unwrap();
        assert_eq!(
            limiter.pending_message_bytes(),
            55,
            "declared, not received"
        );
        limiter.observe(&[0; 48]).unwrap();
        assert_eq!(limiter.pending_message_bytes(), 0, "complete");
        // A whole message and the start of the next in one piece.
        let mut piece = message(4);
        piece.extend_from_slice(&[0, 0, 0, 0, 9, 7]);
        limiter.observe(&piece).unwrap();
        assert_eq!(limiter.pending_message_bytes(), 14);
    }

    #[test]
    fn refuses_from_the_prefix_alone() {
        let mut limiter = MessageLimiter::new(10);
        limiter.observe(&[0, 0, 0]).unwrap();
        assert_eq!(
            limiter.observe(&[0, 11]),
            Err(MessageTooLarge { len: 11, limit: 10 })
        );
        let mut limiter = MessageLimiter::new(usize::MAX);
        limiter.observe(&[1, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert!(!limiter.at_message_boundary());
    }
}
