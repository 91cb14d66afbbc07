//! The one lock helper of the crate.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also when a panic elsewhere poisoned it. Every value the crate keeps behind a
/// mutex (caches, credentials, the limiter's slots, the organisation's accounts) is replaced by
/// one assignment or one push, never left half-written, so a poisoned lock holds a consistent
/// value, and one panicked task must not stop every later event of the container.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
