//! The transports compared: each client kind, the server it talks to, and the QUIC settings
//! swept (congestion controllers, flow-control windows). A new comparator is a variant here,
//! its server in `serve` and its client in `dial`.

use clap::ValueEnum;

/// The environment variable that carries `compare --tcp-cc` to the child processes.
pub(crate) const TCP_CC: &str = "QUICRPC_BENCH_TCP_CC";

/// The TCP congestion controller this process's TCP sockets get ([`TCP_CC`]), if any: the
/// host's otherwise.
pub(crate) fn tcp_cc() -> Option<String> {
    std::env::var(TCP_CC).ok().filter(|name| !name.is_empty())
}

/// Sets [`tcp_cc`] on `socket`, if one is chosen.
pub(crate) fn set_tcp_cc(socket: socket2::SockRef<'_>) -> std::io::Result<()> {
    match tcp_cc() {
        Some(name) => socket.set_tcp_congestion(name.as_bytes()),
        None => Ok(()),
    }
}

/// QUIC congestion controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Cc {
    Cubic,
    NewReno,
    Bbr,
}

impl Cc {
    pub(crate) fn quicrpc(self) -> quicrpc::CongestionControl {
        match self {
            Self::Cubic => quicrpc::CongestionControl::Cubic,
            Self::NewReno => quicrpc::CongestionControl::NewReno,
            Self::Bbr => quicrpc::CongestionControl::Bbr,
        }
    }
}

/// QUIC's flow-control windows, both sides of quicrpc (quicrpc's defaults where absent):
/// With feature `qlog`: the environment variable that names a directory for a qlog trace of
/// every quicrpc QUIC connection, both sides (`QUICRPC_BENCH_QLOG=/tmp/q quicrpc-bench
/// compare ...`). For finding where a tail comes from, not for measuring: tracing costs.
#[cfg(feature = "qlog")]
const QLOG_DIR: &str = "QUICRPC_BENCH_QLOG";

/// `builder` with its qlog directory set by `set`, if [`QLOG_DIR`] names one.
#[cfg(feature = "qlog")]
fn with_qlog<B>(builder: B, set: fn(B, std::ffi::OsString) -> B) -> B {
    match std::env::var_os(QLOG_DIR) {
        Some(dir) => set(builder, dir),
        None => builder,
    }
}

/// `compare`'s common flags, and the `serve` and client subcommands' that it passes on.
/// Bare quinn keeps quinn's defaults whatever these say.
#[derive(clap::Args, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Windows {
    /// QUIC stream receive window in bytes, both sides (quicrpc only).
    #[arg(long, value_name = "BYTES")]
    pub(crate) stream_window: Option<u32>,
    /// QUIC connection receive window in bytes, both sides (quicrpc only).
    #[arg(long, value_name = "BYTES")]
    pub(crate) conn_window: Option<u32>,
    /// QUIC send window in bytes, both sides (quicrpc only).
    #[arg(long, value_name = "BYTES")]
    pub(crate) send_window: Option<u64>,
    /// The largest UDP payload QUIC sends and takes, both sides (quicrpc only; its default
    /// is 4,000 bytes over loopback).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_udp_payload: Option<u16>,
}

impl Windows {
    /// The flags that set these windows in a child process.
    pub(crate) fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let windows = [
            ("--stream-window", self.stream_window.map(u64::from)),
            ("--conn-window", self.conn_window.map(u64::from)),
            ("--send-window", self.send_window),
            ("--max-udp-payload", self.max_udp_payload.map(u64::from)),
        ];
        for (flag, bytes) in windows {
            if let Some(bytes) = bytes {
                flags.extend([flag.to_owned(), bytes.to_string()]);
            }
        }
        flags
    }

    /// What the tables and charts say about the windows: empty for quicrpc's defaults, else
    /// "stream window 8388608 B; ...".
    pub(crate) fn label(&self) -> String {
        let windows = [
            ("stream window", self.stream_window.map(u64::from)),
            ("connection window", self.conn_window.map(u64::from)),
            ("send window", self.send_window),
            ("largest UDP payload", self.max_udp_payload.map(u64::from)),
        ];
        let set: Vec<String> = windows
            .iter()
            .filter_map(|(name, bytes)| bytes.map(|b| format!("{name} {b} B")))
            .collect();
        set.join("; ")
    }

    /// A quicrpc server's builder with these windows.
    pub(crate) fn server(&self, builder: quicrpc::ServerBuilder) -> quicrpc::ServerBuilder {
        use quicrpc::ServerBuilder as B;
        #[cfg(feature = "qlog")]
        let builder = with_qlog(builder, B::qlog_dir);
        self.apply(
            builder,
            B::stream_receive_window,
            B::connection_receive_window,
            B::send_window,
            B::max_udp_payload_size,
        )
    }

    /// A quicrpc channel's builder with these windows.
    pub(crate) fn channel(&self, builder: quicrpc::ChannelBuilder) -> quicrpc::ChannelBuilder {
        use quicrpc::ChannelBuilder as B;
        #[cfg(feature = "qlog")]
        let builder = with_qlog(builder, B::qlog_dir);
        self.apply(
            builder,
            B::stream_receive_window,
            B::connection_receive_window,
            B::send_window,
            B::max_udp_payload_size,
        )
    }

    /// `builder` with the settings that are set, by its setters for each (both builders have
    /// the same four, and no trait in common).
    fn apply<B>(
        &self,
        mut builder: B,
        stream: fn(B, u32) -> B,
        connection: fn(B, u32) -> B,
        send: fn(B, u64) -> B,
        payload: fn(B, u16) -> B,
    ) -> B {
        if let Some(bytes) = self.stream_window {
            builder = stream(builder, bytes);
        }
        if let Some(bytes) = self.conn_window {
            builder = connection(builder, bytes);
        }
        if let Some(bytes) = self.send_window {
            builder = send(builder, bytes);
        }
        if let Some(bytes) = self.max_udp_payload {
            builder = payload(builder, bytes);
        }
        builder
    }
}

/// The servers `serve` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// quicrpc::Server: QUIC on UDP and gRPC on TCP, same port.
    Quicrpc,
    /// tonic's own server, TCP+TLS.
    Tonic,
    /// Bare quinn with its defaults: no framing, no gRPC.
    Quinn,
}

/// The clients the load generators run, each against its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ClientKind {
    /// quicrpc over QUIC.
    Quic,
    /// quicrpc's client over gRPC over HTTP/3 (`QuicWire::Http3`), against quicrpc's server.
    Http3,
    /// quicrpc's TCP fallback (tonic's channel under quicrpc's).
    QuicrpcTcp,
    /// Plain tonic channel, TCP+TLS.
    Tonic,
    /// Plain tonic, one TCP+TLS connection per call in flight (the head-of-line control).
    TonicPool,
    /// Bare quinn: a QUIC stream per call, no framing (the transport's limit).
    Quinn,
}

impl ClientKind {
    /// The transports every scenario compares, in the order they run and are reported.
    pub(crate) const ALL: [ClientKind; 3] =
        [ClientKind::Quic, ClientKind::QuicrpcTcp, ClientKind::Tonic];
    /// Scenario 5's transports: the three, gRPC over HTTP/3, and tonic with a connection per
    /// call in flight.
    pub(crate) const HOL: [ClientKind; 5] = [
        ClientKind::Quic,
        ClientKind::Http3,
        ClientKind::QuicrpcTcp,
        ClientKind::Tonic,
        ClientKind::TonicPool,
    ];
    /// Scenarios 1 to 3's transports over an emulated link: the three, and gRPC over HTTP/3
    /// (see `compare::Run::with_bare_quinn`).
    pub(crate) const WITH_H3: [ClientKind; 4] = [
        ClientKind::Quic,
        ClientKind::Http3,
        ClientKind::QuicrpcTcp,
        ClientKind::Tonic,
    ];
    /// Scenarios 1 to 3's transports on loopback: those, and bare quinn.
    pub(crate) const WITH_QUINN: [ClientKind; 5] = [
        ClientKind::Quic,
        ClientKind::Http3,
        ClientKind::QuicrpcTcp,
        ClientKind::Tonic,
        ClientKind::Quinn,
    ];

    pub(crate) fn server(self) -> ServerKind {
        match self {
            Self::Quic | Self::Http3 | Self::QuicrpcTcp => ServerKind::Quicrpc,
            Self::Tonic | Self::TonicPool => ServerKind::Tonic,
            Self::Quinn => ServerKind::Quinn,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Quic => "quicrpc QUIC",
            Self::Http3 => "quicrpc HTTP/3",
            Self::QuicrpcTcp => "quicrpc TCP fallback",
            Self::Tonic => "tonic TCP+TLS",
            Self::TonicPool => "tonic, a connection per call",
            Self::Quinn => "bare quinn",
        }
    }

    /// The name in a ratio's column heading ("calls/s ÷ tonic").
    pub(crate) fn short_name(self) -> &'static str {
        match self {
            Self::Tonic => "tonic",
            other => other.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Windows;

    /// Each window that is set reaches its own setter, and no other.
    #[test]
    fn windows_that_are_set_reach_their_setters() {
        type Calls = Vec<(&'static str, u64)>;
        fn stream(mut calls: Calls, bytes: u32) -> Calls {
            calls.push(("stream", bytes.into()));
            calls
        }
        fn connection(mut calls: Calls, bytes: u32) -> Calls {
            calls.push(("connection", bytes.into()));
            calls
        }
        fn send(mut calls: Calls, bytes: u64) -> Calls {
            calls.push(("send", bytes));
            calls
        }
        fn payload(mut calls: Calls, bytes: u16) -> Calls {
            calls.push(("payload", bytes.into()));
            calls
        }
        let window = |stream, conn, send, payload| Windows {
            stream_window: stream,
            conn_window: conn,
            send_window: send,
            max_udp_payload: payload,
        };
        for (windows, want) in [
            (window(None, None, None, None), vec![]),
            (window(Some(1), None, None, None), vec![("stream", 1)]),
            (window(None, Some(2), None, None), vec![("connection", 2)]),
            (window(None, None, Some(3), None), vec![("send", 3)]),
            (window(None, None, None, Some(4)), vec![("payload", 4)]),
            (
                window(Some(8_388_608), Some(u32::MAX), Some(u64::MAX), Some(1452)),
                vec![
                    ("stream", 8_388_608),
                    ("connection", u32::MAX.into()),
                    ("send", u64::MAX),
                    ("payload", 1452),
                ],
            ),
        ] {
            let calls = windows.apply(Vec::new(), stream, connection, send, payload);
            assert_eq!(calls, want, "{windows:?}");
        }
    }
}
