//! Bulkhead: a limit on outstanding requests, so that a slow dependency cannot tie up every
//! task (and socket, and byte of memory) of its caller.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use palisade::bulkhead::BulkheadLayer;
//! use palisade::error::{error_kind, ErrorKind};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let layer = BulkheadLayer::builder()
//!     .max_concurrent(2)
//!     .max_wait(Duration::from_millis(50))
//!     .max_queued(1)
//!     .build()
//!     .expect("valid configuration");
//! let bulkhead = layer.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
//!
//! // Two calls in flight take both permits; a third waits in the queue...
//! let mut calls = Vec::new();
//! for _ in 0..3 {
//!     let mut svc = svc.clone();
//!     calls.push(svc.ready().await.unwrap().call(()));
//! }
//! assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (2, 1));
//! // ...and a fourth finds the queue full: rejected at once, the dependency never sees it.
//! let mut svc = svc.clone();
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! assert!(matches!(error_kind(err.as_ref()), ErrorKind::BulkheadFull(_)));
//!
//! drop(calls); // cancelled calls give their permits back
//! assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (0, 0));
//! # }
//! ```
//!
//! # How it counts
//!
//! * A call takes a permit in `call` and gives it back when it completes, fails, or is dropped
//!   (by an outer timeout, say). At most `max_concurrent` permits exist, shared by every clone of
//!   the services one [`BulkheadLayer`] makes.
//! * When every permit is taken, the call fails at once with
//!   [`BulkheadFull`](crate::error::BulkheadFull) by default. With `max_wait`, it waits for a
//!   permit in a FIFO queue of at most `max_queued` calls, and fails if the queue is full or
//!   the wait runs out. The call waits after `call`, in its response future (`poll_ready` only
//!   asks the inner service): a timeout outside the bulkhead counts the wait and may end it
//!   first, and one inside starts only when the permit is granted.
//! * A full bulkhead is local overload, not a sick dependency: palisade's classifiers count its
//!   rejections as *ignored*, so a circuit breaker around it does not trip on them.
//!
//! Taking and giving back a permit when nobody waits is a compare-and-swap each on one counter:
//! no lock, no allocation. Waiting calls use a queue under a mutex.

mod config;
mod future;
mod handle;
mod layer;
mod semaphore;
mod service;

#[cfg(feature = "serde")]
pub(crate) use config::BulkheadFields;
pub use config::{BulkheadConfig, MAX_CONCURRENT, MAX_QUEUED, MAX_WAIT};
pub(crate) use future::Permit;
pub use future::{Hold, ResponseFuture, UntilResponse};
pub use handle::Handle;
pub use layer::{Builder, BulkheadLayer};
pub use service::Bulkhead;

/// The permit counter, bare, for the `loom` models in `tests/loom_bulkhead.rs`. Only built
/// with `--cfg palisade_loom`.
#[cfg(palisade_loom)]
#[doc(hidden)]
pub mod loom_model {
    use std::task::{Poll, Waker};

    use super::semaphore::{self, Ticket};

    /// What [`Semaphore::enqueue`] did.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Enqueued {
        /// A permit was free; the caller holds it.
        Acquired,
        /// The caller waits with this ticket.
        Queued(u64),
        /// No permit, no room.
        Full,
    }

    /// The bulkhead's permit counter and queue.
    #[derive(Debug)]
    pub struct Semaphore(semaphore::Semaphore);

    impl Semaphore {
        /// `max` permits and a queue of `max_queued`.
        pub fn new(max: u64, max_queued: usize) -> Self {
            Self(semaphore::Semaphore::new(max, max_queued))
        }

        /// The fast path.
        pub fn try_acquire(&self) -> bool {
            self.0.try_acquire()
        }

        /// Gives a permit back (or hands it to the first waiter).
        pub fn release(&self) {
            self.0.release()
        }

        /// Takes a free permit or joins the queue.
        pub fn enqueue(&self) -> Enqueued {
            match self.0.enqueue() {
                semaphore::Enqueued::Acquired => Enqueued::Acquired,
                semaphore::Enqueued::Queued(t) => Enqueued::Queued(t.0),
                semaphore::Enqueued::Full => Enqueued::Full,
            }
        }

        /// Whether a permit has been handed to `ticket`.
        pub fn granted(&self, ticket: u64) -> bool {
            self.0.poll_ticket(Ticket(ticket), Waker::noop()) == Poll::Ready(())
        }

        /// Leaves the queue; `true` if a permit had been handed over (the caller holds it).
        pub fn cancel(&self, ticket: u64) -> bool {
            self.0.cancel(Ticket(ticket))
        }

        /// Permits taken.
        pub fn in_flight(&self) -> u64 {
            self.0.in_flight()
        }

        /// Calls waiting.
        pub fn queued(&self) -> usize {
            self.0.queued()
        }

        /// Panics if an invariant that holds between operations is broken.
        pub fn check_at_rest(&self) {
            self.0.check_at_rest()
        }
    }
}
