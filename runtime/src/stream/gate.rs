//! [`WriteGate`]: priority at admission into quinn's send buffer.
//!
//! quinn orders the data it has buffered by stream priority, but the buffer itself (the
//! connection's send window) and the peer's connection-level flow-control credit are shared
//! by every stream. When bulk calls keep both full, an urgent call's write waits for room
//! like any other, and when room appears every waiting writer is woken at once: whichever
//! task runs first takes it, most often a bulk one, since there are more of them. The gate
//! closes that gap: while a write of some priority is waiting for room, writes of less urgent
//! priorities on the same connection hold back and leave the room to it.
//!
//! A waiting write holds the others back for a bounded time only ([`hold`]): it may be waiting
//! for its own stream's credit (a peer that does not read), which no other writer can free,
//! and a gate held by such a write would stall the connection.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::Priority;
use crate::sync::lock;
use crate::telemetry::Side;

/// A waiting write holds less urgent writes back for at least this long...
const MIN_HOLD: Duration = Duration::from_millis(5);
/// ...and at most this long, whatever the round trip.
const MAX_HOLD: Duration = Duration::from_secs(1);

/// How long a waiting write holds less urgent ones back: two round trips (room comes back as
/// the peer acknowledges data and reads it), within [[`MIN_HOLD`], [`MAX_HOLD`]].
fn hold(rtt: Duration) -> Duration {
    (rtt * 2).clamp(MIN_HOLD, MAX_HOLD)
}

/// Urgency as an index into [`Priority::ALL`]: 0 is the most urgent.
fn rank(priority: Priority) -> u8 {
    match priority {
        Priority::Critical => 0,
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
        Priority::Bulk => 4,
    }
}

/// The bits of `blocked` mask for ranks more urgent than `rank`.
fn more_urgent(rank: u8) -> u8 {
    (1u8 << rank) - 1
}

/// One connection's gate, shared by the sending halves of its streams.
pub(crate) struct WriteGate {
    /// A bit per rank with a waiting write that still holds others back: the fast path
    /// reads it without the lock.
    mask: AtomicU8,
    state: Mutex<State>,
    /// The connection, for its round trip time (only when a write waits).
    conn: Option<quinn::Connection>,
    side: Side,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiting>,
    /// Writes held back, to wake when a waiting write gets its room or stops holding.
    held: Vec<Waker>,
    next_id: u64,
}

/// A write that waits for room in quinn.
struct Waiting {
    id: u64,
    rank: u8,
    /// When it stops holding less urgent writes back.
    until: Instant,
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGate")
            .field("mask", &self.mask.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WriteGate {
    /// The gate of `conn`'s streams.
    pub(crate) fn new(conn: &quinn::Connection, side: Side) -> Arc<Self> {
        Arc::new(Self::with_conn(Some(conn.clone()), side))
    }

    /// A gate for a stream outside any connection's gate (control streams): nothing waits
    /// on it but the stream itself.
    pub(crate) fn detached(side: Side) -> Arc<Self> {
        Arc::new(Self::with_conn(None, side))
    }

    fn with_conn(conn: Option<quinn::Connection>, side: Side) -> Self {
        Self {
            mask: AtomicU8::new(0),
            state: Mutex::new(State::default()),
            conn,
            side,
        }
    }

    /// Which side of the connection this is, for metrics.
    pub(crate) fn side(&self) -> Side {
        self.side
    }

    /// If a more urgent write than one of `priority` waits for room: when the first such
    /// write stops holding others back. `waker` is then woken when a waiting write gets its
    /// room. None: go ahead.
    pub(crate) fn held_until(&self, priority: Priority, waker: &Waker) -> Option<Instant> {
        let rank = rank(priority);
        if self.mask.load(Ordering::Acquire) & more_urgent(rank) == 0 {
            return None;
        }
        let now = Instant::now();
        let mut state = lock(&self.state);
        let mut released = Vec::new();
        if state.waiting.iter().any(|w| w.until <= now) {
            state.waiting.retain(|w| w.until > now);
            self.store_mask(&state);
            if state.waiting.is_empty() {
                // Nothing holds anyone back now: let every held writer look again, and keep
                // no wakers of tasks that may be long gone.
                released = std::mem::take(&mut state.held);
            }
        }
        let until = state
            .waiting
            .iter()
            .filter(|w| w.rank < rank)
            .map(|w| w.until)
            .min();
        if until.is_some() && !state.held.iter().any(|w| w.will_wake(waker)) {
            state.held.push(waker.clone());
        }
        drop(state);
        released.into_iter().for_each(Waker::wake);
        until
    }

    /// Records that a write of `priority` waits for room in quinn; it holds less urgent
    /// writes back until the returned guard drops, or for [`hold`] at most.
    pub(crate) fn wait(self: &Arc<Self>, priority: Priority) -> Option<WaitGuard> {
        let rank = rank(priority);
        if usize::from(rank) + 1 == Priority::ALL.len() {
            // Nothing is less urgent than the least urgent.
            return None;
        }
        let rtt = self
            .conn
            .as_ref()
            .map_or(Duration::ZERO, quinn::Connection::rtt);
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.push(Waiting {
            id,
            rank,
            until: Instant::now() + hold(rtt),
        });
        self.store_mask(&state);
        Some(WaitGuard {
            gate: self.clone(),
            id,
        })
    }

    fn store_mask(&self, state: &State) {
        let mask = state.waiting.iter().fold(0u8, |m, w| m | 1 << w.rank);
        self.mask.store(mask, Ordering::Release);
    }

    fn done(&self, id: u64) {
        let held = {
            let mut state = lock(&self.state);
            let before = state.waiting.len();
            state.waiting.retain(|w| w.id != id);
            if state.waiting.len() == before {
                return;
            }
            self.store_mask(&state);
            std::mem::take(&mut state.held)
        };
        for waker in held {
            waker.wake();
        }
    }
}

/// A write waiting for room; dropping it lets less urgent writes go.
pub(crate) struct WaitGuard {
    gate: Arc<WriteGate>,
    id: u64,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.gate.done(self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_write_holds_back_only_less_urgent_ones() {
        let gate = WriteGate::detached(Side::Client);
        let (woken, waker) = counting_waker();
        assert_eq!(gate.held_until(Priority::Bulk, &waker), None);

        let high = gate.wait(Priority::High).expect("high holds others back");
        for go in [Priority::Critical, Priority::High] {
            assert_eq!(gate.held_until(go, &waker), None, "{go:?}");
        }
        for held in [Priority::Normal, Priority::Low, Priority::Bulk] {
            assert!(gate.held_until(held, &waker).is_some(), "{held:?}");
        }
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);

        drop(high);
        // One waker, registered once, woken once.
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(gate.held_until(Priority::Bulk, &waker), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_write_holds_others_back_for_a_bounded_time() {
        let gate = WriteGate::detached(Side::Server);
        let (woken, waker) = counting_waker();
        let _critical = gate.wait(Priority::Critical).expect("critical holds");
        let until = gate
            .held_until(Priority::Bulk, &waker)
            .expect("bulk is held back");
        assert_eq!(until - Instant::now(), MIN_HOLD);
        tokio::time::advance(MIN_HOLD).await;
        assert_eq!(gate.held_until(Priority::Bulk, &waker), None);
        assert!(
            lock(&gate.state).held.is_empty(),
            "no wakers kept once nothing holds"
        );
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "the held writer was told"
        );
    }

    #[test]
    fn the_least_urgent_holds_nothing_back() {
        let gate = WriteGate::detached(Side::Client);
        assert!(gate.wait(Priority::Bulk).is_none());
    }

    #[test]
    fn hold_is_two_round_trips_within_bounds() {
        assert_eq!(hold(Duration::ZERO), MIN_HOLD);
        assert_eq!(hold(Duration::from_millis(50)), Duration::from_millis(100));
        assert_eq!(hold(Duration::from_secs(5)), MAX_HOLD);
    }

    /// Over real quinn endpoints on loopback, with a connection window small enough that
    /// eight BULK writers (tasks) wait for credit all the time while the server reads
    /// everything: a CRITICAL write made from the runtime's main future, each time it has to
    /// wait, gets the credit that comes back before any BULK bytes go in. Without the gate
    /// who gets returning credit is down to the order the runtime polls the woken writers
    /// in: here the BULK tasks ran first every time, and the CRITICAL write was still waiting
    /// after 10 s.
    #[tokio::test]
    async fn a_critical_write_gets_returning_credit_before_bulk_writers() {
        use std::sync::atomic::AtomicU64;
        use std::task::Poll;

        use bytes::Bytes;

        use crate::stream::SendHalf;
        use crate::test_support::{client_endpoint, within};
        use crate::tls::SelfSigned;

        const WINDOW: u32 = 16 * 1024;
        let cert = SelfSigned::new(["localhost"]).expect("certificate");
        let tls = crate::tls::server_config(&cert.identity(), &[b"test"], false, &[]).unwrap();
        let tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(tls));
        let mut transport = quinn::TransportConfig::default();
        transport.receive_window(WINDOW.into());
        server_config.transport_config(Arc::new(transport));
        let server =
            quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let client = client_endpoint(&cert, b"test");
        let connecting = client
            .connect(server.local_addr().unwrap(), "localhost")
            .unwrap();
        let accepting = async { server.accept().await.expect("incoming").await };
        let (conn, server_conn) =
            within("connect", async { tokio::join!(connecting, accepting) }).await;
        let (conn, server_conn) = (conn.expect("client"), server_conn.expect("server"));

        // The server reads every stream as fast as it comes.
        let reading = tokio::spawn(async move {
            while let Ok((_, mut recv)) = server_conn.accept_bi().await {
                tokio::spawn(async move {
                    while let Ok(Some(_)) = recv.read_chunk(usize::MAX, false).await {}
                });
            }
        });
        let gate = WriteGate::new(&conn, Side::Client);
        let bulk_bytes = Arc::new(AtomicU64::new(0));
        let mut bulk = Vec::new();
        for _ in 0..8 {
            let (send, _recv) = conn.open_bi().await.unwrap();
            let mut send = SendHalf::new(send, gate.clone());
            send.set_priority(Priority::Bulk);
            let bulk_bytes = bulk_bytes.clone();
            bulk.push(tokio::spawn(async move {
                loop {
                    let mut chunk = [Bytes::from(vec![0u8; 1024])];
                    if send.write(&mut chunk).await.is_err() {
                        return;
                    }
                    bulk_bytes.fetch_add(1024, Ordering::SeqCst);
                }
            }));
        }
        within("the bulk writers get going", async {
            while bulk_bytes.load(Ordering::SeqCst) < 1 << 20 {
                tokio::task::yield_now().await;
            }
        })
        .await;

        let mut worst = 0;
        let mut waited = 0;
        for _ in 0..20 {
            // The BULK writers have the connection's credit again.
            let start = bulk_bytes.load(Ordering::SeqCst);
            within("the bulk writers go on", async {
                while bulk_bytes.load(Ordering::SeqCst) < start + 4 * u64::from(WINDOW) {
                    tokio::task::yield_now().await;
                }
            })
            .await;
            let (send, _recv) = conn.open_bi().await.unwrap();
            let mut critical = SendHalf::new(send, gate.clone());
            critical.set_priority(Priority::Critical);
            let mut chunk = [Bytes::from_static(b"urgent")];
            let before = bulk_bytes.load(Ordering::SeqCst);
            let had_to_wait = {
                let mut write = std::pin::pin!(critical.write(&mut chunk));
                match futures_util::poll!(write.as_mut()) {
                    Poll::Ready(result) => result.map(|()| false),
                    Poll::Pending => within("the critical write", write).await.map(|()| true),
                }
            };
            critical.finish();
            if had_to_wait.expect("critical write") {
                waited += 1;
                worst = worst.max(bulk_bytes.load(Ordering::SeqCst) - before);
            }
        }
        println!("{waited} critical writes waited; at most {worst} BULK bytes went in meanwhile");
        bulk.iter().for_each(tokio::task::JoinHandle::abort);
        reading.abort();
        assert!(
            waited > 0,
            "no critical write had to wait: the test proves nothing"
        );
        assert!(
            worst <= 8 * 1024,
            "{worst} BULK bytes went in while a critical write waited"
        );
    }
}
