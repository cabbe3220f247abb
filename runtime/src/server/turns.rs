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

/// Counts the calls an accept loop starts, and steps aside every [`CALLS_PER_TURN`].
#[derive(Debug, Default)]
pub(super) struct Turns {
    started: u32,
}

impl Turns {
    /// Counts a call just started (spawned); after every [`CALLS_PER_TURN`]th, yields to the
    /// runtime, so that the tasks queued meanwhile (the calls, the connection's driver) run
    /// before the loop accepts another.
    pub(super) async fn started(&mut self) {
        self.started += 1;
        if self.started >= CALLS_PER_TURN {
            self.started = 0;
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Notify;

    use super::*;

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
