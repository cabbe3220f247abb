//! Small synchronisation and future helpers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, carrying on past a panic of an earlier holder: every value quicrpc keeps
/// behind a mutex stays consistent between statements, so a poisoned one is still sound.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The future `make` returns, boxed. A future is made on the stack before it moves into its
/// box; made in this function, which is never inlined, it takes room in this function's
/// stack frame only, when it runs. `Box::pin(large())` inside an `async fn` makes the room
/// part of the stack frame of every poll of that function (and of every function it is
/// inlined into), with each of its pages probed, whether or not that poll boxes anything.
#[inline(never)]
pub(crate) fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::pin(make())
}
