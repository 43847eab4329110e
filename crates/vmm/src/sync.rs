//! Locks that survive a panic in another thread.

/// `lock()` that survives a panic in another thread: every structure under
/// these locks is updated only after all checks passed, so a poisoned lock
/// still guards a consistent value.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
