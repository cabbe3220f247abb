//! Small synchronisation helpers.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, carrying on past a panic of an earlier holder: every value quicrpc keeps
/// behind a mutex stays consistent between statements, so a poisoned one is still sound.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
