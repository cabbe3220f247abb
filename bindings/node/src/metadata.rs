//! Metadata between JavaScript and tonic: a list of `{ key, value }` entries, text values
//! for ordinary keys and bytes for `-bin` keys, as gRPC defines them.

use std::fmt;

use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use tonic::metadata::{
    AsciiMetadataKey, BinaryMetadataKey, KeyAndValueRef, MetadataMap, MetadataValue,
};

/// One metadata value: a string for an ordinary key, bytes for a key ending in `-bin`.
#[napi(object)]
pub struct MetadataEntry {
    /// The key, lowercase.
    pub key: String,
    /// The value: text (printable ASCII) or, for `-bin` keys, bytes.
    pub value: Either<String, Buffer>,
}

impl fmt::Debug for MetadataEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entry = f.debug_struct("MetadataEntry");
        entry.field("key", &self.key);
        match &self.value {
            Either::A(text) => entry.field("value", text),
            Either::B(bytes) => entry.field("value", &bytes.as_ref()),
        };
        entry.finish()
    }
}

/// The request metadata from JavaScript's entries; the error says which entry is wrong.
pub(crate) fn to_map(entries: Vec<MetadataEntry>) -> Result<MetadataMap, String> {
    let mut map = MetadataMap::new();
    for entry in entries {
        let key = entry.key.to_ascii_lowercase();
        let bad = |why: &str| format!("metadata {:?}: {why}", entry.key);
        if key.ends_with("-bin") {
            let key = BinaryMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| bad("not a valid metadata key"))?;
            let bytes: &[u8] = match &entry.value {
                Either::B(bytes) => bytes,
                Either::A(_) => return Err(bad("a -bin key takes a Buffer or Uint8Array")),
            };
            map.append_bin(key, MetadataValue::from_bytes(bytes));
        } else {
            let key = AsciiMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| bad("not a valid metadata key"))?;
            let Either::A(text) = &entry.value else {
                return Err(bad("bytes need a key ending in -bin"));
            };
            let value = text
                .parse()
                .map_err(|_| bad("a value must be printable ASCII (or use a -bin key)"))?;
            map.append(key, value);
        }
    }
    Ok(map)
}

/// The entries of response metadata, in order, without gRPC's own fields.
pub(crate) fn from_map(map: &MetadataMap) -> Vec<MetadataEntry> {
    const GRPC_FIELDS: [&str; 4] = [
        "content-type",
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
    ];
    map.iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) if !GRPC_FIELDS.contains(&key.as_str()) => {
                Some(MetadataEntry {
                    key: key.as_str().to_owned(),
                    value: Either::A(String::from_utf8_lossy(value.as_encoded_bytes()).into()),
                })
            }
            KeyAndValueRef::Binary(key, value) if !GRPC_FIELDS.contains(&key.as_str()) => {
                Some(MetadataEntry {
                    key: key.as_str().to_owned(),
                    // A value that is not valid base64 is passed on as it came.
                    value: Either::B(
                        value
                            .to_bytes()
                            .map_or_else(|_| value.as_encoded_bytes().to_vec(), |b| b.to_vec())
                            .into(),
                    ),
                })
            }
            _ => None,
        })
        .collect()
}
