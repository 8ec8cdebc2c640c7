//! Synchronization primitives, swapped for `loom`'s under `--cfg palisade_loom` (with the
//! internal feature `__loom`, which brings the `loom` dependency).

#[cfg(palisade_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(palisade_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(palisade_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(palisade_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Between a sequentially consistent write and a sequentially consistent read of another
/// atomic, where two threads each write one and read the other and one of them must see the
/// other's write (a store buffer). Sequentially consistent accesses alone guarantee it, so
/// this is nothing in a build; `loom` models them as acquire-release, so under it this is the
/// fence that gives the same guarantee.
#[inline(always)]
pub(crate) fn store_buffer_fence() {
    #[cfg(palisade_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

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

/// A count many threads add to without writing one shared cache line: each thread adds to its
/// own stripe (threads beyond the number of stripes share one, round robin), and a read sums
/// the stripes. For counts written on a hot path by every thread and read rarely (an open
/// breaker's rejections).
#[derive(Debug)]
pub(crate) struct StripedCounter {
    stripes: Box<[Padded<AtomicU64>]>,
}

/// Stripes per counter: more than the cores of most hosts that run one service, few enough to
/// keep a counter at 1 KiB.
const STRIPES: usize = 8;

impl StripedCounter {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Padded(AtomicU64::new(0))).collect(),
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.stripes[stripe()].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.load(Ordering::Relaxed)))
    }
}

/// This thread's stripe, given out round robin the first time a thread asks.
#[inline]
fn stripe() -> usize {
    use std::cell::Cell;
    // Not loom's: which stripe a thread uses is not part of any model.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
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

/// A reference to the state every clone of a service shares, one per stripe (see
/// [`SharedRefs`]): what a response future holds. Padded, so that two stripes' reference
/// counts (at the start of each allocation, at least 136 bytes apart) are never on one cache
/// line written by two threads.
pub(crate) struct StripeRef<T> {
    shared: std::sync::Arc<T>,
    _pad: [u8; 112],
}

impl<T> StripeRef<T> {
    fn new(shared: std::sync::Arc<T>) -> Self {
        Self {
            shared,
            _pad: [0; 112],
        }
    }
}

impl<T> std::ops::Deref for StripeRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.shared
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for StripeRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

/// The state every clone of a service shares, made once per layer, with a reference to it per
/// stripe for response futures to hold (see [`CloneRef`]). Its own reference count, which
/// every clone and drop of a service writes, is kept off the cache lines that calls read.
#[repr(align(128))]
pub(crate) struct SharedRefs<T> {
    shared: std::sync::Arc<T>,
    stripes: [std::sync::Arc<StripeRef<T>>; STRIPES],
}

impl<T> SharedRefs<T> {
    pub(crate) fn new(shared: std::sync::Arc<T>) -> std::sync::Arc<Self> {
        let stripes = std::array::from_fn(|_| {
            std::sync::Arc::new(StripeRef::new(std::sync::Arc::clone(&shared)))
        });
        std::sync::Arc::new(Self { shared, stripes })
    }

    /// The shared state itself (for handles).
    pub(crate) fn shared(&self) -> &std::sync::Arc<T> {
        &self.shared
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for SharedRefs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

/// One service clone's way to the state all clones share: the layer's [`SharedRefs`], and,
/// from its first call on, the stripe of the thread that call ran on, whose reference each of
/// its calls gives its response future. A service is often cloned on one thread and called on
/// another (cloned for a task, then moved into it), so the stripe is taken at the first call,
/// not at the clone. Clones called on different threads bump different reference counts on
/// every call, rather than one cache line written by every thread (up to the number of
/// stripes; threads beyond it share them, round robin); and cloning allocates nothing.
pub(crate) struct CloneRef<T> {
    refs: std::sync::Arc<SharedRefs<T>>,
    stripe: Option<std::sync::Arc<StripeRef<T>>>,
}

impl<T> CloneRef<T> {
    pub(crate) fn new(refs: std::sync::Arc<SharedRefs<T>>) -> Self {
        Self { refs, stripe: None }
    }

    /// A reference for a response future.
    #[inline]
    pub(crate) fn take(&mut self) -> std::sync::Arc<StripeRef<T>> {
        match &self.stripe {
            Some(stripe) => std::sync::Arc::clone(stripe),
            None => self.first_take(),
        }
    }

    /// The first call: this thread's stripe, kept for the calls after it. (Out of line, not
    /// cold: a service cloned per call takes this way on every call.)
    #[inline(never)]
    fn first_take(&mut self) -> std::sync::Arc<StripeRef<T>> {
        // (`%`: no bounds check; `stripe()` is below `STRIPES` already.)
        let stripe = std::sync::Arc::clone(&self.refs.stripes[stripe() % STRIPES]);
        self.stripe = Some(std::sync::Arc::clone(&stripe));
        stripe
    }

    /// The shared state itself (for handles).
    pub(crate) fn shared(&self) -> &std::sync::Arc<T> {
        &self.refs.shared
    }
}

impl<T> Clone for CloneRef<T> {
    /// A clone takes its own stripe at its own first call.
    fn clone(&self) -> Self {
        Self::new(std::sync::Arc::clone(&self.refs))
    }
}

impl<T> std::ops::Deref for CloneRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.refs.shared
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for CloneRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.refs.shared.fmt(f)
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod clone_ref_tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_clone_takes_the_stripe_of_the_thread_of_its_first_call() {
        let refs = SharedRefs::new(Arc::new(7u32));
        let mut here = CloneRef::new(Arc::clone(&refs));
        let mine = here.take();
        assert!(Arc::ptr_eq(&mine, &refs.stripes[stripe()]));
        assert!(Arc::ptr_eq(&here.take(), &mine), "kept for later calls");
        assert_eq!(*here, 7);

        // Cloned here, first called on another thread: that thread's stripe.
        let moved = here.clone();
        assert!(moved.stripe.is_none());
        let (taken, theirs) = std::thread::spawn(move || {
            let mut moved = moved;
            (moved.take(), stripe())
        })
        .join()
        .unwrap();
        assert!(Arc::ptr_eq(&taken, &refs.stripes[theirs]));
        assert!(std::ptr::eq(&**taken, &**refs.shared()));
    }
}

/// `start + after` as a deadline a tokio timer can take, or `None` (no deadline) when it is too
/// far to represent. tokio rounds a deadline up to its next millisecond and panics if that
/// overflows, so a deadline within 1 ms of the largest `Instant` (a per-request timeout taken
/// from a hostile header, say) is no deadline either, rather than a panic at the first poll.
pub(crate) fn timer_deadline(
    start: tokio::time::Instant,
    after: std::time::Duration,
) -> Option<tokio::time::Instant> {
    let at = start.checked_add(after)?;
    at.checked_add(std::time::Duration::from_millis(1))?;
    Some(at)
}

/// Tells a circuit breaker that a call under it is waiting in a bulkhead's queue, so that the
/// wait is not timed as the dependency's slowness. A bulkhead's future marks [`QUEUED`] as it
/// returns `Pending` while queued, and [`SENT`] while its call is in flight (unless a bulkhead
/// stacked below it still queues the call: it passes that mark on instead); a breaker's future
/// reads the marks around polling its inner future (and passes them on to breakers further
/// out). A poll that left something queued and nothing sent (a future fanning out to several
/// calls may do both) does not start the clock. A call that reaches the dependency through no
/// bulkhead marks nothing: a future racing such a call against one queued in a bulkhead is
/// not timed until the queued one is sent (or the call ends, untimed).
///
/// [`QUEUED`]: queued::QUEUED
/// [`SENT`]: queued::SENT
pub(crate) mod queued {
    use std::cell::Cell;

    /// A call waits in a bulkhead's queue.
    pub(crate) const QUEUED: u8 = 1;
    /// A call is in flight past its bulkhead.
    pub(crate) const SENT: u8 = 2;

    /// A watch is running on this thread: marks are kept only then (nobody reads them
    /// otherwise), and the outermost watch clears them as it ends, so that no mark outlives
    /// the poll it was made in and the next call's watch takes the short way.
    const WATCHING: u8 = 4;

    thread_local! {
        static MARKS: Cell<u8> = const { Cell::new(0) };
    }

    /// Marks what the call being polled is doing, for the watch around it (if any).
    #[inline]
    pub(crate) fn mark(what: u8) {
        MARKS.with(|m| {
            let marks = m.get();
            if marks & WATCHING != 0 {
                m.set(marks | what);
            }
        });
    }

    /// Runs `poll`, and says whether a bulkhead under it left a call queued and none sent.
    /// The marks made before it (by a watch outside, still running) are kept, and passed on
    /// with the ones it made, also when `poll` unwinds.
    #[inline]
    pub(crate) fn watch<T>(poll: impl FnOnce() -> T) -> (T, bool) {
        /// Clears the marks as it drops (also when the poll unwinds).
        struct Clear;
        impl Drop for Clear {
            #[inline]
            fn drop(&mut self) {
                MARKS.with(|m| m.set(0));
            }
        }
        if MARKS.with(Cell::get) == 0 {
            // No watch outside (the common case): the marks are this poll's own, and
            // nobody reads them after it.
            MARKS.with(|m| m.set(WATCHING));
            let clear = Clear;
            let polled = poll();
            let marks = MARKS.with(Cell::get);
            drop(clear);
            return (polled, marks & (QUEUED | SENT) == QUEUED);
        }
        watch_keeping(poll)
    }

    /// [`watch`] inside another: the outer one's marks are kept aside while `poll` runs.
    #[inline(never)]
    fn watch_keeping<T>(poll: impl FnOnce() -> T) -> (T, bool) {
        /// Puts back the marks made before, with those made since, as it drops.
        struct Restore(u8);
        impl Drop for Restore {
            fn drop(&mut self) {
                MARKS.with(|m| m.set(self.0 | m.get()));
            }
        }
        let restore = Restore(MARKS.with(|m| m.replace(WATCHING)));
        let polled = poll();
        let marks = MARKS.with(Cell::get);
        drop(restore);
        (polled, marks & (QUEUED | SENT) == QUEUED)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn marks() -> u8 {
            MARKS.with(Cell::get)
        }

        #[test]
        fn marks_live_only_inside_a_watch_and_reach_the_watches_outside() {
            // A mark with no watch around it is dropped: nobody would read it.
            mark(QUEUED);
            assert_eq!(marks(), 0);
            // A watch sees its poll's marks; the outer one sees the inner one's too; and
            // the outermost clears them as it ends.
            let ((inner_queued, marks_after_inner), outer_queued) = watch(|| {
                let ((), inner_queued) = watch(|| mark(QUEUED));
                (inner_queued, marks())
            });
            assert!(inner_queued && outer_queued);
            assert_eq!(marks_after_inner, WATCHING | QUEUED);
            assert_eq!(marks(), 0);
            // A call sent beside the queued one: not queued, for both.
            let ((_, inner), outer) = watch(|| {
                mark(SENT);
                watch(|| mark(QUEUED))
            });
            assert!(inner && !outer);
            assert_eq!(marks(), 0);
        }

        #[test]
        fn an_unwinding_poll_leaves_no_marks_behind() {
            let unwound = std::panic::catch_unwind(|| {
                watch(|| {
                    mark(QUEUED);
                    let _ = watch(|| -> () {
                        mark(SENT);
                        panic!("the inner service's poll panics");
                    });
                })
            });
            assert!(unwound.is_err());
            assert_eq!(marks(), 0);
            // And the next watch starts afresh.
            assert!(!watch(|| ()).1);
        }
    }
}

pub(crate) use coarse::{coarse_ticks, coarse_ticks_in};

/// A cheap monotonic clock that may lag the precise one by a few milliseconds, for checks that
/// may be late by a few milliseconds, made on paths that must not pay for a precise read. On
/// Linux it is the kernel's `CLOCK_MONOTONIC_COARSE` (about 8 ns to read where the precise
/// clock takes 30, updated every 1-4 ms, 10 ms on a kernel built with HZ=100); on macOS,
/// Windows (every 10-16 ms) and FreeBSD their equivalents;
/// elsewhere the standard library's clock.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "windows",
    target_os = "freebsd"
))]
mod coarse {
    /// Now, in ticks of an unspecified unit since an unspecified start (see
    /// [`coarse_ticks_in`]).
    #[inline]
    pub(crate) fn coarse_ticks() -> u64 {
        coarsetime::Instant::now_without_cache_update().as_ticks()
    }

    /// `d` in [`coarse_ticks`]' unit (saturating).
    pub(crate) fn coarse_ticks_in(d: std::time::Duration) -> u64 {
        coarsetime::Duration::from(d).as_ticks()
    }
}

/// See the other `coarse`: here, nanoseconds on the standard library's monotonic clock.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "windows",
    target_os = "freebsd"
)))]
mod coarse {
    /// Now, in nanoseconds since the first call.
    #[allow(clippy::disallowed_methods)] // the real clock, by design (as on the other platforms)
    pub(crate) fn coarse_ticks() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(std::time::Instant::now);
        coarse_ticks_in(start.elapsed())
    }

    /// `d` in nanoseconds (saturating).
    pub(crate) fn coarse_ticks_in(d: std::time::Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}
