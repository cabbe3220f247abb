//! Counting a connection's live stream handles, for a wait until none is left.
//!
//! quinn reuses the stream ids of 0-RTT streams the server rejected, and dropping a handle
//! of such a stream clears the waker registered under its id, which by then may be a new
//! stream's: that stream's reader is never woken and its call hangs. So on a connection whose
//! early data was rejected, no stream is opened until every handle of its early streams has
//! been dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The number of live handles, and who waits for it to reach zero.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    live: AtomicUsize,
    none: Notify,
}

/// One live handle; dropped, it counts down.
#[derive(Debug)]
pub(crate) struct HandleToken(Arc<Handles>);

impl Handles {
    /// Counts one more live handle until the token is dropped.
    pub(crate) fn token(self: &Arc<Self>) -> HandleToken {
        self.live.fetch_add(1, Ordering::AcqRel);
        HandleToken(self.clone())
    }

    /// Waits until no handle is live. Cancel-safe: it only waits.
    pub(crate) async fn none_left(&self) {
        loop {
            let none = self.none.notified();
            let mut none = std::pin::pin!(none);
            none.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            none.await;
        }
    }
}

impl Drop for HandleToken {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_last_token_goes() {
        let handles = Arc::new(Handles::default());
        handles.none_left().await;
        let (a, b) = (handles.token(), handles.token());
        let mut waiting = tokio_test_task(handles.clone());
        drop(a);
        assert!(!waiting.is_finished_soon().await);
        drop(b);
        assert!(waiting.is_finished_soon().await);
    }

    struct Waiting(tokio::task::JoinHandle<()>);

    fn tokio_test_task(handles: Arc<Handles>) -> Waiting {
        Waiting(tokio::spawn(async move { handles.none_left().await }))
    }

    impl Waiting {
        /// Whether the wait has ended once every other task has had its turn.
        async fn is_finished_soon(&mut self) -> bool {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            self.0.is_finished()
        }
    }
}
