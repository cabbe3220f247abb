//! Tower layers around every service, the same on both transports.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tonic::body::Body as TonicBody;
use tower::util::BoxCloneSyncService;

use super::dispatch::Dispatch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request as the services and layers see it, on either transport.
pub type HttpRequest = http::Request<TonicBody>;

/// The service that [`ServerBuilder::layer`](crate::ServerBuilder::layer)'s layers wrap:
/// the services added so far, with the layers added before.
pub type LayeredService = BoxCloneSyncService<HttpRequest, http::Response<TonicBody>, Infallible>;

/// One user layer, applied to a boxed service.
pub(super) type LayerFn = Arc<dyn Fn(LayeredService) -> LayeredService + Send + Sync>;

/// Wraps `layer` so that it applies to a [`LayeredService`] and gives one back: its errors
/// become gRPC statuses, its body becomes tonic's.
pub(super) fn boxed<L, B>(layer: L) -> LayerFn
where
    L: tower::Layer<LayeredService> + Send + Sync + 'static,
    L::Service: tower_service::Service<HttpRequest, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower_service::Service<HttpRequest>>::Future: Send + 'static,
    <L::Service as tower_service::Service<HttpRequest>>::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Arc::new(move |inner| BoxCloneSyncService::new(Recover::new(layer.layer(inner))))
}

/// What a call goes to, on every transport: the services, in the user's layers if there are
/// any.
#[derive(Clone)]
pub(super) enum Stack {
    /// No layers: calls go straight to the services, with no boxed service to clone and no
    /// second box around each call's future (three allocations per call).
    Bare(Dispatch),
    Layered(LayeredService),
}

/// A call's future from a [`Stack`].
pub(super) type StackFuture = futures_util::future::Either<
    super::dispatch::ResponseFuture,
    tower::util::Oneshot<LayeredService, HttpRequest>,
>;

impl Stack {
    /// The services wrapped in `layers`, the first added outermost (as with tower's
    /// `ServiceBuilder` and tonic's `Server::layer`).
    pub(super) fn new(services: Dispatch, layers: &[LayerFn]) -> Self {
        if layers.is_empty() {
            return Self::Bare(services);
        }
        Self::Layered(
            layers
                .iter()
                .rev()
                .fold(BoxCloneSyncService::new(services), |inner, layer| {
                    layer(inner)
                }),
        )
    }

    /// Runs a call, to its response.
    pub(super) fn call(&self, request: HttpRequest) -> StackFuture {
        use futures_util::future::Either;
        use tower::ServiceExt;
        match self {
            Self::Bare(services) => Either::Left(services.route(request)),
            Self::Layered(service) => Either::Right(service.clone().oneshot(request)),
        }
    }
}

/// For tonic's server on the TCP side, which calls each connection's clone of the stack as
/// any tower service, readiness first.
impl tower_service::Service<HttpRequest> for Stack {
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = StackFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            Self::Bare(_) => Poll::Ready(Ok(())),
            Self::Layered(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: HttpRequest) -> StackFuture {
        use futures_util::future::Either;
        match self {
            Self::Bare(services) => Either::Left(services.route(request)),
            // A boxed service's future is a `ResponseFuture` too.
            Self::Layered(service) => Either::Left(service.call(request)),
        }
    }
}

/// Turns a layer's errors into gRPC statuses, as tonic's server does: a layer that fails a
/// call (a timeout, a refused request) gives the client a status, never a broken stream.
struct Recover<S> {
    inner: S,
    /// An error from `poll_ready`, answered on the next call.
    not_ready: Option<tonic::Status>,
}

impl<S> Recover<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            not_ready: None,
        }
    }
}

impl<S: Clone> Clone for Recover<S> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready.
        Self::new(self.inner.clone())
    }
}

impl<S, B> tower_service::Service<HttpRequest> for Recover<S>
where
    S: tower_service::Service<HttpRequest, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<TonicBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(tonic::Status::from_error(e.into()));
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if let Some(status) = self.not_ready.take() {
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let call = self.inner.call(request);
        Box::pin(async move {
            Ok(match call.await {
                Ok(response) => response.map(TonicBody::new),
                // tonic's mapping: a Status the layer chose is kept; other errors are UNKNOWN
                // with their message.
                Err(e) => tonic::Status::from_error(e.into()).into_http(),
            })
        })
    }
}
