//! [`AddressValidation`]: when QUIC clients must prove their address before a handshake.

/// When the server asks a QUIC client to prove its address with a Retry packet before it
/// spends a handshake's work (and up to three times the client's bytes in answers) on it.
///
/// A Retry costs the client one round trip. Without it, a spoofed flood of Initial packets
/// makes the server do handshake work and send answers to addresses that never asked, which
/// is what amplification attacks use; QUIC caps those answers at three times what the address
/// sent, and Retry removes them. Clients that resume with an address validation token from
/// the server are not asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressValidation {
    /// Never send Retry.
    Never,
    /// Validate every new connection (a round trip more for each).
    Always,
    /// Validate new connections while at least `handshakes` QUIC handshakes are under way:
    /// no cost in normal operation, validation under a flood.
    UnderLoad {
        /// Handshakes under way from which Retry switches on.
        handshakes: usize,
    },
}

impl Default for AddressValidation {
    /// [`AddressValidation::UnderLoad`] from 64 handshakes under way.
    fn default() -> Self {
        Self::UnderLoad { handshakes: 64 }
    }
}

impl AddressValidation {
    /// Whether a connection attempt from an unvalidated address gets a Retry now.
    pub(super) fn retry_now(self, handshakes: usize) -> bool {
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::UnderLoad { handshakes: from } => handshakes >= from,
        }
    }
}
