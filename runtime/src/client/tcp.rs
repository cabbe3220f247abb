//! The TCP side of the client: gRPC over HTTP/2 over TLS, through tonic.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use rustls_pki_types::ServerName;
use tokio::time::Instant;
use tonic::Status;
use tower::ServiceExt;
use tracing::debug;

use super::builder::Target;
use super::{Call, CallSettings, ResponseBody};
use crate::config::ConnectionConfig;
use crate::error::chain;
use crate::sync::lock;
use crate::tls::ClientTls;
use crate::{Error, Transport};

/// Everything needed to open gRPC-over-TCP connections to one server.
#[derive(Clone, Debug)]
pub(super) struct TcpConnector {
    endpoint: tonic::transport::Endpoint,
    /// TLS is done here, with quicrpc's own rustls config (TLS 1.3 only, the ring provider,
    /// verification as the builder says), and tonic gets a connection it sees as plain:
    /// tonic's TLS would take the process-default provider, allow TLS 1.2, and cannot be
    /// told not to verify.
    tls: TcpTls,
    /// The congestion controller set on each connection's socket, if not the host's.
    congestion: Option<Arc<str>>,
}

#[derive(Clone, Debug)]
struct TcpTls {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl TcpConnector {
    /// A connector to `target` with these TLS and connection settings.
    pub(super) fn new(
        target: &Target,
        tls: &ClientTls,
        config: &ConnectionConfig,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        let server_name = &target.server_name;
        // Sessions resume (a shorter handshake on reconnect); TCP has no early data.
        let tcp_tls = ClientTls {
            early_data: false,
            ..tls.clone()
        };
        let tls = TcpTls {
            config: Arc::new(tcp_tls.config(&[b"h2"])?),
            server_name: ServerName::try_from(server_name.clone())
                .map_err(|e| Error::tls_caused(format!("server name {server_name:?}"), e))?,
        };
        // Without tonic's TLS the endpoint's scheme must be http, or tonic refuses to
        // connect; the connection is TLS all the same.
        let authority = &target.authority;
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| Error::InvalidUri {
                uri: authority.clone(),
                reason: e.to_string(),
            })?;
        let endpoint = endpoint
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_max_header_list_size(
                u32::try_from(config.max_header_list_size).unwrap_or(u32::MAX),
            )
            .keep_alive_while_idle(config.keep_alive_interval.is_some());
        let endpoint = match config.keep_alive_interval {
            Some(interval) => endpoint.http2_keep_alive_interval(interval),
            None => endpoint,
        };
        Ok(Self {
            endpoint,
            tls,
            congestion: config.tcp_congestion_control.as_deref().map(Arc::from),
        })
    }

    /// Connects: TCP, TLS, HTTP/2.
    ///
    /// Not cancel-safe: cancelling it abandons the attempt (what the race does to the loser).
    pub(super) async fn connect(&self) -> Result<tonic::transport::Channel, Error> {
        let tls = self.tls.clone();
        let congestion = self.congestion.clone();
        let connector = tower::service_fn(move |uri: Uri| {
            let tls = tls.clone();
            let congestion = congestion.clone();
            async move {
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                let port = uri.port_u16().unwrap_or(443);
                let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                tcp.set_nodelay(true)?;
                crate::config::set_tcp_congestion(
                    socket2::SockRef::from(&tcp),
                    congestion.as_deref(),
                );
                let tls = tokio_rustls::TlsConnector::from(tls.config)
                    .connect(tls.server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        self.endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|source| Error::TcpConnect { source })
    }
}

/// Runs a call over TCP, through tonic's channel, with what the QUIC side also gives every
/// call: the receive limit, the deadline, and statuses that mean the same.
pub(super) async fn call(
    channel: tonic::transport::Channel,
    request: http::Request<tonic::body::Body>,
    call: &mut Call,
    settings: &CallSettings,
) -> Result<http::Response<ResponseBody>, Status> {
    call.started(Transport::Tcp, None);
    let deadline = call.deadline;
    let (request, request_failure) = watch_request(request);
    let mut response = match channel.oneshot(request).await {
        Ok(mut response) => {
            // A trailers-only response carries its status in the head; as over QUIC, status
            // fields tonic cannot take (it panics on details that are not base64) end the
            // call with a status of their own.
            crate::status::check_status_fields(response.headers())?;
            // hyper's server answers a request whose metadata passes its header list limit
            // with HTTP 431 and no gRPC status, which tonic would report as UNKNOWN; over
            // QUIC the same request gets RESOURCE_EXHAUSTED.
            if response.status() == http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                && !response.headers().contains_key(&crate::status::GRPC_STATUS)
            {
                return Err(Status::resource_exhausted(
                    "request metadata exceeds the server's limit (HTTP 431)",
                ));
            }
            crate::status::deadline_status(response.headers_mut(), deadline);
            response.map(|b| ResponseBody::tcp(b, settings.max_receive_message_size, deadline))
        }
        // tonic's own deadline layer reports an expired deadline as CANCELLED; a status must
        // mean the same on both transports.
        Err(e) if deadline.is_some_and(|d| Instant::now() >= d) => {
            debug!("TCP call ended at its deadline: {e}");
            return Err(Status::deadline_exceeded("deadline exceeded"));
        }
        Err(e) => {
            // The request body failed (a cancelled call, say) and hyper reports the reset that
            // caused: the caller gets the body's status, as over QUIC.
            if let Some(status) = lock(&request_failure).take() {
                debug!("TCP request body failed: {e}");
                return Err(status);
            }
            // A failed connection or TLS handshake (a refused client certificate, say):
            // gRPC's code for transport failures, with the whole chain of causes.
            return Err(Status::unavailable(chain(&e)));
        }
    };
    response.extensions_mut().insert(Transport::Tcp);
    Ok(response)
}

/// The status a request body failed with, once it has.
type RequestFailure = std::sync::Arc<std::sync::Mutex<Option<Status>>>;

/// A TCP request body that remembers the status it failed with. When a request body fails
/// (tonic's `CancellationHandle` fired, say), hyper resets the HTTP/2 stream and reports the
/// reset, not the body's status; the QUIC side reports the body's status, and a status must
/// mean the same on both transports.
struct WatchedRequest {
    inner: tonic::body::Body,
    failure: RequestFailure,
}

/// Wraps `request`'s body so that the status it fails with lands in the returned slot.
fn watch_request(
    request: http::Request<tonic::body::Body>,
) -> (http::Request<tonic::body::Body>, RequestFailure) {
    let failure = RequestFailure::default();
    let watched = failure.clone();
    let request = request.map(|inner| {
        tonic::body::Body::new(WatchedRequest {
            inner,
            failure: watched,
        })
    });
    (request, failure)
}

impl Body for WatchedRequest {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Err(status)) = &frame {
            *lock(&self.failure) = Some(status.clone());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
