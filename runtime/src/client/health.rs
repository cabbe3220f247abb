//! Active health checks for the servers of a balanced channel
//! ([`ChannelBuilder::health_check`](super::ChannelBuilder::health_check)): every interval,
//! `grpc.health.v1.Health/Check` on the server's own connection. A server that answers
//! anything but SERVING, or does not answer within the interval (at least a second), gets no new calls until a
//! check says SERVING again.
//!
//! `Check` rather than `Watch`: a `Watch` stream never ends, so it would hold a draining
//! server's graceful shutdown open until its drain timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::{debug, warn};

use super::fallback::{Health, Router};
use super::{Channel, Inner};

/// What to check and how often: a [`ChannelBuilder`](super::ChannelBuilder) setting.
#[derive(Clone, Debug)]
pub(super) struct HealthCheck {
    /// The service name asked about ("" for the server as a whole).
    pub(super) service: String,
    pub(super) interval: Duration,
}

/// What the last check said of a server, shared by its endpoint and its checker.
#[derive(Debug, Default)]
pub(super) struct Verdict(AtomicU8);

/// The least time a check may take: an interval shorter than a slow link's round trip must
/// not fail every check.
const LEAST_DEADLINE: Duration = Duration::from_secs(1);

const UNKNOWN: u8 = 0;
const SERVING: u8 = 1;
const NOT_SERVING: u8 = 2;

impl Verdict {
    /// Whether the last check found the server not serving (or not answering).
    pub(super) fn not_serving(&self) -> bool {
        self.0.load(Ordering::Acquire) == NOT_SERVING
    }

    /// Forgets the last check: the server's connection is new.
    pub(super) fn forget(&self) {
        self.0.store(UNKNOWN, Ordering::Release);
    }

    fn set(&self, verdict: u8) {
        self.0.store(verdict, Ordering::Release);
    }
}

/// Checks the server behind `router` every interval while it has a connection up, until
/// `stop` is cancelled. A server without the health service (UNIMPLEMENTED) is not checked
/// again: it counts as serving.
pub(super) async fn run(
    router: Arc<Router>,
    check: HealthCheck,
    verdict: Arc<Verdict>,
    stop: CancellationToken,
) {
    let server = router.calls.authority.clone();
    let mut client = HealthClient::new(Channel {
        inner: Inner::One(router.clone()),
    });
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(check.interval) => {}
        }
        if router.health() != Health::Up {
            // Whether it is out is the connection's business; once it is back, the next
            // check decides.
            verdict.forget();
            continue;
        }
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: check.service.clone(),
        });
        request.set_timeout(check.interval.max(LEAST_DEADLINE));
        let answer = tokio::select! {
            () = stop.cancelled() => return,
            answer = client.check(request) => answer,
        };
        match answer {
            Ok(response) => {
                let status = response.into_inner().status();
                if status == ServingStatus::Serving {
                    verdict.set(SERVING);
                } else {
                    debug!(%server, ?status, service = %check.service, "not serving: no new calls");
                    verdict.set(NOT_SERVING);
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                warn!(%server, "no grpc.health.v1 service: not checked");
                verdict.forget();
                return;
            }
            Err(status) => {
                debug!(%server, "health check failed ({status}): no new calls");
                verdict.set(NOT_SERVING);
            }
        }
    }
}
