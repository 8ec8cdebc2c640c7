//! Synchronization primitives, swapped for `loom`'s under `--cfg palisade_loom`.

#[cfg(palisade_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(palisade_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(palisade_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(palisade_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Keeps a value on its own cache line(s), so that a counter written by every call does not
/// slow down readers of its neighbours (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Locks a mutex, recovering the data if a panic poisoned it (nothing palisade keeps under a
/// lock is left half-updated by a panic: user callbacks never run while it is held).
#[cfg(not(palisade_loom))]
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Locks a mutex (loom's), recovering the data if a panic poisoned it.
#[cfg(palisade_loom)]
pub(crate) fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One service clone's reference to the state all clones share. Each clone has its own (cloning
/// a service allocates a new one), so the reference count that every response future bumps is
/// not one cache line written by every task.
#[derive(Debug)]
pub(crate) struct CloneRef<T>(pub(crate) std::sync::Arc<T>);

impl<T> std::ops::Deref for CloneRef<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
