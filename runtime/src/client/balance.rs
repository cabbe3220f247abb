//! Client-side load balancing: a [`Channel`] over several servers, each with a channel of its
//! own (its QUIC/TCP fallback state, 0-RTT tickets and reconnect backoff), a policy that picks
//! one per call, ejection of servers whose connection fails or goes away, re-admission once
//! they connect again, and gRPC's transparent retry on another server.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::Status;
use tracing::{debug, warn};

use super::fallback::{Health, Router};
use super::health::{self, Verdict};
use super::quic::CallError;
use super::{Call, Channel, ChannelBuilder, ResponseBody, attempt, under_deadline};
use crate::Transport;
use crate::sync::lock;

/// How often servers that are out are tried again in the background, so that a server that
/// comes back gets calls again (each server's own reconnect backoff spaces the attempts).
const READMIT_INTERVAL: Duration = Duration::from_millis(250);

/// How a balanced [`Channel`] picks a server for each call, among those not ejected.
///
/// ```no_run
/// # async fn run(ca: quicrpc::tls::Certificate) {
/// use quicrpc::{Balance, Channel};
/// let servers = ["https://a.example:50051", "https://b.example:50051"]
///     .map(|uri| Channel::builder(uri).ca_certificate(ca.clone()));
/// let channel = Balance::RoundRobin.list(servers);
/// // let mut client = GreeterClient::new(channel);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// Two servers at random, and the one with fewer calls outstanding (the default; what
    /// tower's `p2c` balancer does).
    #[default]
    PowerOfTwoChoices,
    /// Each server in turn.
    RoundRobin,
    /// The first server in the list that is not ejected; the next one only while it is out.
    PickFirst,
}

/// A change to a balanced channel's servers, sent to [`Balance::channel`]'s sender.
#[derive(Debug)]
pub enum Change<K, V> {
    /// Adds the server `V` under key `K` (replacing the one under `K`, if any).
    Insert(K, V),
    /// Removes the server under key `K`. Calls under way on it finish.
    Remove(K),
}

impl Balance {
    /// A channel that spreads its calls over `endpoints`, a [`ChannelBuilder`] each (its TLS,
    /// fallback and connection settings apply to that server). Connects lazily: a server's
    /// connection is made by the first call that picks it. Must be called inside a Tokio
    /// runtime.
    ///
    /// A server whose connection fails, or which says GOAWAY, gets no new calls until it has
    /// connected again; it is tried again in the background, with its own reconnect backoff.
    /// A call that never reached a server (no connection to it, or its connection lost before
    /// the call's stream opened) goes once to another server, whatever its method; a call to
    /// a replay-safe method (`NO_SIDE_EFFECTS`, `IDEMPOTENT`) whose request is one message
    /// also goes to another server once if its connection is lost before the response
    /// starts. A call that fails otherwise for want of its server ends with UNAVAILABLE,
    /// and the message names the server.
    ///
    /// A builder that cannot make a channel (an invalid URI, say) is left out, with a
    /// warning in the log; with no server at all, calls fail with UNAVAILABLE.
    pub fn list(self, endpoints: impl IntoIterator<Item = ChannelBuilder>) -> Channel {
        let balancer = Balancer::new(self);
        for builder in endpoints {
            if let Some(endpoint) = Endpoint::build(builder) {
                lock(&balancer.endpoints).push(Arc::new(endpoint));
            }
        }
        Balancer::start(&balancer);
        Channel::balanced(balancer)
    }

    /// A balanced channel, as [`Balance::list`] makes, whose servers come and go through
    /// the returned sender ([`Change::Insert`], [`Change::Remove`]), which holds up to
    /// `capacity` changes not yet applied. Must be called inside a Tokio runtime.
    ///
    /// Until the first server is added, calls wait for it (within their deadline); once
    /// every sender is dropped, a channel left with no server fails calls with UNAVAILABLE.
    /// A removed server's calls under way finish on it.
    pub fn channel<K>(
        self,
        capacity: usize,
    ) -> (
        Channel,
        tokio::sync::mpsc::Sender<Change<K, ChannelBuilder>>,
    )
    where
        K: std::hash::Hash + Eq + Send + 'static,
    {
        let (balancer, changes) = self.fed(capacity);
        (Channel::balanced(balancer), changes)
    }

    /// [`Balance::channel`]'s balancer, before it is made a [`Channel`].
    pub(super) fn fed<K>(
        self,
        capacity: usize,
    ) -> (
        Arc<Balancer>,
        tokio::sync::mpsc::Sender<Change<K, ChannelBuilder>>,
    )
    where
        K: std::hash::Hash + Eq + Send + 'static,
    {
        let balancer = Balancer::new(self);
        Balancer::start(&balancer);
        balancer.open.store(true, Ordering::Release);
        let (tx, mut rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let weak = Arc::downgrade(&balancer);
        tokio::spawn(async move {
            let mut keys: HashMap<K, Arc<Endpoint>> = HashMap::new();
            while let Some(change) = rx.recv().await {
                let Some(balancer) = weak.upgrade() else {
                    return;
                };
                let _tell = ChangeNotice(&balancer);
                let mut endpoints = lock(&balancer.endpoints);
                match change {
                    Change::Insert(key, builder) => {
                        let Some(endpoint) = Endpoint::build(builder).map(Arc::new) else {
                            continue;
                        };
                        if let Some(old) = keys.insert(key, endpoint.clone()) {
                            endpoints.retain(|e| !Arc::ptr_eq(e, &old));
                        }
                        endpoints.push(endpoint);
                    }
                    Change::Remove(key) => {
                        if let Some(old) = keys.remove(&key) {
                            endpoints.retain(|e| !Arc::ptr_eq(e, &old));
                        }
                    }
                }
            }
            // Every sender is gone: the servers are final.
            if let Some(balancer) = weak.upgrade() {
                balancer.open.store(false, Ordering::Release);
                balancer.changed.notify_waiters();
            }
        });
        (balancer, tx)
    }
}

/// The servers of a balanced channel, and its policy.
pub(super) struct Balancer {
    policy: Balance,
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
    /// The next server for [`Balance::RoundRobin`].
    turn: AtomicUsize,
    /// A small generator for [`Balance::PowerOfTwoChoices`].
    seed: AtomicUsize,
    /// Servers may still be added ([`Balance::channel`], while a sender lives).
    open: AtomicBool,
    /// Told of each change to the servers.
    changed: tokio::sync::Notify,
    /// Told (one stored permit) when a call or a background attempt finds a server failing:
    /// a resolver resolves again.
    failures: Arc<tokio::sync::Notify>,
}

/// Tells a balancer's waiting calls, when dropped, that its servers have changed (after the
/// lock on them is released, as locals drop in reverse order).
struct ChangeNotice<'a>(&'a Balancer);

impl Drop for ChangeNotice<'_> {
    fn drop(&mut self) {
        self.0.changed.notify_waiters();
    }
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints = lock(&self.endpoints);
        f.debug_struct("Balancer")
            .field("policy", &self.policy)
            .field(
                "endpoints",
                &endpoints.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One server of a balanced channel.
struct Endpoint {
    /// Its authority, as errors name it.
    name: String,
    router: Arc<Router>,
    /// Calls sent to it whose response has not begun.
    outstanding: AtomicUsize,
    /// A background connection attempt is under way.
    readmitting: AtomicBool,
    /// What its last health check said (never NOT_SERVING without checks).
    verdict: Arc<Verdict>,
    /// Stops its health checks when it goes.
    _checks: Option<DropGuard>,
}

impl Endpoint {
    fn build(builder: ChannelBuilder) -> Option<Self> {
        let uri = builder.uri().to_owned();
        let checks = builder.health_checks().cloned();
        match builder.router() {
            Ok(router) => {
                let router = Arc::new(router);
                let verdict = Arc::new(Verdict::default());
                let checks = checks.map(|check| {
                    let stop = CancellationToken::new();
                    tokio::spawn(health::run(
                        router.clone(),
                        check,
                        verdict.clone(),
                        stop.clone(),
                    ));
                    stop.drop_guard()
                });
                Some(Self {
                    name: router.calls.authority.clone(),
                    router,
                    outstanding: AtomicUsize::new(0),
                    readmitting: AtomicBool::new(false),
                    verdict,
                    _checks: checks,
                })
            }
            Err(e) => {
                warn!(%uri, "left out of the balanced channel: {e}");
                None
            }
        }
    }

    /// Whether new calls may go to it: not out, and not being tried again in the
    /// background. A server that was out and is being tried again may be gone: a resumed
    /// connection to it counts as under way (calls could wait on it) until its handshake
    /// fails, which takes the connect timeout; it takes calls again once it connects.
    /// A server whose health check says it is not serving takes no new calls either.
    fn eligible(&self) -> bool {
        !self.readmitting.load(Ordering::Acquire)
            && !self.verdict.not_serving()
            && self.router.health() != Health::Out
    }
}

/// Counts a call as outstanding on its server while it waits for its response.
struct Outstanding<'a>(&'a AtomicUsize);

impl<'a> Outstanding<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balancer {
    fn new(policy: Balance) -> Arc<Self> {
        Arc::new(Self {
            policy,
            endpoints: Mutex::new(Vec::new()),
            turn: AtomicUsize::new(0),
            seed: AtomicUsize::new(0x9e37_79b9),
            open: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            failures: Arc::default(),
        })
    }

    /// Starts trying servers that are out again in the background, until the channel is
    /// dropped.
    fn start(balancer: &Arc<Self>) {
        let weak = Arc::downgrade(balancer);
        tokio::spawn(readmit(weak));
    }

    /// What is told when a server fails.
    pub(super) fn failures(&self) -> Arc<tokio::sync::Notify> {
        self.failures.clone()
    }

    /// The transport of the first server with a connection up.
    pub(super) fn transport(&self) -> Transport {
        let endpoints = lock(&self.endpoints);
        endpoints
            .iter()
            .find(|e| e.router.health() == Health::Up)
            .or(endpoints.first())
            .map_or(Transport::Quic, |e| e.router.transport())
    }

    /// The server for a call, by the policy, among those not ejected and not in `tried`;
    /// when every one left is out, among those left anyway (their reconnect backoff then
    /// decides).
    fn pick(&self, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        let endpoints = lock(&self.endpoints);
        let left = || {
            endpoints
                .iter()
                .filter(|e| !tried.iter().any(|t| Arc::ptr_eq(t, e)))
        };
        let mut candidates: Vec<&Arc<Endpoint>> = left().filter(|e| e.eligible()).collect();
        if candidates.is_empty() {
            candidates = left().collect();
        }
        match candidates.len() {
            0 => None,
            1 => candidates.first().map(|e| Arc::clone(e)),
            n => Some(Arc::clone(match self.policy {
                Balance::PickFirst => candidates[0],
                Balance::RoundRobin => candidates[self.turn.fetch_add(1, Ordering::Relaxed) % n],
                Balance::PowerOfTwoChoices => {
                    let a = self.random() % n;
                    let b = (a + 1 + self.random() % (n - 1)) % n;
                    let load = |i: usize| candidates[i].outstanding.load(Ordering::Relaxed);
                    candidates[if load(b) < load(a) { b } else { a }]
                }
            })),
        }
    }

    /// The server for a call: [`Balancer::pick`]'s, or, while a [`Balance::channel`] has no
    /// server yet and may still be given one, the first added (the call's deadline bounds
    /// the wait). `None` once there is none to try.
    ///
    /// Cancel-safe: it only waits.
    async fn server_for(&self, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(endpoint) = self.pick(tried) {
                return Some(endpoint);
            }
            let none_yet = tried.is_empty() && lock(&self.endpoints).is_empty();
            if !(none_yet && self.open.load(Ordering::Acquire)) {
                return None;
            }
            changed.await;
        }
    }

    /// A number for the random choices: xorshift over a shared state (statistical spread is
    /// all that is asked of it).
    fn random(&self) -> usize {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        x
    }
}

/// Tries servers that are out again (those whose backoff has passed), so that one that comes
/// back is re-admitted without a call having to fail on it first.
async fn readmit(weak: Weak<Balancer>) {
    loop {
        tokio::time::sleep(READMIT_INTERVAL).await;
        let Some(balancer) = weak.upgrade() else {
            return;
        };
        let endpoints = lock(&balancer.endpoints).clone();
        let failures = balancer.failures();
        drop(balancer);
        for endpoint in endpoints {
            if endpoint.router.health() != Health::Out
                || endpoint.router.backing_off()
                || endpoint.readmitting.swap(true, Ordering::AcqRel)
            {
                continue;
            }
            let failures = failures.clone();
            tokio::spawn(async move {
                match endpoint.router.connect_answered().await {
                    Ok(()) => {
                        // A check on its last connection no longer speaks for it.
                        endpoint.verdict.forget();
                        debug!(server = %endpoint.name, "re-admitted");
                    }
                    Err(e) => {
                        debug!(server = %endpoint.name, "still out: {e}");
                        failures.notify_one();
                    }
                }
                endpoint.readmitting.store(false, Ordering::Release);
            });
        }
    }
}

/// Runs one call on a balanced channel: on a server the policy picks, once more on another
/// if it never reached the first, or if it is replay-safe and its server vanished under it.
pub(super) async fn call(
    balancer: Arc<Balancer>,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<ResponseBody>, Status> {
    let mut call = Call::new(&request)?;
    let deadline = call.deadline;
    let attempts = async {
        // A request of one message is kept, so that it can be sent to another server if
        // its own refuses it unprocessed, or, for a replay-safe method, vanishes under it.
        let mut copy: Option<http::Request<Bytes>> = None;
        let mut request = request;
        if call.declared.one_message() {
            let buffered = super::quic::buffer_request(request)
                .await
                .map_err(CallError::Failed)?;
            request = buffered.clone().map(super::quic::full_body);
            copy = Some(buffered);
        }
        let replay_safe = call.declared.client_may_send() && copy.is_some();
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut failed: Option<Status> = None;
        loop {
            let Some(endpoint) = balancer.server_for(&tried).await else {
                return Err(CallError::Failed(failed.unwrap_or_else(|| {
                    Status::unavailable("no server: the balanced channel has none")
                })));
            };
            tried.push(endpoint.clone());
            let last = tried.len() >= 2;
            let result = {
                let _outstanding = Outstanding::new(&endpoint.outstanding);
                attempt(&endpoint.router, request, &mut call).await
            };
            if matches!(&result, Err(e) if e.server_failed()) {
                balancer.failures.notify_one();
            }
            match result {
                Ok(response) => return Ok(response),
                Err(CallError::NotStarted(unsent, status)) if !last => {
                    debug!(server = %endpoint.name, "call not sent ({status}): to another server");
                    failed = Some(naming(status, &endpoint.name));
                    request = *unsent;
                }
                Err(CallError::Unprocessed(status)) if !last => {
                    let Some(copy) = &copy else {
                        return Err(CallError::Failed(naming(status, &endpoint.name)));
                    };
                    debug!(server = %endpoint.name, "call refused unprocessed ({status}): to another server");
                    failed = Some(naming(status, &endpoint.name));
                    request = copy.clone().map(super::quic::full_body);
                }
                Err(CallError::Failed(status))
                    if !last && replay_safe && status.code() == tonic::Code::Unavailable =>
                {
                    let Some(copy) = &copy else {
                        return Err(CallError::Failed(naming(status, &endpoint.name)));
                    };
                    debug!(server = %endpoint.name, "replay-safe call lost ({status}): to another server");
                    failed = Some(naming(status, &endpoint.name));
                    request = copy.clone().map(super::quic::full_body);
                }
                Err(e) => return Err(CallError::Failed(naming(e.into_status(), &endpoint.name))),
            }
        }
    };
    let result = under_deadline(deadline, attempts)
        .await
        .map_err(CallError::into_status);
    call.finish(result, || balancer.transport())
}

/// `status`, naming the server when it says the server could not be reached or was lost.
fn naming(status: Status, server: &str) -> Status {
    if status.code() == tonic::Code::Unavailable {
        Status::new(
            status.code(),
            format!("server {server}: {}", status.message()),
        )
    } else {
        status
    }
}
