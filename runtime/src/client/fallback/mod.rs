//! Where a channel's calls go: the QUIC connection or the TCP one, the happy-eyeballs race
//! between them, the watch on a resumed connection's handshake, the background probe that
//! moves calls back to QUIC, the process-wide memory of servers reached only over TCP, and
//! the reconnect backoff.

mod backoff;
mod memory;
mod race;

use std::pin::pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, info};

use self::backoff::Backoff;
use self::memory::{forget_tcp, remember_tcp, remembered_tcp};
use self::race::{Raced, race};
use super::CallSettings;
use super::quic::{Conn, QuicConnector};
use super::tcp::TcpConnector;
use crate::error::chain;
use crate::stream::close_quietly;
use crate::sync::lock;
use crate::telemetry::transport_switch;
use crate::{Error, Transport};

/// Default head start QUIC gets before TCP is tried too.
pub(super) const DEFAULT_FALLBACK_DELAY: Duration = Duration::from_millis(250);
/// Default time a fallback to TCP is remembered per server.
pub(super) const DEFAULT_FALLBACK_MEMORY: Duration = Duration::from_secs(300);
/// Default interval between background QUIC probes while on TCP.
pub(super) const DEFAULT_QUIC_PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Which transports a [`Channel`](crate::Channel) may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fallback {
    /// QUIC when it works, gRPC over TCP when it does not (the default). The two are raced
    /// happy-eyeballs style: QUIC starts first, TCP after a head start
    /// ([`ChannelBuilder::fallback_delay`](crate::ChannelBuilder::fallback_delay)) or as soon
    /// as QUIC fails; the first to connect is used, QUIC if both do. While on TCP, QUIC is
    /// probed in the background and new calls move back to it once it works.
    #[default]
    Auto,
    /// QUIC only; calls fail with UNAVAILABLE when QUIC cannot connect.
    QuicOnly,
    /// gRPC over TCP only.
    TcpOnly,
}

/// How a channel chooses and switches transports.
#[derive(Clone, Copy, Debug)]
pub(super) struct FallbackSettings {
    pub(super) policy: Fallback,
    /// QUIC's head start in the race.
    pub(super) delay: Duration,
    /// How long a fallback to TCP is remembered for the server.
    pub(super) memory: Duration,
    /// How often QUIC is probed while on TCP.
    pub(super) probe_interval: Duration,
}

impl Default for FallbackSettings {
    fn default() -> Self {
        Self {
            policy: Fallback::Auto,
            delay: DEFAULT_FALLBACK_DELAY,
            memory: DEFAULT_FALLBACK_MEMORY,
            probe_interval: DEFAULT_QUIC_PROBE_INTERVAL,
        }
    }
}

/// A server's standing with a balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// A connection is up: calls go here.
    Up,
    /// Never connected, and not waiting to reconnect: calls may go here (the first connects).
    Untried,
    /// Its connection failed, closed or is going away (GOAWAY), or its last attempt to
    /// connect failed: no new calls until it connects again.
    Out,
}

/// Where a call goes.
pub(super) enum Route {
    Quic(Conn),
    Tcp(tonic::transport::Channel),
}

/// A channel's connections, shared by its clones, and the rules for making new ones.
pub(super) struct Router {
    quic: Option<QuicConnector>,
    tcp: Option<TcpConnector>,
    /// What every call on the channel is sent with.
    pub(super) calls: CallSettings,
    settings: FallbackSettings,
    state: Mutex<State>,
    /// Held while connecting, so that concurrent calls wait for one attempt.
    connecting: tokio::sync::Mutex<()>,
    /// Cancelled when the last clone of the channel is dropped, so background tasks let go
    /// of the connection and it closes once no call uses it.
    dropped: CancellationToken,
}

#[derive(Default)]
struct State {
    quic: Option<Conn>,
    tcp: Option<tonic::transport::Channel>,
    probing: bool,
    backoff: Backoff,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

impl Router {
    pub(super) fn new(
        quic: Option<QuicConnector>,
        tcp: Option<TcpConnector>,
        calls: CallSettings,
        settings: FallbackSettings,
    ) -> Self {
        Self {
            quic,
            tcp,
            calls,
            settings,
            state: Mutex::new(State::default()),
            connecting: tokio::sync::Mutex::new(()),
            dropped: CancellationToken::new(),
        }
    }

    pub(super) fn policy(&self) -> Fallback {
        self.settings.policy
    }

    pub(super) fn quic(&self) -> Option<&QuicConnector> {
        self.quic.as_ref()
    }

    /// The QUIC connection, if one is up.
    pub(super) fn quic_connection(&self) -> Option<quinn::Connection> {
        lock(&self.state).quic.as_ref().map(|c| c.quic.clone())
    }

    /// Whether new calls should come here, as a balancer sees it.
    pub(super) fn health(&self) -> Health {
        let state = lock(&self.state);
        // A resumed connection is up only once its handshake has completed: before, it may
        // be a ticket's promise to a server that is gone.
        let quic_up = state
            .quic
            .as_ref()
            .is_some_and(|c| c.usable() && !c.in_early_data());
        if quic_up || state.tcp.is_some() {
            return Health::Up;
        }
        if state.quic.as_ref().is_some_and(|c| c.usable()) {
            // Its handshake is under way: calls that may wait for it can come.
            return Health::Untried;
        }
        // Out from a failed attempt until one succeeds (the balancer's background attempts,
        // spaced by the backoff), so that calls are not sent to find out again.
        if state.backoff.failing() {
            return Health::Out;
        }
        match &state.quic {
            // Closed, or the server said GOAWAY: out until a new connection is made.
            Some(_) => Health::Out,
            None => Health::Untried,
        }
    }

    /// Whether a reconnect is waiting for its backoff to pass.
    pub(super) fn backing_off(&self) -> bool {
        lock(&self.state).backoff.waiting(Instant::now()).is_some()
    }

    /// The transport new calls use: the one connected now, or, when nothing is connected,
    /// the one the policy tries first.
    pub(super) fn transport(&self) -> Transport {
        let state = lock(&self.state);
        match (&state.quic, &state.tcp, self.settings.policy) {
            (Some(conn), _, _) if conn.usable() => conn.transport(),
            (_, Some(_), _) | (_, _, Fallback::TcpOnly) => Transport::Tcp,
            _ => self
                .quic
                .as_ref()
                .map_or(Transport::Quic, QuicConnector::transport),
        }
    }

    /// Connects now, by the policy.
    pub(super) async fn connect(self: &Arc<Self>) -> Result<(), Error> {
        let _one_at_a_time = self.connecting.lock().await;
        self.establish().await.map(drop)
    }

    /// Connects now, as [`connect`](Self::connect), and waits for a resumed QUIC connection's
    /// handshake too (the connect timeout bounds it): a server tried again after it was out
    /// counts as back only once it has answered. A resumed connection whose handshake fails
    /// counts as a failed attempt for the backoff.
    pub(super) async fn connect_answered(self: &Arc<Self>) -> Result<(), Error> {
        let route = {
            let _one_at_a_time = self.connecting.lock().await;
            self.establish().await?
        };
        let Route::Quic(conn) = route else {
            return Ok(());
        };
        let answered = conn.handshake_completed().await;
        if answered.is_err() {
            lock(&self.state).backoff.failed(Instant::now());
        }
        answered
    }

    /// A route for a call with `deadline`: the current one, or a new connection by the
    /// policy. A call without a deadline fails fast with UNAVAILABLE while a reconnect is
    /// backing off; one with a deadline waits for the next attempt, if it comes before the
    /// deadline. A call whose deadline passes before it has a route never started:
    /// UNAVAILABLE.
    pub(super) async fn route(
        self: &Arc<Self>,
        deadline: Option<Instant>,
    ) -> Result<Route, Status> {
        if let Some(route) = self.current_route() {
            return Ok(route);
        }
        // Connecting is a large future (handshakes, the race between transports): boxed, so
        // that every call's future does not carry its size, and copy it, for the rare call
        // that connects.
        crate::sync::boxed(|| self.route_connecting(deadline)).await
    }

    /// [`route`](Self::route) when no route is up now.
    async fn route_connecting(
        self: &Arc<Self>,
        deadline: Option<Instant>,
    ) -> Result<Route, Status> {
        loop {
            let attempt = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.route_now())
                    .await
                    .map_err(|_| Status::unavailable("deadline passed while connecting"))?,
                None => self.route_now().await,
            };
            match attempt {
                Ok(route) => return Ok(route),
                Err(Unreachable { status, retry_at }) => match deadline {
                    Some(deadline) if retry_at < deadline => {
                        debug!(
                            "{}: retrying at the next reconnect attempt",
                            status.message()
                        );
                        tokio::time::sleep_until(retry_at).await;
                    }
                    _ => return Err(status),
                },
            }
        }
    }

    /// The route new calls take now, if one is up. QUIC wins whenever it is up.
    fn current_route(&self) -> Option<Route> {
        let state = lock(&self.state);
        match (&state.quic, &state.tcp) {
            (Some(conn), _) if conn.usable() => Some(Route::Quic(conn.clone())),
            (_, Some(tcp)) => Some(Route::Tcp(tcp.clone())),
            _ => None,
        }
    }

    /// The current route, or one connection attempt unless a reconnect is backing off.
    async fn route_now(self: &Arc<Self>) -> Result<Route, Unreachable> {
        if let Some(route) = self.current_route() {
            return Ok(route);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(route) = self.current_route() {
            return Ok(route);
        }
        if let Some(retry_at) = lock(&self.state).backoff.waiting(Instant::now()) {
            let status = Status::unavailable("server unreachable: waiting to reconnect");
            return Err(Unreachable { status, retry_at });
        }
        self.establish().await.map_err(|e| Unreachable {
            status: Status::unavailable(format!("cannot reach server: {}", chain(&e))),
            retry_at: lock(&self.state)
                .backoff
                .retry_at()
                .unwrap_or_else(Instant::now),
        })
    }

    /// Connects by the policy (the caller holds `connecting`) and installs the result.
    async fn establish(self: &Arc<Self>) -> Result<Route, Error> {
        let result = match (self.settings.policy, &self.quic, &self.tcp) {
            (Fallback::QuicOnly, Some(quic), _) => {
                quic.connect(self.dropped.clone()).await.map(Route::Quic)
            }
            (Fallback::TcpOnly, _, Some(tcp)) => tcp.connect().await.map(Route::Tcp),
            (Fallback::Auto, Some(quic), Some(tcp)) => self.race(quic, tcp).await,
            _ => Err(Error::config("no transport for this policy")),
        };
        let mut state = lock(&self.state);
        match &result {
            Ok(Route::Quic(conn)) => {
                state.quic = Some(conn.clone());
                state.tcp = None;
            }
            Ok(Route::Tcp(tcp)) => state.tcp = Some(tcp.clone()),
            Err(e) => {
                let retry_at = state.backoff.failed(Instant::now());
                debug!(calls = %self.calls.authority, ?retry_at, "connecting failed: {e}");
            }
        }
        if result.is_ok() {
            state.backoff = Backoff::default();
        }
        result
    }

    /// Happy eyeballs between QUIC and TCP, unless this server was recently reached only over
    /// TCP.
    async fn race(
        self: &Arc<Self>,
        quic: &QuicConnector,
        tcp: &TcpConnector,
    ) -> Result<Route, Error> {
        let authority = &self.calls.authority;
        if remembered_tcp(authority) {
            let channel = tcp.connect().await?;
            info!(%authority, "using gRPC over TCP: QUIC failed recently for this server");
            transport_switch(Transport::Tcp, "remembered");
            self.start_probe(None);
            return Ok(Route::Tcp(channel));
        }
        let quic_attempt = quic.connect(self.dropped.clone());
        match race(quic_attempt, tcp.connect(), self.settings.delay).await? {
            Raced::Quic(conn) => {
                if conn.in_early_data() {
                    self.watch_early_handshake(conn.clone(), tcp.clone());
                }
                Ok(Route::Quic(conn))
            }
            Raced::TcpAfterQuicFailed(channel, quic_err) => {
                self.fell_back(&quic_err.to_string(), false);
                Ok(Route::Tcp(channel))
            }
            Raced::TcpWhileQuicSlow(channel) => {
                // Use TCP now, and probe QUIC again in the background right away; once it
                // connects, new calls move to QUIC.
                let delay = self.settings.delay;
                self.fell_back(&format!("no QUIC handshake within {delay:?}"), true);
                Ok(Route::Tcp(channel))
            }
        }
    }

    /// A resumed QUIC connection is used before its handshake completes, so the race cannot
    /// judge it. If its handshake has not completed after the fallback delay (UDP blocked
    /// since the session began, say), TCP is tried too; if TCP connects first, new calls go
    /// over TCP and the QUIC connection is closed. Calls on it start again over TCP: those
    /// that went out as early data are replay-safe, and the others had not started.
    fn watch_early_handshake(self: &Arc<Self>, conn: Conn, tcp: TcpConnector) {
        let weak = Arc::downgrade(self);
        let dropped = self.dropped.clone();
        let delay = self.settings.delay;
        tokio::spawn(async move {
            let mut over = pin!(conn.handshake_over());
            tokio::select! {
                () = &mut over => return,
                () = dropped.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            let channel = tokio::select! {
                () = &mut over => return,
                () = dropped.cancelled() => return,
                result = tcp.connect() => match result {
                    Ok(channel) => channel,
                    Err(e) => {
                        debug!("TCP failed too while a QUIC handshake was slow: {e}");
                        return;
                    }
                },
            };
            let Some(router) = weak.upgrade() else { return };
            if !conn.in_early_data() {
                return;
            }
            conn.retire();
            lock(&router.state).tcp = Some(channel);
            close_quietly(&conn.quic, "handshake too slow: using TCP");
            router.fell_back(&format!("no QUIC handshake within {delay:?}"), true);
        });
    }

    /// Records a fallback to TCP and starts probing QUIC: right away if QUIC was merely slow,
    /// after an interval if it failed.
    fn fell_back(self: &Arc<Self>, reason: &str, probe_now: bool) {
        let authority = &self.calls.authority;
        info!(%authority, reason, "falling back to gRPC over TCP");
        let why = if probe_now {
            "quic_slow"
        } else {
            "quic_failed"
        };
        transport_switch(Transport::Tcp, why);
        remember_tcp(authority, Instant::now() + self.settings.memory);
        self.start_probe(probe_now.then_some(Duration::ZERO));
    }

    /// Probes QUIC in the background until it connects, then moves new calls to it.
    fn start_probe(self: &Arc<Self>, first_delay: Option<Duration>) {
        {
            let mut state = lock(&self.state);
            if state.probing {
                return;
            }
            state.probing = true;
        }
        let weak = Arc::downgrade(self);
        let dropped = self.dropped.clone();
        let first_delay = first_delay.unwrap_or(self.settings.probe_interval);
        tokio::spawn(async move {
            tokio::select! {
                () = dropped.cancelled() => {}
                () = probe_quic(weak, first_delay) => {}
            }
        });
    }
}

/// No route now, and when the next connection attempt may be made.
struct Unreachable {
    status: Status,
    retry_at: Instant,
}

/// Tries QUIC every probe interval until a handshake completes, then makes it the route.
/// Cancelled when the channel is dropped; it holds the router only while it works on it.
async fn probe_quic(weak: Weak<Router>, first_delay: Duration) {
    let mut delay = first_delay;
    loop {
        tokio::time::sleep(delay).await;
        let Some(router) = weak.upgrade() else { return };
        delay = router.settings.probe_interval;
        let Some(quic) = &router.quic else { return };
        let attempt = async {
            let conn = quic.connect(router.dropped.clone()).await?;
            // A resumed connection comes back before its handshake is done: a probe counts
            // only a completed one.
            conn.handshake_completed().await.map(|()| conn)
        };
        let authority = &router.calls.authority;
        match attempt.await {
            Ok(conn) => {
                let mut state = lock(&router.state);
                state.quic = Some(conn);
                // Calls in flight on TCP keep their own handle and finish there.
                state.tcp = None;
                state.probing = false;
                drop(state);
                forget_tcp(authority);
                info!(%authority, "QUIC works again: new calls use QUIC");
                transport_switch(Transport::Quic, "probe_succeeded");
                return;
            }
            Err(e) => debug!(%authority, "QUIC probe failed: {e}"),
        }
    }
}
