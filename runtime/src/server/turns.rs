//! [`Turns`]: how many calls a connection's accept loop starts before it lets them, and the
//! connection, run.
//!
//! A burst of requests (a client with 50 calls in flight sends them a few datagrams at a
//! time) makes every one of its streams ready to accept at once. An accept loop that spawned
//! them all in one go queued every call's task ahead of the connection's driver, which the
//! first response wakes: on a runtime thread of its own, the server ran all the calls, then
//! sent all the responses, and the client ran all its next calls before it sent any of them.
//! Client and server took turns instead of working at the same time, each idle about half the
//! time (docs/benchmarks.md, "Calls started per turn"). Stepping aside every
//! [`CALLS_PER_TURN`] calls lets the calls already started finish and their responses leave
//! while the rest of the burst waits its turn.

/// Calls an accept loop starts before it steps aside. The sweep in docs/benchmarks.md: 8 to
/// 32 served the same, 4 sent too many small batches.
pub(super) const CALLS_PER_TURN: u32 = 16;

/// Counts the calls an accept loop starts back to back, and steps aside every
/// [`CALLS_PER_TURN`].
#[derive(Debug, Default)]
pub(super) struct Turns {
    started: u32,
}

impl Turns {
    /// Counts a call just started (spawned); after every [`CALLS_PER_TURN`]th of one burst,
    /// lets the tasks queued meanwhile (the calls, the connection's driver) run before the
    /// loop accepts another.
    ///
    /// It steps aside by waking itself rather than with `tokio::task::yield_now`, which
    /// would wait for the runtime's next poll for I/O: every task that poll woke (other
    /// calls' reads, bulk uploads among them) would then run before the loop accepted the
    /// rest of the burst, and an urgent call among it would wait for them.
    pub(super) async fn started(&mut self) {
        self.started += 1;
        if self.started >= CALLS_PER_TURN {
            self.started = 0;
            step_aside().await;
        }
    }

    /// Whether calls have been started since the loop last found nothing to accept.
    pub(super) fn in_burst(&self) -> bool {
        self.started > 0
    }

    /// The loop found nothing to accept: the burst is over, and the next one counts from
    /// zero (calls that come one at a time never make it step aside).
    pub(super) fn burst_over(&mut self) {
        self.started = 0;
    }
}

/// The TCP side's turns. There hyper's connection task accepts the streams, and it spawns
/// every call of a burst before any of them runs, so the same turn-taking happened: against
/// tonic's client at 50 to 200 calls in flight, both processes idle about half the time
/// (docs/benchmarks.md, "Turns on the TCP side"). quicrpc does not see that loop, only each
/// call's future and the connection's reads and writes, so the count is kept per runtime
/// thread: calls started on it since a TCP connection on it last read or wrote. A call that
/// finds a turn's worth started steps aside, behind the connection tasks that their
/// responses woke, until a connection has had its turn, at most [`TCP_MOST_STEPS`] times: a
/// call never waits for a turn that may not come (the calls started may all be long ones).
///
/// A turn is a quarter of the burst ([`TCP_TURNS_PER_BURST`]), at least
/// [`TCP_LEAST_PER_TURN`] calls: a deep burst split into turns of a dozen would cost each
/// call several steps and the connection a write per dozen, where the server has no idle
/// time left to win (256 calls in flight).
pub(super) mod tcp {
    use std::cell::Cell;

    /// The fewest calls a turn starts. The sweep in docs/benchmarks.md: 8 and 12 served
    /// alike, 16 split a burst of 50 too little.
    pub(in crate::server) const TCP_LEAST_PER_TURN: u32 = 12;

    /// Into how many turns a burst is split, at most (turns of at least
    /// [`TCP_LEAST_PER_TURN`]).
    pub(in crate::server) const TCP_TURNS_PER_BURST: u32 = 4;

    /// The most times a call steps aside waiting for a connection's turn.
    pub(in crate::server) const TCP_MOST_STEPS: u32 = 4;

    thread_local! {
        /// Calls started on this thread since a TCP connection on it last read or wrote.
        static STARTED: Cell<u32> = const { Cell::new(0) };
        /// Calls that came on this thread since a TCP connection on it last read or wrote.
        static ARRIVED: Cell<u32> = const { Cell::new(0) };
        /// The calls that came between the last two turns that had any.
        static LAST_BURST: Cell<u32> = const { Cell::new(0) };
    }

    /// A TCP connection on this thread reads or writes: its turn, and the counts start over.
    pub(in crate::server) fn connection_turn() {
        STARTED.set(0);
        let arrived = ARRIVED.replace(0);
        if arrived > 0 {
            LAST_BURST.set(arrived);
        }
    }

    /// Counts a call as started, first waiting (stepping aside at most [`TCP_MOST_STEPS`]
    /// times) while this thread has started a turn's worth since a connection's last turn.
    /// The turn's size is set when the call comes, from the deeper of the last burst and the
    /// one under way.
    pub(in crate::server) async fn call_turn() {
        let arrived = ARRIVED.get().saturating_add(1);
        ARRIVED.set(arrived);
        let burst = LAST_BURST.get().max(arrived);
        let per_turn = TCP_LEAST_PER_TURN.max(burst / TCP_TURNS_PER_BURST);
        let mut steps = 0;
        while STARTED.get() >= per_turn && steps < TCP_MOST_STEPS {
            steps += 1;
            super::step_aside().await;
        }
        STARTED.set(STARTED.get().saturating_add(1));
    }

    /// Forgets this thread's counts (each test starts from none).
    #[cfg(test)]
    pub(in crate::server) fn reset() {
        STARTED.set(0);
        ARRIVED.set(0);
        LAST_BURST.set(0);
    }
}

/// Pending once, with the task woken at once: it goes to the back of the runtime's queue
/// of tasks ready to run, behind the ones woken before it.
async fn step_aside() {
    let mut stepped = false;
    std::future::poll_fn(|cx| {
        if stepped {
            return std::task::Poll::Ready(());
        }
        stepped = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Notify;

    use super::*;

    /// Only a burst steps aside: calls that come one at a time, or bursts shorter than a
    /// turn, never wait.
    #[test]
    fn only_the_calls_of_one_burst_count() {
        use futures_util::FutureExt;
        let mut turns = Turns::default();
        for burst in 0..3 {
            for call in 1..CALLS_PER_TURN {
                assert!(
                    turns.started().now_or_never().is_some(),
                    "call {call} of burst {burst} waited"
                );
            }
            assert!(turns.in_burst());
            turns.burst_over();
            assert!(!turns.in_burst());
        }
        for _ in 1..CALLS_PER_TURN {
            assert!(turns.started().now_or_never().is_some());
        }
        assert!(
            turns.started().now_or_never().is_none(),
            "the last call of a full turn steps aside"
        );
        assert!(!turns.in_burst(), "the next turn counts from zero");
    }

    /// On one runtime thread, a task that the first call wakes (as a response wakes the
    /// connection's driver) runs after the first turn's calls and before the next turn's.
    #[test]
    fn a_task_woken_by_the_first_call_runs_before_the_next_turn() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let log = Arc::new(Mutex::new(Vec::new()));
        let driver = Arc::new(Notify::new());
        runtime.block_on(async {
            let woken = tokio::spawn({
                let (log, driver) = (log.clone(), driver.clone());
                async move {
                    driver.notified().await;
                    log.lock().unwrap().push("driver".to_owned());
                }
            });
            // Let the driver's task wait first.
            tokio::task::yield_now().await;
            let mut turns = Turns::default();
            let mut calls = Vec::new();
            for i in 0..3 * CALLS_PER_TURN {
                let (log, driver) = (log.clone(), driver.clone());
                calls.push(tokio::spawn(async move {
                    log.lock().unwrap().push(format!("call {i}"));
                    driver.notify_one();
                }));
                turns.started().await;
            }
            for call in calls {
                call.await.expect("a call");
            }
            woken.await.expect("the driver");
        });
        let log = log.lock().unwrap();
        let driver_at = log.iter().position(|entry| entry == "driver");
        assert_eq!(
            driver_at,
            Some(CALLS_PER_TURN as usize),
            "the driver ran at {driver_at:?} in {log:?}"
        );
    }

    /// Runs `calls` TCP calls, spawned in one go as hyper spawns a burst, on one runtime
    /// thread, each waking `connection` when it has started; returns the order of events.
    fn tcp_burst(calls: u32, connection: bool) -> Vec<String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let log = Arc::new(Mutex::new(Vec::new()));
        let woken = Arc::new(Notify::new());
        runtime.block_on(async {
            tcp::reset();
            let driver = connection.then(|| {
                let (log, woken) = (log.clone(), woken.clone());
                tokio::spawn(async move {
                    loop {
                        woken.notified().await;
                        // What a connection's read or write does.
                        tcp::connection_turn();
                        log.lock().unwrap().push("turn".to_owned());
                    }
                })
            });
            // Let the connection's task wait first.
            tokio::task::yield_now().await;
            let calls: Vec<_> = (0..calls)
                .map(|i| {
                    let (log, woken) = (log.clone(), woken.clone());
                    tokio::spawn(async move {
                        tcp::call_turn().await;
                        log.lock().unwrap().push(format!("call {i}"));
                        woken.notify_one();
                    })
                })
                .collect();
            let all = async {
                for call in calls {
                    call.await.expect("a call");
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), all)
                .await
                .expect("every call started");
            if let Some(driver) = driver {
                driver.abort();
            }
        });
        let log = log.lock().unwrap();
        log.clone()
    }

    /// A burst of TCP calls starts a turn's worth at a time, with the connection's turn (the
    /// responses of the calls started going out) between.
    #[test]
    fn tcp_calls_start_a_turn_at_a_time() {
        let per_turn = tcp::TCP_LEAST_PER_TURN as usize;
        let mut log = tcp_burst(3 * tcp::TCP_LEAST_PER_TURN, true);
        // A wake-up that came while the connection's task ran gives it a second turn.
        log.dedup();
        let turns: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(_, entry)| *entry == "turn")
            .map(|(at, _)| at)
            .collect();
        assert_eq!(
            &turns[..2],
            &[per_turn, 2 * per_turn + 1],
            "turns at {turns:?} in {log:?}"
        );
        for (at, entry) in log.iter().filter(|entry| *entry != "turn").enumerate() {
            assert_eq!(
                entry,
                &format!("call {at}"),
                "calls out of order in {log:?}"
            );
        }
    }

    /// A deep burst goes in a few larger turns, not in turns of a dozen.
    #[test]
    fn a_deep_tcp_burst_goes_in_a_few_turns() {
        let calls = 16 * tcp::TCP_LEAST_PER_TURN;
        let mut log = tcp_burst(calls, true);
        log.dedup();
        let last_call = log
            .iter()
            .rposition(|entry| entry != "turn")
            .expect("calls");
        let turns = log[..last_call]
            .iter()
            .filter(|entry| *entry == "turn")
            .count();
        assert!(
            (1..=tcp::TCP_TURNS_PER_BURST as usize).contains(&turns),
            "{turns} turns before the last call: {log:?}"
        );
        let first_turn = log.iter().position(|entry| entry == "turn");
        assert!(
            first_turn.is_some_and(|at| at > tcp::TCP_LEAST_PER_TURN as usize),
            "the first turn after {first_turn:?} calls: {log:?}"
        );
        let started = log.iter().filter(|entry| *entry != "turn").count();
        assert_eq!(started, calls as usize, "{log:?}");
    }

    /// Without a connection's turn (the calls started are all long ones, say) the others
    /// still start, after a few steps aside.
    #[test]
    fn tcp_calls_do_not_wait_for_a_turn_that_does_not_come() {
        let calls = 3 * tcp::TCP_LEAST_PER_TURN;
        let log = tcp_burst(calls, false);
        assert_eq!(log.len(), calls as usize, "{log:?}");
    }
}
