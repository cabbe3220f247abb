//! The server's control streams: a GOAWAY there marks the connection as draining.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use tracing::{debug, warn};

use crate::stream::RecvHalf;
use crate::wire::code::ErrorCode;
use crate::wire::frame::{self, Frame, FrameDecoder};
use crate::wire::varint;

/// Reads the server's control streams: a GOAWAY marks the connection as draining, so new
/// calls open a new connection instead.
pub(super) async fn watch(conn: quinn::Connection, draining: Arc<AtomicBool>) {
    while let Ok(stream) = conn.accept_uni().await {
        let mut recv = RecvHalf::new(stream);
        match read_control_stream(&mut recv, &draining).await {
            Ok(()) => recv.set_drop_code(ErrorCode::NoError),
            Err(problem) => {
                warn!(remote = %conn.remote_address(), "{problem}");
                recv.set_drop_code(ErrorCode::ProtocolError);
            }
        }
    }
}

async fn read_control_stream(
    recv: &mut RecvHalf,
    draining: &AtomicBool,
) -> Result<(), &'static str> {
    let mut buf = BytesMut::new();
    let stream_type = loop {
        if let Some((stream_type, n)) = varint::get(&buf) {
            bytes::Buf::advance(&mut buf, n);
            break stream_type;
        }
        match recv.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => return Ok(()),
        }
    };
    if stream_type != frame::CONTROL_STREAM {
        // Unknown unidirectional stream types are ignored, for extensions.
        return Ok(());
    }
    let mut decoder = FrameDecoder::new(1024);
    loop {
        while let Some(frame) = decoder
            .decode(&mut buf)
            .map_err(|_| "oversized frame on the control stream")?
        {
            match frame {
                Frame::GoAway => {
                    debug!("server sent GOAWAY");
                    draining.store(true, Ordering::Release);
                }
                _ => return Err("unexpected frame on the control stream"),
            }
        }
        match recv.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}
