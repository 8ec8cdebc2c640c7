//! The permit counter: one atomic word on the fast path, a FIFO queue under a mutex for waiters.
//!
//! `state` holds the number of permits taken, plus the [`WAITERS`] bit while the queue is not
//! empty. Taking a permit is one compare-and-swap that succeeds while `state < max`; giving one
//! back is one compare-and-swap that decrements while [`WAITERS`] is clear. Neither touches the
//! queue unless [`WAITERS`] is set.
//!
//! The queue is only changed with its mutex held, and [`WAITERS`] is set (before a waiter is
//! pushed) and cleared (when the last one leaves) under the same mutex, so with the mutex held
//! "[`WAITERS`] set" and "queue not empty" are the same thing. While it is set:
//!
//! * the word is larger than any limit, so the fast path fails: nobody overtakes a waiter;
//! * a release does not decrement: it takes the mutex and *hands its permit over* to the first
//!   waiter (removing the waiter from the queue; the count is unchanged) before waking it. If
//!   the queue emptied in between (the waiter left), it decrements then, under the mutex. The
//!   count never dips during a hand-over, so a newcomer cannot take the permit being handed
//!   over and leave the waiter to be served with a second one.
//!
//! A waiter is granted exactly when its ticket is no longer in the queue and it did not remove
//! it itself, so a waiter that gives up (its `max_wait` ran out, or it was dropped) learns under
//! the mutex, in the same step as it leaves, whether a permit was handed to it just before; if
//! so it owns that permit and uses or releases it. No permit is lost at the hand-off.

use std::collections::VecDeque;
use std::fmt;
use std::task::{Poll, Waker};

use crate::sync::{AtomicU64, Mutex, Ordering, Padded, lock};

/// Set in `state` while the queue is not empty.
const WAITERS: u64 = 1 << 63;

pub(crate) struct Semaphore {
    state: Padded<AtomicU64>,
    max: u64,
    max_queued: usize,
    queue: Mutex<Queue>,
}

struct Queue {
    /// Sorted by ticket (tickets only grow and waiters only join at the back).
    waiters: VecDeque<Waiter>,
    next_ticket: u64,
}

struct Waiter {
    ticket: u64,
    waker: Option<Waker>,
}

impl Queue {
    fn find(&self, ticket: Ticket) -> Option<usize> {
        self.waiters
            .binary_search_by_key(&ticket.0, |w| w.ticket)
            .ok()
    }
}

/// A place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(pub(crate) u64);

/// What [`Semaphore::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// A permit was free after all; the caller holds it.
    Acquired,
    /// The caller waits with this ticket.
    Queued(Ticket),
    /// No permit and no room in the queue.
    Full,
}

impl Semaphore {
    /// `max` permits (at most [`super::MAX_CONCURRENT`]), and a queue of `max_queued` (0: never
    /// queue).
    pub(crate) fn new(max: u64, max_queued: usize) -> Self {
        debug_assert!(max < WAITERS);
        Self {
            state: Padded(AtomicU64::new(0)),
            max,
            max_queued,
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                next_ticket: 0,
            }),
        }
    }

    /// Takes a permit if one is free and nobody waits.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let max = self.max;
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| {
                (s < max).then_some(s + 1)
            })
            .is_ok()
    }

    /// Gives a permit back, handing it to the first waiter if there is one.
    #[inline]
    pub(crate) fn release(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & WAITERS != 0 {
                return self.hand_over();
            }
            match self
                .state
                .compare_exchange_weak(s, s - 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    /// Passes the permit to the first waiter, under the mutex and without taking it off the
    /// count: between a decrement and the hand-over a newcomer could take the freed permit,
    /// and the waiter then be served with a second one.
    #[cold]
    fn hand_over(&self) {
        let waker = {
            let mut queue = lock(&self.queue);
            let Some(waiter) = queue.waiters.pop_front() else {
                // The waiters left before we got here (and cleared WAITERS): the permit is
                // free.
                self.state.fetch_sub(1, Ordering::AcqRel);
                return;
            };
            // The permit is the waiter's now; clear WAITERS if it was the last one.
            if queue.waiters.is_empty() {
                self.state.fetch_and(!WAITERS, Ordering::AcqRel);
            }
            waiter.waker
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Takes a permit if one is free, else joins the back of the queue if it has room.
    pub(crate) fn enqueue(&self) -> Enqueued {
        let mut queue = lock(&self.queue);
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s < self.max {
                match self.state.compare_exchange_weak(
                    s,
                    s + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Enqueued::Acquired,
                    Err(actual) => {
                        s = actual;
                        continue;
                    }
                }
            }
            if queue.waiters.len() >= self.max_queued {
                return Enqueued::Full;
            }
            if s & WAITERS == 0 {
                // Fails if a permit came back meanwhile: then take it instead.
                if let Err(actual) = self.state.compare_exchange_weak(
                    s,
                    s | WAITERS,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    s = actual;
                    continue;
                }
            }
            break;
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiters.push_back(Waiter {
            ticket,
            waker: None,
        });
        Enqueued::Queued(Ticket(ticket))
    }

    /// `Ready` once a permit has been handed to `ticket` (the caller then holds it); otherwise
    /// `waker` is woken when that happens.
    pub(crate) fn poll_ticket(&self, ticket: Ticket, waker: &Waker) -> Poll<()> {
        let mut queue = lock(&self.queue);
        let Some(i) = queue.find(ticket) else {
            return Poll::Ready(());
        };
        let slot = &mut queue.waiters[i].waker;
        if slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return Poll::Pending;
        }
        let old = slot.replace(waker.clone());
        drop(queue);
        drop(old); // outside the lock: dropping a waker may run foreign code
        Poll::Pending
    }

    /// Leaves the queue. Returns whether a permit had already been handed to `ticket`: if so
    /// the caller holds it.
    pub(crate) fn cancel(&self, ticket: Ticket) -> bool {
        let mut queue = lock(&self.queue);
        let Some(i) = queue.find(ticket) else {
            return true;
        };
        let waiter = queue.waiters.remove(i);
        if queue.waiters.is_empty() {
            self.state.fetch_and(!WAITERS, Ordering::AcqRel);
        }
        drop(queue);
        drop(waiter);
        false
    }

    /// Permits taken.
    pub(crate) fn in_flight(&self) -> u64 {
        self.state.load(Ordering::Relaxed) & !WAITERS
    }

    /// Calls waiting for a permit.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.queue).waiters.len()
    }

    /// Checks the invariants that hold when no call is between two steps (for tests).
    #[cfg(palisade_loom)]
    pub(crate) fn check_at_rest(&self) {
        let queue = lock(&self.queue);
        let s = self.state.load(Ordering::SeqCst);
        assert_eq!(
            s & WAITERS != 0,
            !queue.waiters.is_empty(),
            "WAITERS bit out of step with the queue"
        );
        assert!(s & !WAITERS <= self.max, "more permits than the limit");
        if !queue.waiters.is_empty() {
            assert_eq!(
                s & !WAITERS,
                self.max,
                "a waiter waits while a permit is free"
            );
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("max", &self.max)
            .field("in_flight", &self.in_flight())
            .field("max_queued", &self.max_queued)
            .finish_non_exhaustive()
    }
}
