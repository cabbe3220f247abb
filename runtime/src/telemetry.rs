//! Per-call tracing spans and metrics, and QUIC connection statistics.
//!
//! Metrics go through the [`metrics`] facade: they cost next to nothing until the
//! application installs a recorder (for example `metrics-exporter-prometheus`). Names and
//! labels are listed in `docs/observability.md`.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Key, Label, Metadata};
use tonic::Code;
use tracing::field::Empty;

use crate::method::Registered;
use crate::{Priority, Transport};

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

/// A method as metrics label it: its path, and, for a method of a registered table, where the
/// metrics keys of its calls are kept.
#[derive(Clone)]
pub(crate) struct MethodLabel {
    name: Cow<'static, str>,
    keys: Option<&'static MethodKeys>,
}

impl MethodLabel {
    fn new(name: Cow<'static, str>) -> Self {
        Self { name, keys: None }
    }
}

impl fmt::Display for MethodLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The metrics label for a method: its registered path without allocating, or the path as
/// given for methods no table knows. `method` is `registered(path)`, which the caller has
/// usually looked up already.
pub(crate) fn method_label(path: &str, method: Option<&'static Registered>) -> MethodLabel {
    match method {
        Some(method) => registered_label(method),
        None => MethodLabel::new(Cow::Owned(path.to_owned())),
    }
}

fn registered_label(method: &'static Registered) -> MethodLabel {
    MethodLabel {
        name: Cow::Borrowed(method.info().path()),
        keys: Some(method.keys()),
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
pub(crate) fn server_method_label(path: &str, method: Option<&'static Registered>) -> MethodLabel {
    if let Some(method) = method {
        return registered_label(method);
    }
    let standard = STANDARD_METHODS.iter().find(|m| **m == path);
    MethodLabel::new(Cow::Borrowed(standard.copied().unwrap_or("unknown")))
}

/// A registered method's metrics keys, per side and transport, each built at its first use.
/// A key built for every call (its labels in a fresh `Vec`, then hashed), three per call,
/// cost about 2 % of a server's CPU even with no recorder installed.
#[derive(Default)]
pub(crate) struct MethodKeys {
    /// By side, then transport ([`keys_index`]).
    calls: [OnceLock<Box<CallKeys>>; 2 * TRANSPORTS],
}

const TRANSPORTS: usize = 3;

/// The number of gRPC status codes (0 to 16).
const CODES: usize = 17;

fn keys_index(side: Side, transport: Transport) -> usize {
    let side = match side {
        Side::Client => 0,
        Side::Server => 1,
    };
    let transport = match transport {
        Transport::Quic => 0,
        Transport::Tcp => 1,
        Transport::Http3 => 2,
    };
    side * TRANSPORTS + transport
}

/// One method's keys on one side and transport.
struct CallKeys {
    started: Key,
    duration: Key,
    /// By status code.
    finished: [OnceLock<Key>; CODES],
}

/// What the `metrics` macros give a key registered without one: this module, at INFO.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

const STARTED: &str = "quicrpc_calls_started_total";
const FINISHED: &str = "quicrpc_calls_finished_total";
const DURATION: &str = "quicrpc_call_duration_seconds";

/// The key of a call's metric `name`, with a `code` label for the status it finished with.
fn call_key(
    name: &'static str,
    side: Side,
    method: &MethodLabel,
    transport: Transport,
    code: Option<Code>,
) -> Key {
    let mut labels = Vec::with_capacity(4);
    labels.push(Label::new("side", side.as_str()));
    labels.push(Label::new("method", method.name.clone()));
    labels.push(Label::new("transport", transport.label()));
    labels.extend(code.map(|code| Label::new("code", code_label(code))));
    Key::from_parts(name, labels)
}

/// The registered method's cached key, or one built for this call.
fn key_or(cached: Option<&Key>, make: impl FnOnce() -> Key) -> Cow<'_, Key> {
    cached.map_or_else(|| Cow::Owned(make()), Cow::Borrowed)
}

/// One call's span and metrics, from start to status. Dropped before a status was seen, the
/// call counts as CANCELLED.
pub(crate) struct CallTelemetry {
    span: tracing::Span,
    side: Side,
    method: MethodLabel,
    /// The registered method's keys for this side and transport.
    keys: Option<&'static CallKeys>,
    transport: Transport,
    start: Instant,
    finished: bool,
}

impl CallTelemetry {
    /// Starts recording a call to `method` (see [`method_label`]).
    pub(crate) fn start(
        side: Side,
        method: MethodLabel,
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
        let keys = method.keys.map(|keys| {
            &**keys.calls[keys_index(side, transport)].get_or_init(|| {
                Box::new(CallKeys {
                    started: call_key(STARTED, side, &method, transport, None),
                    duration: call_key(DURATION, side, &method, transport, None),
                    finished: Default::default(),
                })
            })
        });
        let started = key_or(keys.map(|k| &k.started), || {
            call_key(STARTED, side, &method, transport, None)
        });
        metrics::with_recorder(|r| r.register_counter(&started, &METADATA).increment(1));
        Self {
            span,
            side,
            method,
            keys,
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
        let (side, method, transport) = (self.side, &self.method, self.transport);
        let make_finished = || call_key(FINISHED, side, method, transport, Some(code));
        let cached = self
            .keys
            .map(|keys| keys.finished[code_index(code)].get_or_init(make_finished));
        let finished = key_or(cached, make_finished);
        metrics::with_recorder(|r| r.register_counter(&finished, &METADATA).increment(1));
        let duration = key_or(self.keys.map(|k| &k.duration), || {
            call_key(DURATION, side, method, transport, None)
        });
        metrics::with_recorder(|r| {
            r.register_histogram(&duration, &METADATA)
                .record(elapsed.as_secs_f64());
        });
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

/// `code`'s number, 0 to 16, as an index.
fn code_index(code: Code) -> usize {
    usize::try_from(i32::from(code)).map_or(CODES - 1, |i| i.min(CODES - 1))
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use metrics::{Counter, Gauge, Histogram, KeyName, Recorder, SharedString, Unit};

    use super::*;

    /// Writes down every key it is asked to register, as `name{label=value,...}`.
    #[derive(Default)]
    struct Keys(Mutex<Vec<String>>);

    impl Keys {
        fn note(&self, key: &Key) {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let line = format!("{}{{{}}}", key.name(), labels.join(","));
            self.0.lock().unwrap().push(line);
        }
    }

    impl Recorder for Keys {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.note(key);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.note(key);
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.note(key);
            Histogram::noop()
        }
    }

    fn one_call(method: MethodLabel, code: Code) {
        CallTelemetry::start(Side::Server, method, Transport::Quic, None, None).finish(code);
    }

    /// A registered method's keys are built once and then reused; they, and the keys of a
    /// method no table knows, carry the same names and labels.
    #[test]
    fn cached_keys_are_the_keys_built_per_call() {
        let path = "/test.Registry/Ping";
        let method = crate::method::registered(path).expect("registered by method.rs's tests");
        let recorder = Keys::default();
        metrics::with_local_recorder(&recorder, || {
            for code in [Code::Ok, Code::Ok, Code::NotFound] {
                one_call(server_method_label(path, Some(method)), code);
            }
        });
        let cached = recorder.0.lock().unwrap().clone();
        assert!(
            method.keys().calls[keys_index(Side::Server, Transport::Quic)]
                .get()
                .is_some()
        );
        assert!(
            method.keys().calls[keys_index(Side::Client, Transport::Quic)]
                .get()
                .is_none()
        );

        let recorder = Keys::default();
        metrics::with_local_recorder(&recorder, || {
            for code in [Code::Ok, Code::Ok, Code::NotFound] {
                // The same path as a label, with no keys kept.
                one_call(MethodLabel::new(Cow::Borrowed(path)), code);
            }
        });
        let built = recorder.0.lock().unwrap().clone();
        assert_eq!(cached, built);
        let labels = "side=server,method=/test.Registry/Ping,transport=quic";
        assert_eq!(
            cached[..3],
            [
                format!("quicrpc_calls_started_total{{{labels}}}"),
                format!("quicrpc_calls_finished_total{{{labels},code=OK}}"),
                format!("quicrpc_call_duration_seconds{{{labels}}}"),
            ]
        );
        assert_eq!(
            cached[7],
            format!("quicrpc_calls_finished_total{{{labels},code=NOT_FOUND}}")
        );
    }

    #[test]
    fn every_code_has_its_own_index() {
        let indices: std::collections::HashSet<usize> = (0..CODES as i32)
            .map(|n| code_index(Code::from(n)))
            .collect();
        assert_eq!(indices.len(), CODES);
    }
}
