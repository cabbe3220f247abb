//! The services a server serves, and a call's way to its service: by the service name in its
//! path, `/package.Service/Method`, the way tonic's `Routes` route it.
//!
//! tonic's `Routes` is an axum router: each call went through axum's path matcher, its
//! URL-parameter extension, a body converted to axum's and back, and four boxed futures, 10
//! allocations in all before the generated service saw it (docs/benchmarks.md). A gRPC path
//! needs none of that: its first segment names the service, and the service matches the
//! method.

use std::any::Any;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::IntoResponse;
use tonic::body::Body as TonicBody;
use tonic::server::NamedService;
use tower::ServiceExt;

use super::layers::HttpRequest;

type Response = http::Response<TonicBody>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// One service, its type erased.
trait Serve: Send + Sync {
    /// Runs a call on a clone of the service, once the clone is ready.
    fn serve(&self, request: HttpRequest) -> ResponseFuture;
}

impl<S> Serve for S
where
    S: tower_service::Service<HttpRequest, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: IntoResponse + 'static,
    S::Future: Send + 'static,
{
    fn serve(&self, request: HttpRequest) -> ResponseFuture {
        let service = self.clone();
        Box::pin(async move {
            let Ok(response) = service.oneshot(request).await;
            Ok(into_tonic_response(response))
        })
    }
}

/// A service's response as tonic's: as it is when it already is one (every generated
/// service's), through axum's `IntoResponse` otherwise.
fn into_tonic_response<R: IntoResponse + 'static>(response: R) -> Response {
    let mut slot = Some(response);
    if let Some(tonic) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Response>>()
        && let Some(response) = tonic.take()
    {
        return response;
    }
    match slot {
        Some(other) => other.into_response().map(TonicBody::new),
        None => unreachable!("taken only when it is tonic's response, which returned"),
    }
}

/// The services added to a server builder, by name.
#[derive(Default)]
pub(super) struct Services {
    by_name: HashMap<&'static str, Arc<dyn Serve>>,
}

impl Services {
    /// Adds `service` under its [`NamedService::NAME`].
    ///
    /// # Panics
    ///
    /// If a service of that name was added already, as tonic's router does.
    pub(super) fn add<S>(&mut self, service: S)
    where
        S: tower_service::Service<HttpRequest, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        let previous = self.by_name.insert(S::NAME, Arc::new(service));
        assert!(
            previous.is_none(),
            "a service named {:?} was added twice",
            S::NAME
        );
    }

    /// The services as one `tower` service.
    pub(super) fn dispatch(self) -> Dispatch {
        Dispatch {
            by_name: Arc::new(self.by_name),
        }
    }
}

/// Hands each call to the service its path names; UNIMPLEMENTED when none does.
#[derive(Clone)]
pub(super) struct Dispatch {
    by_name: Arc<HashMap<&'static str, Arc<dyn Serve>>>,
}

impl Dispatch {
    fn service_for(&self, path: &str) -> Option<&Arc<dyn Serve>> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if method.is_empty() {
            return None;
        }
        self.by_name.get(service)
    }
}

impl tower_service::Service<HttpRequest> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call waits for its own clone of its service to be ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequest) -> ResponseFuture {
        match self.service_for(request.uri().path()) {
            Some(service) => service.serve(request),
            None => Box::pin(std::future::ready(Ok(unimplemented()))),
        }
    }
}

/// What tonic's router answers for a service it does not have: UNIMPLEMENTED, with no
/// message.
fn unimplemented() -> Response {
    let (parts, ()) = tonic::Status::unimplemented("")
        .into_http::<()>()
        .into_parts();
    http::Response::from_parts(parts, TonicBody::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Named;

    impl NamedService for Named {
        const NAME: &'static str = "pkg.Svc";
    }

    impl tower_service::Service<HttpRequest> for Named {
        type Response = Response;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: HttpRequest) -> Self::Future {
            let mut response = Response::new(TonicBody::empty());
            let path = http::HeaderValue::from_str(request.uri().path()).unwrap();
            response.headers_mut().insert("x-path", path);
            std::future::ready(Ok(response))
        }
    }

    async fn call(dispatch: &mut Dispatch, path: &str) -> Response {
        let request = http::Request::builder()
            .uri(path)
            .body(TonicBody::empty())
            .unwrap();
        let Ok(response) = tower_service::Service::call(dispatch, request).await;
        response
    }

    /// A path reaches the service its first segment names, whole; any other path, and a
    /// path that names a service but no method, is UNIMPLEMENTED (gRPC status 12).
    #[tokio::test]
    async fn a_call_goes_to_the_service_its_path_names() {
        let mut services = Services::default();
        services.add(Named);
        let mut dispatch = services.dispatch();
        let response = call(&mut dispatch, "/pkg.Svc/Method").await;
        assert_eq!(response.headers()["x-path"], "/pkg.Svc/Method");
        for path in [
            "/pkg.Other/Method",
            "/pkg.Svc/",
            "/pkg.Svc",
            "/",
            "/pkg.SvcX/Method",
        ] {
            let response = call(&mut dispatch, path).await;
            assert_eq!(response.headers()["grpc-status"], "12", "{path}");
            assert!(response.headers().get("x-path").is_none(), "{path}");
        }
    }

    #[test]
    #[should_panic(expected = "added twice")]
    fn a_service_name_is_served_once() {
        let mut services = Services::default();
        services.add(Named);
        services.add(Named);
    }

    /// A response that is not tonic's own still arrives, through `IntoResponse`.
    #[test]
    fn other_responses_convert() {
        let response = into_tonic_response((http::StatusCode::IM_A_TEAPOT, "tea"));
        assert_eq!(response.status(), http::StatusCode::IM_A_TEAPOT);
        let same = into_tonic_response(Response::new(TonicBody::empty()));
        assert_eq!(same.status(), http::StatusCode::OK);
    }
}
