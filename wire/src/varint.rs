//! QUIC variable-length integers (RFC 9000, section 16).

use bytes::BufMut;

/// The largest value a varint can carry: 2^62 - 1.
pub const MAX: u64 = (1 << 62) - 1;

/// How many bytes `value` takes as a varint.
///
/// Values above [`MAX`] cannot be encoded; they report 8 and [`put`] clamps them to [`MAX`].
pub fn len(value: u64) -> usize {
    match value {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Appends `value` as a varint. Values above [`MAX`] are clamped to [`MAX`]; every length this
/// crate writes comes from an in-memory buffer, so that never happens in practice.
pub fn put(buf: &mut impl BufMut, value: u64) {
    let value = value.min(MAX);
    match len(value) {
        1 => buf.put_u8(value as u8),
        2 => buf.put_u16(0x4000 | value as u16),
        4 => buf.put_u32(0x8000_0000 | value as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | value),
    }
}

/// Reads a varint from the front of `buf`: `Some((value, bytes used))`, or `None` if `buf`
/// holds only part of it.
pub fn get(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let size = 1usize << (first >> 6);
    let bytes = buf.get(..size)?;
    let mut value = u64::from(first & 0x3f);
    for byte in &bytes[1..] {
        value = (value << 8) | u64::from(*byte);
    }
    Some((value, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_boundary() {
        for value in [0, 63, 64, 16_383, 16_384, 1_073_741_823, 1_073_741_824, MAX] {
            let mut buf = Vec::new();
            put(&mut buf, value);
            assert_eq!(buf.len(), len(value), "{value}");
            assert_eq!(get(&buf), Some((value, buf.len())), "{value}");
            assert_eq!(get(&buf[..buf.len() - 1]), None, "{value}");
        }
    }

    #[test]
    fn rfc_9000_examples() {
        assert_eq!(
            get(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(get(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(get(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(get(&[0x25]), Some((37, 1)));
        assert_eq!(get(&[0x40, 0x25]), Some((37, 2)));
        assert_eq!(get(&[]), None);
    }

    #[test]
    fn clamps_values_beyond_max() {
        let mut buf = Vec::new();
        put(&mut buf, u64::MAX);
        assert_eq!(get(&buf), Some((MAX, 8)));
    }
}
