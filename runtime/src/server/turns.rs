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
}
