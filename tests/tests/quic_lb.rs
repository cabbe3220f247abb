//! Connection IDs for UDP load balancers (`ServerBuilder::quic_lb`): every connection ID the
//! server gives a client carries the configured server ID, read here as a load balancer
//! would read it, from the destination connection IDs of the datagrams the client sends.
//! The reading below is written from the draft's format, not with quicrpc's own decoder.

use quicrpc::{AddressValidation, QuicLbConfig};
use quicrpc_tests::pb::echo_client::EchoClient;
use quicrpc_tests::raw::RecordingRelay;
use quicrpc_tests::{TestOptions, TestServer, echo, within};

const SERVER_ID: [u8; 3] = [0x5e, 0x1f, 0x0a];
const CONFIG_ID: u8 = 5;
const NONCE_LEN: usize = 6;
/// First octet, server ID, nonce.
const CID_LEN: usize = 1 + SERVER_ID.len() + NONCE_LEN;
/// Each move to a new socket makes the client use a connection ID it has not used before.
const REBINDS: usize = 6;

/// The long header packet types of QUIC version 1 (RFC 9000, section 17.2).
const INITIAL: u8 = 0;
const ZERO_RTT: u8 = 1;

/// The destination connection ID of a datagram's first packet (QUIC puts only packets with
/// the same one in a datagram), and whether it may be one the client chose itself: an
/// Initial or 0-RTT packet's, before the client has heard from the server.
fn destination_cid(datagram: &[u8]) -> (&[u8], bool) {
    let first = datagram[0];
    if first & 0x80 == 0 {
        // A short header (its fixed bit, 0x40, may be clear: quinn greases it, RFC 9287).
        // The connection ID has the length the server chose, which only the server and a
        // load balancer configured alike know.
        return (&datagram[1..1 + CID_LEN], false);
    }
    // A long header: first byte, version (4), DCID length (1), DCID.
    let len = usize::from(datagram[5]);
    let packet_type = (first >> 4) & 0b11;
    (
        &datagram[6..6 + len],
        matches!(packet_type, INITIAL | ZERO_RTT),
    )
}

/// Reads `cid` as a QUIC-LB plaintext connection ID that self-encodes its length: the top
/// three bits of the first octet are the config ID, the low five the length of the rest,
/// and the server ID follows.
fn assert_carries_server_id(cid: &[u8], what: &str) {
    assert_eq!(cid.len(), CID_LEN, "{what}: length of {cid:02x?}");
    assert_eq!(cid[0] >> 5, CONFIG_ID, "{what}: config ID of {cid:02x?}");
    assert_eq!(
        usize::from(cid[0] & 0x1f),
        CID_LEN - 1,
        "{what}: self-encoded length of {cid:02x?}"
    );
    assert_eq!(cid[1..1 + SERVER_ID.len()], SERVER_ID, "{what}: server ID");
}

#[tokio::test]
async fn every_connection_id_the_server_issues_carries_its_server_id() {
    connection_ids_carry_the_server_id(AddressValidation::Never).await;
}

/// With a Retry first, the client's second Initial goes to the connection ID in the Retry.
#[tokio::test]
async fn so_does_the_connection_id_of_a_retry() {
    connection_ids_carry_the_server_id(AddressValidation::Always).await;
}

async fn connection_ids_carry_the_server_id(validation: AddressValidation) {
    let config = QuicLbConfig::new(SERVER_ID)
        .config_id(CONFIG_ID)
        .nonce_len(NONCE_LEN);
    let server = TestServer::start_with(TestOptions::default(), |b| {
        b.quic_lb(config).address_validation(validation)
    })
    .await;
    // The relay records every datagram the client sends, and follows the client to its new
    // port after each rebind.
    let relay = RecordingRelay::start(server.addr).await;
    let channel = quicrpc::Channel::builder(format!("https://127.0.0.1:{}", relay.addr.port()))
        .ca_certificate(server.cert.ca_certificate())
        .fallback(quicrpc::Fallback::QuicOnly);
    let channel = within("connect", channel.connect())
        .await
        .expect("connect through the relay");
    let mut client = EchoClient::new(channel.clone());
    within("call", client.unary(echo("first")))
        .await
        .expect("call");
    // Moving to a new socket makes quinn switch to a spare connection ID; the server replaces
    // each retired one with a NEW_CONNECTION_ID frame, so this goes through more of them than
    // the server hands out at first.
    for i in 0..REBINDS {
        channel.rebind().expect("rebind");
        within(
            "call after a rebind",
            client.unary(echo(&format!("moved {i}"))),
        )
        .await
        .expect("call after a rebind");
    }

    let retries = usize::from(validation == AddressValidation::Always);
    assert_eq!(server.stats.retries_sent(), retries, "Retries");

    let datagrams = relay.recorded();
    let (client_chosen, _) = destination_cid(&datagrams[0]);
    let client_chosen = client_chosen.to_vec();
    let mut distinct: Vec<Vec<u8>> = Vec::new();
    let mut checked = 0;
    for (i, datagram) in datagrams.iter().enumerate() {
        let (cid, may_be_the_clients) = destination_cid(datagram);
        if may_be_the_clients && cid == client_chosen {
            continue;
        }
        assert_carries_server_id(cid, &format!("datagram {i} of {}", datagrams.len()));
        checked += 1;
        if !distinct.iter().any(|seen| seen == cid) {
            distinct.push(cid.to_vec());
        }
    }
    assert!(
        checked > 2 * REBINDS,
        "only {checked} datagrams to the server's connection IDs"
    );
    assert!(
        distinct.len() > REBINDS,
        "the client used {} connection IDs over {REBINDS} rebinds",
        distinct.len()
    );
}

#[tokio::test]
async fn settings_outside_the_drafts_limits_fail_bind() {
    let cases = [
        ("config ID 7", QuicLbConfig::new([1]).config_id(7)),
        ("empty server ID", QuicLbConfig::new([])),
        ("3-byte nonce", QuicLbConfig::new([1]).nonce_len(3)),
        ("21-byte connection ID", QuicLbConfig::new([1; 12])),
    ];
    for (what, config) in cases {
        let cert = quicrpc::tls::SelfSigned::new(["localhost"]).expect("certificate");
        let bound = quicrpc::Server::builder()
            .identity(cert.identity())
            .quic_lb(config)
            .bind("127.0.0.1:0")
            .await;
        match bound {
            Err(quicrpc::Error::Config { message, .. }) => {
                assert!(message.starts_with("QUIC-LB:"), "{what}: {message}");
            }
            other => panic!("{what}: expected a config error, got {other:?}"),
        }
    }
}
