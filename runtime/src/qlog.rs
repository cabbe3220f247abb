//! qlog traces (feature `qlog`): one file per QUIC connection, for qvis and similar tools.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;
use crate::telemetry::Side;

/// `transport`, writing a qlog trace of its connection into a new file in `dir`, named
/// `<side>-<unix ms>-<pid>-<n>.qlog`.
pub(crate) fn traced(
    mut transport: quinn::TransportConfig,
    dir: &Path,
    side: Side,
) -> Result<quinn::TransportConfig, Error> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);

    let side = side.as_str();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{side}-{millis}-{}-{n}.qlog", std::process::id()));
    let file = std::fs::File::create(&path).map_err(|e| Error::Config {
        message: format!("qlog file {}", path.display()),
        source: Some(e.into()),
    })?;
    let mut qlog = quinn::QlogConfig::default();
    // Unbuffered: the trace is complete on disk at every event, even if the connection
    // outlives the process's interest in it. Debugging only, so the cost is fine.
    qlog.writer(Box::new(file))
        .title(Some(format!("quicrpc {side}")));
    transport.qlog_stream(qlog.into_stream());
    Ok(transport)
}
