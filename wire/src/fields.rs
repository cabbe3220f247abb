//! Field blocks: the payload of HEADERS and TRAILERS frames.
//!
//! A field block is a sequence of `name length (varint) | name | value length (varint) | value`.
//! Names are lowercase HTTP field names; values are HTTP field values (gRPC's `-bin` metadata
//! travels base64-encoded, as on HTTP/2). Pseudo-fields, whose names start with `:`, come
//! first and exist only in request heads: `:path` (required), `:authority` and `:priority`.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{Priority, frame, varint};

/// The head of a request, as carried by its HEADERS frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// `/package.Service/Method`.
    pub path: String,
    /// The `:authority` the client addressed, if it sent one.
    pub authority: Option<String>,
    /// The send priority the client chose for this call, if it sent one.
    pub priority: Option<Priority>,
    /// Every other field: gRPC's own (`grpc-timeout`, `content-type`, ...) and the metadata.
    pub fields: HeaderMap,
}

/// A field block that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The block ends in the middle of a field.
    #[error("field block is truncated")]
    Truncated,
    /// A name is not a valid lowercase HTTP field name.
    #[error("invalid field name {0:?}")]
    InvalidName(String),
    /// A value is not a valid HTTP field value.
    #[error("invalid value for field {0:?}")]
    InvalidValue(String),
    /// A pseudo-field this version does not know, or one in a block that takes none.
    #[error("unexpected pseudo-field {0:?}")]
    UnexpectedPseudo(String),
    /// A pseudo-field after a regular field, or twice.
    #[error("misplaced or repeated pseudo-field {0:?}")]
    MisplacedPseudo(String),
    /// A request head without a `:path` starting with `/` and made of visible ASCII only.
    #[error("request head has no valid :path")]
    MissingPath,
    /// A `:priority` that names no priority.
    #[error("invalid :priority {0:?}")]
    InvalidPriority(String),
    /// The fields' size as HTTP/2 and HTTP/3 count it (name, value and [`FIELD_OVERHEAD`]
    /// bytes each) passes the limit, or there are more fields than a `HeaderMap` holds.
    #[error(
        "field list of {size} bytes (with {FIELD_OVERHEAD} a field) exceeds the limit of {limit} bytes"
    )]
    ListTooLarge {
        /// The size counted so far, when it passed the limit.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// What HTTP/2 (RFC 9113, section 6.5.2) and HTTP/3 add to each field's name and value when
/// they count a field list's size: the cost of a field beyond its bytes. Without it, a block
/// of many empty fields is small on the wire and large in memory.
pub const FIELD_OVERHEAD: usize = 32;

/// Counts a field list's size against a limit, as HTTP/2 and HTTP/3 do.
struct ListSize {
    size: usize,
    limit: usize,
}

impl ListSize {
    fn new(limit: usize) -> Self {
        Self { size: 0, limit }
    }

    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), FieldError> {
        self.size = self
            .size
            .saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
        if self.size > self.limit {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn too_large(&self) -> FieldError {
        FieldError::ListTooLarge {
            size: self.size,
            limit: self.limit,
        }
    }
}

/// Encodes a whole HEADERS frame for a request.
pub fn encode_request_head(
    path: &str,
    authority: Option<&str>,
    priority: Option<Priority>,
    fields: &HeaderMap,
) -> Bytes {
    let pseudo = [
        Some((":path", path)),
        authority.map(|a| (":authority", a)),
        priority.map(|p| (":priority", p.as_str())),
    ];
    encode_block(frame::HEADERS, || {
        let pseudo = pseudo
            .iter()
            .flatten()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        pseudo.chain(regular_fields(fields))
    })
}

/// Encodes a whole frame of type `ty` (HEADERS or TRAILERS) holding `fields`.
pub fn encode_fields(ty: u64, fields: &HeaderMap) -> Bytes {
    encode_block(ty, || regular_fields(fields))
}

fn regular_fields(fields: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    fields
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
}

/// Encodes a frame of type `ty` whose payload is the fields `fields()` yields. The fields are
/// walked twice: once to size the buffer, once to fill it.
fn encode_block<'a, I>(ty: u64, fields: impl Fn() -> I) -> Bytes
where
    I: Iterator<Item = (&'a [u8], &'a [u8])>,
{
    let field_len = |(n, v): (&[u8], &[u8])| {
        varint::len(n.len() as u64) + n.len() + varint::len(v.len() as u64) + v.len()
    };
    let payload: usize = fields().map(field_len).sum();
    // Exactly the frame's size, so that freezing it takes no second allocation.
    let mut buf = BytesMut::with_capacity(frame::head_len(ty, payload as u64) + payload);
    frame::put_head(&mut buf, ty, payload as u64);
    for (name, value) in fields() {
        varint::put(&mut buf, name.len() as u64);
        buf.put_slice(name);
        varint::put(&mut buf, value.len() as u64);
        buf.put_slice(value);
    }
    debug_assert_eq!(buf.len(), buf.capacity());
    buf.freeze()
}

/// Decodes a request head, with no limit on its fields' size beyond the block's own.
pub fn decode_request_head(block: &[u8]) -> Result<RequestHead, FieldError> {
    decode_request_head_within(block, usize::MAX)
}

/// Decodes a request head whose field list may count at most `max_list_size` bytes, each
/// field's name and value plus [`FIELD_OVERHEAD`] (pseudo-fields included).
pub fn decode_request_head_within(
    block: &[u8],
    max_list_size: usize,
) -> Result<RequestHead, FieldError> {
    let mut size = ListSize::new(max_list_size);
    let mut path = None;
    let mut authority = None;
    let mut priority = None;
    let mut fields = HeaderMap::new();
    for field in Fields(block) {
        let (name, value) = field?;
        size.add(name, value)?;
        if let Some(pseudo) = name.strip_prefix(b":") {
            let text = || String::from_utf8_lossy(value).into_owned();
            let slot_taken = match pseudo {
                b"path" => path.replace(text()).is_some(),
                b"authority" => authority.replace(text()).is_some(),
                b"priority" => {
                    // Exactly one of the lowercase names: the wire has one spelling.
                    let p = Priority::ALL
                        .into_iter()
                        .find(|p| p.as_str().as_bytes() == value)
                        .ok_or_else(|| FieldError::InvalidPriority(text()))?;
                    priority.replace(p).is_some()
                }
                _ => return Err(FieldError::UnexpectedPseudo(lossy(name))),
            };
            if slot_taken || !fields.is_empty() {
                return Err(FieldError::MisplacedPseudo(lossy(name)));
            }
            continue;
        }
        let (name, value) = regular_field(name, value)?;
        fields
            .try_append(name, value)
            .map_err(|_| size.too_large())?;
    }
    // Visible ASCII only, as a URI path is: the path goes into logs and errors, where a
    // control character could forge lines or drive a terminal.
    let path = path
        .filter(|p| p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(FieldError::MissingPath)?;
    Ok(RequestHead {
        path,
        authority,
        priority,
        fields,
    })
}

/// Decodes a response head or trailers (regular fields only), with no limit on their size
/// beyond the block's own.
pub fn decode_fields(block: &[u8]) -> Result<HeaderMap, FieldError> {
    decode_fields_within(block, usize::MAX)
}

/// Decodes a response head or trailers whose field list may count at most `max_list_size`
/// bytes, each field's name and value plus [`FIELD_OVERHEAD`].
pub fn decode_fields_within(block: &[u8], max_list_size: usize) -> Result<HeaderMap, FieldError> {
    let mut size = ListSize::new(max_list_size);
    let mut fields = HeaderMap::new();
    for field in Fields(block) {
        let (name, value) = field?;
        size.add(name, value)?;
        if name.starts_with(b":") {
            return Err(FieldError::UnexpectedPseudo(lossy(name)));
        }
        let (name, value) = regular_field(name, value)?;
        fields
            .try_append(name, value)
            .map_err(|_| size.too_large())?;
    }
    Ok(fields)
}

fn regular_field(name: &[u8], value: &[u8]) -> Result<(HeaderName, HeaderValue), FieldError> {
    // HTTP/2 and HTTP/3 forbid uppercase names; `HeaderName::from_bytes` would lowercase them.
    if name.iter().any(u8::is_ascii_uppercase) {
        return Err(FieldError::InvalidName(lossy(name)));
    }
    let name = match well_known_name(name) {
        Some(name) => name,
        None => HeaderName::from_bytes(name).map_err(|_| FieldError::InvalidName(lossy(name)))?,
    };
    let value = match well_known_value(value) {
        Some(value) => value,
        None => HeaderValue::from_bytes(value)
            .map_err(|_| FieldError::InvalidValue(name.to_string()))?,
    };
    Ok((name, value))
}

/// gRPC's own field names, which `http` does not know: decoded without an allocation, where
/// `HeaderName::from_bytes` copies every name it does not know into one of its own.
static WELL_KNOWN_NAMES: [HeaderName; 6] = [
    HeaderName::from_static("grpc-status"),
    HeaderName::from_static("grpc-message"),
    HeaderName::from_static("grpc-timeout"),
    HeaderName::from_static("grpc-encoding"),
    HeaderName::from_static("grpc-accept-encoding"),
    HeaderName::from_static("grpc-status-details-bin"),
];

/// The values nearly every call carries (its content type, `te: trailers`, an OK status):
/// decoded without an allocation, where `HeaderValue::from_bytes` copies every value.
static WELL_KNOWN_VALUES: [HeaderValue; 5] = [
    HeaderValue::from_static("application/grpc"),
    HeaderValue::from_static("application/grpc+proto"),
    HeaderValue::from_static("trailers"),
    HeaderValue::from_static("0"),
    HeaderValue::from_static("identity"),
];

fn well_known_name(name: &[u8]) -> Option<HeaderName> {
    WELL_KNOWN_NAMES
        .iter()
        .find(|known| known.as_str().as_bytes() == name)
        .cloned()
}

fn well_known_value(value: &[u8]) -> Option<HeaderValue> {
    WELL_KNOWN_VALUES
        .iter()
        .find(|known| known.as_bytes() == value)
        .cloned()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Iterates over the `(name, value)` pairs of a field block.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), FieldError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.take().zip(self.take()).ok_or(FieldError::Truncated);
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn take(&mut self) -> Option<&'a [u8]> {
        let (len, used) = varint::get(self.0)?;
        let rest = &self.0[used..];
        let len = usize::try_from(len).ok().filter(|&l| l <= rest.len())?;
        let (bytes, rest) = rest.split_at(len);
        self.0 = rest;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    use super::*;

    /// A block of `n` fields named `a` with empty values: three bytes each on the wire.
    fn empty_fields(n: usize) -> Vec<u8> {
        std::iter::repeat_n([1u8, b'a', 0], n).flatten().collect()
    }

    /// The names and values decoded without an allocation are the ones `http` would have
    /// made of the same bytes; an unknown value is still copied as it was.
    #[test]
    fn well_known_fields_decode_as_any_other() {
        let mut fields = HeaderMap::new();
        for name in [
            "grpc-status",
            "grpc-message",
            "grpc-timeout",
            "grpc-encoding",
            "grpc-accept-encoding",
            "grpc-status-details-bin",
            "content-type",
            "te",
        ] {
            for value in [
                "application/grpc",
                "application/grpc+proto",
                "trailers",
                "0",
                "identity",
                "gzip",
            ] {
                fields.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                );
            }
        }
        let frame = encode_fields(frame::TRAILERS, &fields);
        let (ty, used) = varint::get(&frame).unwrap();
        let (len, used_too) = varint::get(&frame[used..]).unwrap();
        assert_eq!(
            (ty, frame.len()),
            (frame::TRAILERS, used + used_too + len as usize)
        );
        let decoded = decode_fields(&frame[used + used_too..]).unwrap();
        assert_eq!(decoded, fields);
        assert_eq!(decoded.len(), 8 * 6);
    }

    #[test]
    fn many_empty_fields_count_their_overhead() {
        // 16 KiB of block, 5,461 fields: 175 kB as HTTP/2 and HTTP/3 count it.
        let block = empty_fields(16 * 1024 / 3);
        assert!(decode_fields(&block).is_ok(), "no limit, no error");
        let err = decode_fields_within(&block, 16 * 1024).unwrap_err();
        assert!(
            matches!(err, FieldError::ListTooLarge { limit: 16384, .. }),
            "{err:?}"
        );
        let mut head = vec![0x05];
        head.extend_from_slice(b":path");
        head.push(2);
        head.extend_from_slice(b"/x");
        head.extend_from_slice(&block);
        let err = decode_request_head_within(&head, 16 * 1024).unwrap_err();
        assert!(matches!(err, FieldError::ListTooLarge { .. }), "{err:?}");
        // Within the limit, all of them.
        let few = empty_fields(10);
        assert_eq!(
            decode_fields_within(&few, 10 * (1 + FIELD_OVERHEAD))
                .unwrap()
                .len(),
            10
        );
        assert!(decode_fields_within(&few, 10 * (1 + FIELD_OVERHEAD) - 1).is_err());
    }

    #[test]
    fn more_fields_than_a_header_map_holds_are_an_error_not_a_panic() {
        // HeaderMap holds at most 32,768 distinct names; with no size limit, that is the
        // bound (`append` would panic past it).
        let block: Vec<u8> = (0..40_000)
            .flat_map(|i| {
                let name = format!("h{i}");
                let mut field = vec![name.len() as u8];
                field.extend_from_slice(name.as_bytes());
                field.push(0);
                field
            })
            .collect();
        let err = decode_fields(&block).unwrap_err();
        assert!(matches!(err, FieldError::ListTooLarge { .. }), "{err:?}");
    }

    /// Strips the frame head from an encoded frame.
    fn payload(frame: Bytes) -> Bytes {
        let mut frame = frame;
        let (_, n) = varint::get(&frame).unwrap();
        frame.advance(n);
        let (len, n) = varint::get(&frame).unwrap();
        frame.advance(n);
        assert_eq!(frame.len() as u64, len);
        frame
    }

    #[test]
    fn request_head_round_trips() {
        let mut fields = HeaderMap::new();
        fields.insert("content-type", HeaderValue::from_static("application/grpc"));
        fields.insert("grpc-timeout", HeaderValue::from_static("100m"));
        fields.append("x-tag", HeaderValue::from_static("a"));
        fields.append("x-tag", HeaderValue::from_static("b"));
        fields.insert("trace-bin", HeaderValue::from_static("AAEC"));
        let frame = encode_request_head(
            "/pkg.Svc/Method",
            Some("localhost:1"),
            Some(Priority::Critical),
            &fields,
        );
        let head = decode_request_head(&payload(frame)).unwrap();
        assert_eq!(
            head,
            RequestHead {
                path: "/pkg.Svc/Method".into(),
                authority: Some("localhost:1".into()),
                priority: Some(Priority::Critical),
                fields,
            }
        );
    }

    #[test]
    fn trailers_round_trip() {
        let mut fields = HeaderMap::new();
        fields.insert("grpc-status", HeaderValue::from_static("3"));
        fields.insert("grpc-message", HeaderValue::from_static("bad%20input"));
        let block = payload(encode_fields(frame::TRAILERS, &fields));
        assert_eq!(decode_fields(&block).unwrap(), fields);
    }

    fn block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (n, v) in pairs {
            varint::put(&mut buf, n.len() as u64);
            buf.extend_from_slice(n);
            varint::put(&mut buf, v.len() as u64);
            buf.extend_from_slice(v);
        }
        buf
    }

    #[test]
    fn malformed_request_heads_are_errors() {
        type Field<'a> = (&'a [u8], &'a [u8]);
        let cases: &[(&[Field<'_>], FieldError)] = &[
            (&[], FieldError::MissingPath),
            (&[(b":path", b"nope")], FieldError::MissingPath),
            (&[(b":path", b"/a\x1b[2J/b")], FieldError::MissingPath),
            (&[(b":path", b"/a\n/b")], FieldError::MissingPath),
            (&[(b":path", b"/a b")], FieldError::MissingPath),
            (&[(b":path", b"/a\xff/b")], FieldError::MissingPath),
            (
                &[(b":path", b"/a"), (b":path", b"/b")],
                FieldError::MisplacedPseudo(":path".into()),
            ),
            (
                &[(b"x", b"1"), (b":path", b"/a")],
                FieldError::MisplacedPseudo(":path".into()),
            ),
            (
                &[(b":method", b"GET")],
                FieldError::UnexpectedPseudo(":method".into()),
            ),
            (
                &[(b":path", b"/a"), (b":priority", b"urgent")],
                FieldError::InvalidPriority("urgent".into()),
            ),
            (
                &[(b":path", b"/a"), (b"X-Upper", b"1")],
                FieldError::InvalidName("X-Upper".into()),
            ),
            (
                &[(b":path", b"/a"), (b"bad name", b"1")],
                FieldError::InvalidName("bad name".into()),
            ),
            (
                &[(b":path", b"/a"), (b"x", b"line\nbreak")],
                FieldError::InvalidValue("x".into()),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                decode_request_head(&block(pairs)).unwrap_err(),
                *want,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn truncated_blocks_are_errors() {
        let first = block(&[(b":path", b"/a/b")]);
        let full = block(&[(b":path", b"/a/b"), (b"k", b"value")]);
        for cut in (1..full.len()).filter(|&cut| cut != first.len()) {
            assert!(decode_request_head(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            decode_fields(&[0x05, b'a']).unwrap_err(),
            FieldError::Truncated
        );
    }

    #[test]
    fn response_blocks_take_no_pseudo_fields() {
        let b = block(&[(b":status", b"200")]);
        assert_eq!(
            decode_fields(&b).unwrap_err(),
            FieldError::UnexpectedPseudo(":status".into())
        );
    }
}
