//! Per-call tracing spans and metrics, and QUIC connection statistics.
//!
//! Metrics go through the [`metrics`] facade: they cost next to nothing until the
//! application installs a recorder (for example `metrics-exporter-prometheus`). Names and
//! labels are listed in `docs/observability.md`.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use tonic::Code;
use tracing::field::Empty;

use crate::{MethodInfo, Priority, Transport};

/// Which end of a call is reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Side {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// The metrics label for a method: its registered path without allocating, or the path as
/// given for methods no table knows. `info` is `method_info(path)`, which the caller has
/// usually looked up already.
pub(crate) fn method_label(path: &str, info: Option<&'static MethodInfo>) -> Cow<'static, str> {
    match info {
        Some(info) => Cow::Borrowed(info.path()),
        None => Cow::Owned(path.to_owned()),
    }
}

/// Methods a server serves without a `quicrpc-build` method table, by gRPC's standard
/// services (tonic-health, tonic-reflection): their paths are labels too.
const STANDARD_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The label a server gives a method it was asked for: its path when a method table knows
/// it, or when it is one of gRPC's standard services; `unknown` otherwise. The path comes
/// from the client, and a label per path would let one client grow every recorder's
/// series without bound.
pub(crate) fn server_method_label(
    path: &str,
    info: Option<&'static MethodInfo>,
) -> Cow<'static, str> {
    if let Some(info) = info {
        return Cow::Borrowed(info.path());
    }
    let standard = STANDARD_METHODS.iter().find(|m| **m == path);
    Cow::Borrowed(standard.copied().unwrap_or("unknown"))
}

/// One call's span and metrics, from start to status. Dropped before a status was seen, the
/// call counts as CANCELLED.
pub(crate) struct CallTelemetry {
    span: tracing::Span,
    side: Side,
    method: Cow<'static, str>,
    transport: Transport,
    start: Instant,
    finished: bool,
}

impl CallTelemetry {
    /// Starts recording a call to `method` (see [`method_label`]).
    pub(crate) fn start(
        side: Side,
        method: Cow<'static, str>,
        transport: Transport,
        priority: Option<Priority>,
        stream_id: Option<u64>,
    ) -> Self {
        let span = tracing::debug_span!(
            "rpc",
            side = side.as_str(),
            method = %method,
            transport = transport.label(),
            stream_id,
            priority = priority.map(Priority::as_str),
            grpc.status = Empty,
            duration_ms = Empty,
        );
        metrics::counter!(
            "quicrpc_calls_started_total",
            "side" => side.as_str(),
            "method" => method.clone(),
            "transport" => transport.label(),
        )
        .increment(1);
        Self {
            span,
            side,
            method,
            transport,
            start: Instant::now(),
            finished: false,
        }
    }

    /// The call's span, to enter while working on the call.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the call's outcome (once; later calls are ignored).
    pub(crate) fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        // A span no subscriber wants still looks its fields up and formats them (for the
        // `log` crate, which gets the event below anyway); with nothing listening, that was
        // 2 % of a client's CPU per call.
        if !self.span.is_disabled() {
            self.span.record("grpc.status", format_args!("{code:?}"));
            self.span
                .record("duration_ms", elapsed.as_secs_f64() * 1000.0);
        }
        tracing::debug!(parent: &self.span, "call finished");
        let (side, transport) = (self.side.as_str(), self.transport.label());
        metrics::counter!(
            "quicrpc_calls_finished_total",
            "side" => side,
            "method" => self.method.clone(),
            "transport" => transport,
            "code" => code_label(code),
        )
        .increment(1);
        metrics::histogram!(
            "quicrpc_call_duration_seconds",
            "side" => side,
            "method" => self.method.clone(),
            "transport" => transport,
        )
        .record(elapsed.as_secs_f64());
    }

    /// Records the status in `fields`, if they carry one.
    pub(crate) fn finish_from(&mut self, fields: &http::HeaderMap) {
        if let Some(code) = crate::status::status_code(fields) {
            self.finish(code);
        }
    }
}

impl Drop for CallTelemetry {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts a switch of a channel's transport.
pub(crate) fn transport_switch(to: Transport, reason: &'static str) {
    metrics::counter!("quicrpc_transport_switches_total", "to" => to.label(), "reason" => reason)
        .increment(1);
}

/// How often connection statistics are sampled.
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Samples a QUIC connection's statistics into metrics until it closes: RTT and congestion
/// window as histograms (one sample per connection per interval), lost packets, congestion
/// events, path validations and the DATA_BLOCKED / STREAM_DATA_BLOCKED frames this side sent
/// as counters. Cancel-safe: it only records.
pub(crate) async fn sample_connection(conn: quinn::Connection, side: Side) {
    let side = side.as_str();
    let mut last = conn.stats();
    let mut ticks = tokio::time::interval(STATS_INTERVAL);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = conn.closed() => break,
            _ = ticks.tick() => {}
        }
        let now = conn.stats();
        metrics::histogram!("quicrpc_quic_rtt_seconds", "side" => side)
            .record(now.path.rtt.as_secs_f64());
        metrics::histogram!("quicrpc_quic_cwnd_bytes", "side" => side).record(now.path.cwnd as f64);
        let delta = |new: u64, old: u64| new.saturating_sub(old);
        metrics::counter!("quicrpc_quic_lost_packets_total", "side" => side)
            .increment(delta(now.path.lost_packets, last.path.lost_packets));
        metrics::counter!("quicrpc_quic_congestion_events_total", "side" => side).increment(delta(
            now.path.congestion_events,
            last.path.congestion_events,
        ));
        metrics::counter!("quicrpc_quic_path_challenges_total", "side" => side).increment(delta(
            now.frame_rx.path_challenge,
            last.frame_rx.path_challenge,
        ));
        // Sent by this side: it had data to send and the peer's credit ran out.
        metrics::counter!("quicrpc_quic_data_blocked_total", "side" => side, "scope" => "connection")
            .increment(delta(now.frame_tx.data_blocked, last.frame_tx.data_blocked));
        metrics::counter!("quicrpc_quic_data_blocked_total", "side" => side, "scope" => "stream")
            .increment(delta(
                now.frame_tx.stream_data_blocked,
                last.frame_tx.stream_data_blocked,
            ));
        last = now;
    }
}

/// What a write of a QUIC stream waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Room in quinn's send buffer, or flow-control credit from the peer.
    Blocked,
    /// A more urgent write of the same connection that was waiting for room (the write gate).
    Held,
}

/// Records that a write at `priority` waited `waited` for `what`: a histogram per side,
/// priority and kind of wait, so that its count and sum say how often and how long each
/// priority waits.
pub(crate) fn write_waited(side: Side, priority: Priority, what: Wait, waited: Duration) {
    let what = match what {
        Wait::Blocked => "blocked",
        Wait::Held => "held",
    };
    metrics::histogram!(
        "quicrpc_quic_write_wait_seconds",
        "side" => side.as_str(),
        "priority" => priority.as_str(),
        "wait" => what
    )
    .record(waited.as_secs_f64());
}
