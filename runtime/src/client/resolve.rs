//! Discovery for balanced channels: a [`Resolve`] says where a service's servers are now
//! (DNS with [`Dns`], or anything else), and a task keeps the channel's servers in step with
//! it: every interval, at once (at most once a second) when a server fails, and with backoff
//! while resolving fails.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::balance::{Balance, Balancer, Change};
use super::{Channel, ChannelBuilder};
use crate::Error;

/// How often a resolved channel resolves again when nothing asks it to sooner.
pub(super) const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// The soonest a server's failure makes the channel resolve again after the last time.
const SOONEST_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// The first wait after resolving failed; it doubles up to the interval.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Where a service's servers are: what a resolved balanced channel
/// ([`Balance::resolve`]) asks, again and again, to keep its servers in step.
///
/// ```no_run
/// use std::future::Future;
/// use std::net::SocketAddr;
/// use std::pin::Pin;
///
/// /// Servers from a config file, read again each time.
/// struct FromFile(std::path::PathBuf);
///
/// impl quicrpc::Resolve for FromFile {
///     fn resolve(
///         &self,
///     ) -> Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, quicrpc::Error>> + Send + '_>> {
///         Box::pin(async move {
///             let text = std::fs::read_to_string(&self.0).map_err(|source| {
///                 quicrpc::Error::Resolve { host: self.0.display().to_string(), source }
///             })?;
///             Ok(text.lines().filter_map(|line| line.trim().parse().ok()).collect())
///         })
///     }
/// }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The servers' addresses now. An error keeps the servers the channel has, and it
    /// tries again with backoff.
    fn resolve(&self) -> Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, Error>> + Send + '_>>;
}

/// Every address a DNS name resolves to (A and AAAA records, through the system's resolver:
/// `getaddrinfo`, which honours `/etc/hosts` and the search domains a Kubernetes pod is
/// given), at one port.
#[derive(Clone, Debug)]
pub struct Dns {
    host: String,
    port: u16,
}

impl Dns {
    /// The addresses of `host`, at `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl Resolve for Dns {
    fn resolve(&self) -> Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, Error>> + Send + '_>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|source| Error::Resolve {
                    host: self.host.clone(),
                    source,
                })?;
            Ok(addrs.collect())
        })
    }
}

impl Balance {
    /// A balanced channel over the addresses `host` resolves to in DNS, at the port of
    /// `template`'s URI (`https://host[:port]`), each reached with `template`'s settings
    /// and its certificate checked against `host` (or `template`'s
    /// [`domain_name`](ChannelBuilder::domain_name)). Resolved again every 30 s, at once
    /// (at most once a second) when a server fails, and with backoff while resolving
    /// fails; see [`Balance::resolve`].
    pub fn dns(self, template: ChannelBuilder) -> Result<Channel, Error> {
        let target = template.target()?;
        let dns = Dns::new(target.host, target.port);
        self.resolve(template, dns, DEFAULT_RESOLVE_INTERVAL)
    }

    /// A balanced channel whose servers are the addresses `resolver` gives, each reached
    /// with `template`'s settings, its certificate checked against `template`'s host (or
    /// its [`domain_name`](ChannelBuilder::domain_name)). It resolves at once, then every
    /// `interval`, and sooner (at most once a second) when a server fails; while resolving
    /// fails it keeps the servers it has and tries again, 100 ms later at first, doubling up
    /// to `interval`. Servers that appear get calls; those that disappear get no new ones,
    /// and their calls under way finish. Until the first answer, calls wait for it within
    /// their deadline. Must be called inside a Tokio runtime.
    pub fn resolve(
        self,
        template: ChannelBuilder,
        resolver: impl Resolve,
        interval: Duration,
    ) -> Result<Channel, Error> {
        let target = template.target()?;
        let template = template.domain_name(target.server_name);
        let (balancer, changes) = self.fed::<SocketAddr>(64);
        let feeding = Feed {
            resolver,
            template,
            changes,
            balancer: Arc::downgrade(&balancer),
            interval: interval.max(SOONEST_AFTER_FAILURE),
        };
        tokio::spawn(feeding.run());
        Ok(Channel::balanced(balancer))
    }
}

/// Keeps a balanced channel's servers in step with a resolver.
struct Feed<R> {
    resolver: R,
    template: ChannelBuilder,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, ChannelBuilder>>,
    balancer: Weak<Balancer>,
    interval: Duration,
}

impl<R: Resolve> fmt::Debug for Feed<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<R: Resolve> Feed<R> {
    /// Resolves until the channel is gone.
    async fn run(self) {
        let mut servers: HashSet<SocketAddr> = HashSet::new();
        let mut retry = FIRST_RETRY;
        loop {
            let resolved_at = Instant::now();
            let next = match self.resolver.resolve().await {
                Ok(addrs) => {
                    retry = FIRST_RETRY;
                    if !self.apply(&mut servers, addrs).await {
                        return;
                    }
                    resolved_at + self.interval
                }
                Err(e) => {
                    debug!("resolving failed, trying again in {retry:?}: {e}");
                    let next = resolved_at + retry;
                    retry = (retry * 2).min(self.interval);
                    next
                }
            };
            let Some(balancer) = self.balancer.upgrade() else {
                return;
            };
            let failures = balancer.failures();
            drop(balancer);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = failures.notified() => {
                    // A failure: resolve again, but not more than once a second.
                    tokio::time::sleep_until(resolved_at + SOONEST_AFTER_FAILURE).await;
                }
            }
        }
    }

    /// Adds the new addresses and removes the gone ones; `false` once the channel is gone.
    async fn apply(&self, servers: &mut HashSet<SocketAddr>, addrs: Vec<SocketAddr>) -> bool {
        let now: HashSet<SocketAddr> = addrs.into_iter().collect();
        for gone in servers.difference(&now) {
            if self.changes.send(Change::Remove(*gone)).await.is_err() {
                return false;
            }
        }
        for new in now.difference(servers) {
            let builder = self.template.clone().with_uri(format!("https://{new}"));
            if self
                .changes
                .send(Change::Insert(*new, builder))
                .await
                .is_err()
            {
                return false;
            }
        }
        *servers = now;
        true
    }
}
