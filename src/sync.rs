//! Lock helpers shared by the modules that guard plain-value state with a `std` mutex.
//!
//! A poisoned mutex only records that some thread panicked while holding it. Everywhere this
//! crate locks, the guarded data is plain values updated in steps that leave it consistent, so
//! recovering the guard is safe; refusing it would turn one panic into a failure of every later
//! request that touches the same state.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the guard if a previous holder panicked (see the module header).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
