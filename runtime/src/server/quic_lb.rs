//! [`QuicLbConfig`]: a server ID in every connection ID the server issues, in the plaintext
//! format of QUIC-LB (draft-ietf-quic-load-balancers, "CID format" with no key), so that a
//! UDP load balancer can route a client's packets to this server by their connection ID
//! alone, after the client's address has changed.
//!
//! A connection ID is `first octet | server ID | nonce`:
//! - the first octet holds the config rotation bits (its top three) and, in the other five,
//!   the length of the rest of the connection ID (the draft's length self-description);
//! - the server ID follows as it is;
//! - the nonce is random, new for every connection ID.
//!
//! [`encode`] and [`decode`] work on bytes alone; [`QuicLbCidGenerator`] hands them to quinn,
//! which asks it for every connection ID the server issues: the one in its first Handshake
//! packet (and in a Retry), and those it sends in NEW_CONNECTION_ID frames.

use std::time::Duration;

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid, RandomConnectionIdGenerator};

use crate::Error;

/// The longest connection ID QUIC version 1 allows (RFC 9000, section 17.2).
const MAX_CID_LEN: usize = 20;
/// The shortest nonce the draft allows.
const MIN_NONCE_LEN: usize = 4;
/// The config rotation codepoint the draft reserves for unroutable connection IDs.
const UNROUTABLE_CONFIG_ID: u8 = 0b111;
/// Bits of the first octet below the config rotation bits.
const CONFIG_ID_SHIFT: u32 = 5;
/// The default nonce: 8 random bytes, about as much randomness as quinn's own connection IDs.
const DEFAULT_NONCE_LEN: usize = 8;

/// A server ID for the server's QUIC connection IDs, for UDP load balancers that route by
/// connection ID (QUIC-LB, plaintext format). Set it with
/// [`ServerBuilder::quic_lb`](crate::ServerBuilder::quic_lb); without it the server's
/// connection IDs are quinn's (8 random-looking bytes).
///
/// Every connection ID the server issues is then `1 + server_id.len() + nonce_len` bytes:
/// a first octet with the config rotation bits and the length of the rest, the server ID as
/// given, and a random nonce. The load balancer needs the same config ID and server ID
/// length. The server ID is in plaintext: an observer who sees two connection IDs can tell
/// that they lead to the same server (docs/deployment.md).
///
/// ```
/// # fn run(identity: quicrpc::tls::Identity) {
/// let builder = quicrpc::Server::builder()
///     .identity(identity)
///     .quic_lb(quicrpc::QuicLbConfig::new([0x0a, 0x01]).config_id(1));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuicLbConfig {
    server_id: Vec<u8>,
    config_id: u8,
    nonce_len: usize,
}

impl QuicLbConfig {
    /// This server's ID, as the load balancer's configuration assigns it: at least one byte,
    /// and at most 11 with the default 8-byte nonce (server ID and nonce share 19 bytes).
    pub fn new(server_id: impl Into<Vec<u8>>) -> Self {
        Self {
            server_id: server_id.into(),
            config_id: 0,
            nonce_len: DEFAULT_NONCE_LEN,
        }
    }

    /// The configuration's ID, carried in the top three bits of every connection ID (the
    /// draft's config rotation bits): 0 to 6, 7 being reserved for connection IDs a load
    /// balancer cannot route. Default: 0.
    #[must_use]
    pub fn config_id(mut self, config_id: u8) -> Self {
        self.config_id = config_id;
        self
    }

    /// The length of the random nonce after the server ID, in bytes: at least 4, and at
    /// most 19 less the server ID. Longer nonces cost bytes in every packet a client sends;
    /// shorter ones repeat sooner (about every 2^(4 × length) connection IDs). Default: 8.
    #[must_use]
    pub fn nonce_len(mut self, len: usize) -> Self {
        self.nonce_len = len;
        self
    }

    /// Checks the settings against the draft's limits.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |what: String| Err(Error::config(format!("QUIC-LB: {what}")));
        if self.config_id >= UNROUTABLE_CONFIG_ID {
            return invalid(format!(
                "config ID {} is out of range: 0 to 6 (7 marks unroutable connection IDs)",
                self.config_id
            ));
        }
        if self.server_id.is_empty() {
            return invalid("the server ID is empty; it needs at least one byte".into());
        }
        if self.nonce_len < MIN_NONCE_LEN {
            return invalid(format!(
                "a nonce of {} bytes is too short: at least {MIN_NONCE_LEN}",
                self.nonce_len
            ));
        }
        if self.cid_len() > MAX_CID_LEN {
            return invalid(format!(
                "a {}-byte server ID and a {}-byte nonce make {}-byte connection IDs; QUIC \
                 allows {MAX_CID_LEN} (server ID and nonce together at most {})",
                self.server_id.len(),
                self.nonce_len,
                self.cid_len(),
                MAX_CID_LEN - 1
            ));
        }
        Ok(())
    }

    /// The length of every connection ID issued under this configuration.
    fn cid_len(&self) -> usize {
        1 + self.server_id.len() + self.nonce_len
    }

    /// The generator quinn's endpoint asks for connection IDs. The configuration must have
    /// passed [`validate`](Self::validate).
    pub(crate) fn generator(&self) -> QuicLbCidGenerator {
        QuicLbCidGenerator {
            config: self.clone(),
            nonces: RandomConnectionIdGenerator::new(self.nonce_len),
        }
    }
}

/// The first octet of a connection ID of `cid_len` bytes under `config_id`: the config
/// rotation bits, then the length of the rest.
fn first_octet(config_id: u8, cid_len: usize) -> u8 {
    // `cid_len` is at most 20, so `cid_len - 1` fits the five low bits.
    (config_id << CONFIG_ID_SHIFT) | (cid_len - 1) as u8
}

/// A plaintext QUIC-LB connection ID: first octet, `server_id`, `nonce`. The lengths must be
/// valid ([`QuicLbConfig::validate`]): at most 20 bytes in all.
pub(crate) fn encode(config_id: u8, server_id: &[u8], nonce: &[u8]) -> ConnectionId {
    let len = 1 + server_id.len() + nonce.len();
    let mut bytes = [0; MAX_CID_LEN];
    bytes[0] = first_octet(config_id, len);
    bytes[1..1 + server_id.len()].copy_from_slice(server_id);
    bytes[1 + server_id.len()..len].copy_from_slice(nonce);
    ConnectionId::new(&bytes[..len])
}

/// What a plaintext QUIC-LB connection ID carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    /// The config rotation bits.
    pub(crate) config_id: u8,
    /// The server ID.
    pub(crate) server_id: &'a [u8],
}

/// Reads a connection ID as a load balancer would, given the configuration's server ID
/// length. `None` when it cannot be one of QUIC-LB's: empty, marked unroutable (config
/// rotation 7), not as long as its first octet says, or too short for the server ID and a
/// nonce.
pub(crate) fn decode(cid: &[u8], server_id_len: usize) -> Option<Decoded<'_>> {
    let (&first, rest) = cid.split_first()?;
    let config_id = first >> CONFIG_ID_SHIFT;
    let rest_len = usize::from(first & ((1 << CONFIG_ID_SHIFT) - 1));
    if config_id == UNROUTABLE_CONFIG_ID
        || rest.len() != rest_len
        || rest.len() < server_id_len + MIN_NONCE_LEN
    {
        return None;
    }
    Some(Decoded {
        config_id,
        server_id: &rest[..server_id_len],
    })
}

/// quinn's connection ID generator for a [`QuicLbConfig`].
#[derive(Debug)]
pub(crate) struct QuicLbCidGenerator {
    config: QuicLbConfig,
    /// Random bytes of the nonce's length: quinn's own random connection IDs.
    nonces: RandomConnectionIdGenerator,
}

impl ConnectionIdGenerator for QuicLbCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let nonce = self.nonces.generate_cid();
        encode(self.config.config_id, &self.config.server_id, &nonce)
    }

    /// Whether `cid` carries this server's config ID and server ID. quinn asks only about
    /// short-header packets for connections it does not know, and drops those that fail
    /// instead of answering with a stateless reset: a packet with another server's ID was
    /// routed here by mistake, and is not this server's to reset.
    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        match decode(cid, self.config.server_id.len()) {
            Some(decoded)
                if decoded.config_id == self.config.config_id
                    && decoded.server_id == self.config.server_id =>
            {
                Ok(())
            }
            _ => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        self.config.cid_len()
    }

    /// None: connection IDs are not retired for their age, as with quinn's own generators.
    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft's unencrypted test vector (section "Load Balancer Test Vectors", where the
    /// server encodes the connection ID length): config rotation 0, server ID c4605e, nonce
    /// 4504cc4f. The draft's second unencrypted vector has an odd number of hex digits and
    /// cannot be read as bytes.
    #[test]
    fn the_drafts_test_vector() {
        let cid = encode(0, &[0xc4, 0x60, 0x5e], &[0x45, 0x04, 0xcc, 0x4f]);
        assert_eq!(&cid[..], &[0x07, 0xc4, 0x60, 0x5e, 0x45, 0x04, 0xcc, 0x4f]);
        assert_eq!(
            decode(&cid, 3),
            Some(Decoded {
                config_id: 0,
                server_id: &[0xc4, 0x60, 0x5e],
            })
        );
    }

    /// Written out by hand from the format: config rotation 6 is 0b110 in the top bits, and
    /// 19 more bytes is 0b10011 in the low five, so the first octet is 0xd3.
    #[test]
    fn longest_connection_id_with_the_highest_config_id() {
        let server_id: Vec<u8> = (1..=15).collect();
        let cid = encode(6, &server_id, &[0xaa, 0xbb, 0xcc, 0xdd]);
        let mut expected = vec![0xd3];
        expected.extend(1..=15);
        expected.extend([0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(&cid[..], &expected[..]);
        assert_eq!(decode(&cid, 15).map(|d| d.config_id), Some(6));
    }

    #[test]
    fn decode_refuses_what_is_not_a_quic_lb_connection_id() {
        let cases: &[(&str, &[u8])] = &[
            ("empty", &[]),
            ("first octet only", &[0x00]),
            ("length says one more", &[0x08, 1, 2, 3, 4, 5, 6, 7]),
            ("length says one less", &[0x06, 1, 2, 3, 4, 5, 6, 7]),
            ("unroutable config", &[0xe7, 1, 2, 3, 4, 5, 6, 7]),
            ("nonce under four bytes", &[0x06, 1, 2, 3, 4, 5, 6]),
        ];
        for (what, cid) in cases {
            assert_eq!(decode(cid, 3), None, "{what}");
        }
    }

    /// Every first octet, every length up to past QUIC's limit, every server ID length: no
    /// panic, and what decodes is as long as its first octet says and routable.
    #[test]
    fn decode_never_panics_and_only_accepts_consistent_ids() {
        for len in 0..=MAX_CID_LEN + 5 {
            for first in 0..=u8::MAX {
                let mut cid = vec![0x55; len];
                if let Some(byte) = cid.first_mut() {
                    *byte = first;
                }
                for server_id_len in 0..=MAX_CID_LEN + 5 {
                    let Some(decoded) = decode(&cid, server_id_len) else {
                        continue;
                    };
                    assert_eq!(usize::from(first & 0x1f), len - 1);
                    assert_ne!(decoded.config_id, UNROUTABLE_CONFIG_ID);
                    assert_eq!(decoded.server_id.len(), server_id_len);
                    assert!(len >= 1 + server_id_len + MIN_NONCE_LEN);
                }
            }
        }
    }

    #[test]
    fn generated_ids_carry_the_server_id_and_differ_in_their_nonce() {
        let config = QuicLbConfig::new([0x12, 0x34]).config_id(3).nonce_len(6);
        config.validate().unwrap();
        let mut generator = config.generator();
        assert_eq!(generator.cid_len(), 9);
        assert_eq!(generator.cid_lifetime(), None);
        let mut nonces = std::collections::HashSet::new();
        for _ in 0..100 {
            let cid = generator.generate_cid();
            assert_eq!(cid.len(), 9);
            let decoded = decode(&cid, 2).expect("decodes");
            assert_eq!(decoded.config_id, 3);
            assert_eq!(decoded.server_id, &[0x12, 0x34]);
            assert!(generator.validate(&cid).is_ok());
            nonces.insert(cid[3..].to_vec());
        }
        assert_eq!(
            nonces.len(),
            100,
            "a random 6-byte nonce does not repeat in 100"
        );
    }

    #[test]
    fn validate_refuses_other_servers_and_configs() {
        let generator = QuicLbConfig::new([0x12, 0x34])
            .config_id(3)
            .nonce_len(4)
            .generator();
        let cases: &[(&str, [u8; 7], bool)] = &[
            ("ours", [0x66, 0x12, 0x34, 9, 9, 9, 9], true),
            ("another server", [0x66, 0x12, 0x35, 9, 9, 9, 9], false),
            ("another config", [0x46, 0x12, 0x34, 9, 9, 9, 9], false),
            ("wrong length octet", [0x65, 0x12, 0x34, 9, 9, 9, 9], false),
        ];
        for (what, cid, ok) in cases {
            let valid = generator.validate(&ConnectionId::new(cid)).is_ok();
            assert_eq!(valid, *ok, "{what}");
        }
    }

    #[test]
    fn settings_outside_the_drafts_limits_are_refused() {
        let cases = [
            ("defaults", QuicLbConfig::new([1]), None),
            ("config 6", QuicLbConfig::new([1]).config_id(6), None),
            ("20 bytes", QuicLbConfig::new([1; 15]).nonce_len(4), None),
            (
                "config 7",
                QuicLbConfig::new([1]).config_id(7),
                Some("config ID 7"),
            ),
            (
                "empty server ID",
                QuicLbConfig::new([]),
                Some("server ID is empty"),
            ),
            (
                "3-byte nonce",
                QuicLbConfig::new([1]).nonce_len(3),
                Some("nonce of 3"),
            ),
            (
                "21 bytes",
                QuicLbConfig::new([1; 12]),
                Some("21-byte connection IDs"),
            ),
        ];
        for (what, config, refused) in cases {
            match (config.validate(), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(says)) => assert!(e.to_string().contains(says), "{what}: {e}"),
                (result, _) => panic!("{what}: {result:?}"),
            }
        }
    }
}
