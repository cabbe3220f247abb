//! The options JavaScript passes, checked and turned into quicrpc's settings.

use std::path::PathBuf;
use std::time::Duration;

use napi_derive::napi;
use quicrpc::{ChannelBuilder, Fallback, Priority};
use tonic::metadata::MetadataMap;

use crate::metadata::{self, MetadataEntry};

/// The longest timeout either option takes: 365 days, far past any real deadline and inside
/// tokio's timer range.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How to reach the server, and where message types come from.
#[napi(object)]
#[derive(Debug, Default)]
pub struct ConnectOptions {
    /// PEM text of the CA certificate(s) that the server's certificate must chain to.
    /// Default: the Mozilla roots.
    pub ca: Option<String>,
    /// `.proto` files to take message types from, compiled here (no protoc). Each is
    /// looked up under each of `importPaths`, then from the working directory. Default:
    /// ask the server's reflection service (grpc.reflection.v1).
    pub proto_files: Option<Vec<String>>,
    /// Directories where `protoFiles` and their imports are found. Default: the directory
    /// of each file.
    pub import_paths: Option<Vec<String>>,
    /// `'auto'` (the default: QUIC, falling back to gRPC over TCP when QUIC does not
    /// connect), `'quic'` or `'tcp'`.
    #[napi(ts_type = "'auto' | 'quic' | 'tcp'")]
    pub fallback: Option<String>,
    /// The name the server's certificate must carry. Default: the URI's host.
    pub server_name: Option<String>,
    /// How long connecting may take, in milliseconds (each QUIC or TCP attempt); also how
    /// long the reflection service has to answer. Default: 5000.
    pub connect_timeout_ms: Option<f64>,
    /// Whether response messages as JSON carry fields with their default value too
    /// (proto3's JSON mapping leaves them out). Default: false.
    pub emit_defaults: Option<bool>,
}

/// What a call may be given besides its messages.
#[napi(object)]
#[derive(Debug, Default)]
pub struct CallOptions {
    /// Request metadata.
    pub metadata: Option<Vec<MetadataEntry>>,
    /// The call's deadline, in milliseconds from now (sent as grpc-timeout and kept by the
    /// client).
    pub timeout_ms: Option<f64>,
    /// Overrides the method's send priority: `'critical'`, `'high'`, `'normal'`, `'low'` or
    /// `'bulk'` (QUIC only).
    #[napi(ts_type = "'critical' | 'high' | 'normal' | 'low' | 'bulk'")]
    pub priority: Option<String>,
    /// Whether response messages come as their protobuf encoding (a Buffer) instead of
    /// JSON.
    pub raw: Option<bool>,
}

/// [`ConnectOptions`], checked.
#[derive(Debug)]
pub(crate) struct Connect {
    pub(crate) builder: ChannelBuilder,
    pub(crate) protos: Vec<PathBuf>,
    pub(crate) import_paths: Vec<PathBuf>,
    pub(crate) connect_timeout: Duration,
    pub(crate) emit_defaults: bool,
}

impl ConnectOptions {
    /// The channel builder and schema settings for `uri`; the error says what is wrong.
    pub(crate) fn check(self, uri: &str) -> Result<Connect, String> {
        let parsed: http::Uri = uri
            .parse()
            .map_err(|e| format!("bad URI {uri:?}: {e} (expected https://HOST:PORT)"))?;
        if parsed.scheme_str() != Some("https") || parsed.host().is_none_or(str::is_empty) {
            return Err(format!(
                "bad URI {uri:?}: expected https://HOST:PORT (quicrpc always uses TLS)"
            ));
        }
        let connect_timeout = match self.connect_timeout_ms {
            Some(ms) => duration("connectTimeoutMs", ms)?,
            None => Duration::from_secs(5),
        };
        let mut builder = quicrpc::Channel::builder(uri).connect_timeout(connect_timeout);
        if let Some(pem) = self.ca {
            let cert = quicrpc::tls::Certificate::from_pem(pem.into_bytes())
                .map_err(|e| format!("ca: not a PEM certificate: {e}"))?;
            builder = builder.ca_certificate(cert);
        }
        if let Some(name) = self.server_name {
            builder = builder.domain_name(name);
        }
        let policy = match self.fallback.as_deref() {
            None | Some("auto") => Fallback::Auto,
            Some("quic") => Fallback::QuicOnly,
            Some("tcp") => Fallback::TcpOnly,
            Some(other) => {
                return Err(format!(
                    "fallback: unknown policy {other:?} (one of: auto, quic, tcp)"
                ));
            }
        };
        let paths = |list: Option<Vec<String>>| -> Vec<PathBuf> {
            list.unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect()
        };
        Ok(Connect {
            builder: builder.fallback(policy),
            protos: paths(self.proto_files),
            import_paths: paths(self.import_paths),
            connect_timeout,
            emit_defaults: self.emit_defaults.unwrap_or(false),
        })
    }
}

/// [`CallOptions`], checked.
#[derive(Debug, Default)]
pub(crate) struct CallSettings {
    pub(crate) metadata: MetadataMap,
    pub(crate) timeout: Option<Duration>,
    pub(crate) priority: Option<Priority>,
    pub(crate) raw: bool,
}

impl CallOptions {
    /// The call's settings; the error says which option is wrong.
    pub(crate) fn check(self) -> Result<CallSettings, String> {
        let metadata = metadata::to_map(self.metadata.unwrap_or_default())?;
        let timeout = self
            .timeout_ms
            .map(|ms| duration("timeoutMs", ms))
            .transpose()?;
        let priority = self
            .priority
            .map(|name| {
                name.parse::<Priority>().map_err(|_| {
                    format!(
                        "priority: unknown priority {name:?} (one of: critical, high, normal, \
                         low, bulk)"
                    )
                })
            })
            .transpose()?;
        Ok(CallSettings {
            metadata,
            timeout,
            priority,
            raw: self.raw.unwrap_or(false),
        })
    }
}

/// Milliseconds as a duration: a finite number, not negative, at most [`MAX_TIMEOUT`].
fn duration(option: &str, ms: f64) -> Result<Duration, String> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!(
            "{option}: {ms} is not a number of milliseconds (0 or more)"
        ));
    }
    let duration = Duration::from_secs_f64(ms / 1000.0);
    if duration > MAX_TIMEOUT {
        return Err(format!("{option}: {ms} is too long (the most is 365 days)"));
    }
    Ok(duration)
}
