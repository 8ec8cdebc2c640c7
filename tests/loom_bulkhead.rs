//! `loom` models of the bulkhead's lock-free permit counter and its hand-over to waiters. Run
//! with `RUSTFLAGS="--cfg palisade_loom" CARGO_TARGET_DIR=target/loom cargo test --release
//! --features __loom --test loom_bulkhead`.
#![cfg(palisade_loom)]

use loom::sync::Arc;
use loom::thread;
use palisade::bulkhead::loom_model::{Enqueued, Semaphore};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A semaphore of `max` permits, all taken, with `waiters` calls queued behind them.
fn full(max: u64, waiters: usize) -> (Semaphore, Vec<u64>) {
    let sem = Semaphore::new(max, 4);
    for _ in 0..max {
        assert!(sem.try_acquire());
    }
    let tickets = (0..waiters)
        .map(|_| match sem.enqueue() {
            Enqueued::Queued(t) => t,
            other => panic!("expected to queue, got {other:?}"),
        })
        .collect();
    (sem, tickets)
}

#[test]
fn racing_acquires_never_exceed_the_limit() {
    model(|| {
        let sem = Arc::new(Semaphore::new(2, 0));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let sem = sem.clone();
                thread::spawn(move || sem.try_acquire())
            })
            .collect();
        let mine = sem.try_acquire();
        let won = racers
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&w| w)
            .count()
            + usize::from(mine);
        assert_eq!(won, 2, "exactly the limit is admitted");
        assert_eq!(sem.in_flight(), 2);
        for _ in 0..won {
            sem.release();
        }
        sem.check_at_rest();
        assert_eq!(sem.in_flight(), 0);
    });
}

#[test]
fn a_release_racing_an_acquire_loses_nothing() {
    model(|| {
        let (sem, _) = full(1, 0);
        let sem = Arc::new(sem);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        let got = sem.try_acquire();
        releaser.join().unwrap();
        assert_eq!(sem.in_flight(), u64::from(got));
        if got {
            sem.release();
        }
        sem.check_at_rest();
        assert_eq!(sem.in_flight(), 0);
    });
}

/// The tokio-semaphore hand-off pitfall: the holder's release hands the permit to the waiter
/// just as the waiter gives up. Whichever comes first, the permit is not lost.
#[test]
fn a_release_racing_a_waiter_giving_up_loses_no_permit() {
    model(|| {
        let (sem, tickets) = full(1, 1);
        let sem = Arc::new(sem);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        if sem.cancel(tickets[0]) {
            // Handed over before we left: it is ours, and we give it back.
            sem.release();
        }
        releaser.join().unwrap();
        sem.check_at_rest();
        assert_eq!((sem.in_flight(), sem.queued()), (0, 0));
    });
}

/// A waiter that joins as the last permit comes back is never left waiting with the permit
/// free (no lost wake-up).
#[test]
fn a_release_racing_an_enqueue_never_strands_the_waiter() {
    model(|| {
        let (sem, _) = full(1, 0);
        let sem = Arc::new(sem);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        let joined = sem.enqueue();
        releaser.join().unwrap();
        match joined {
            Enqueued::Acquired => {}
            Enqueued::Queued(t) => assert!(sem.granted(t), "queued while a permit was free"),
            Enqueued::Full => panic!("the queue had room"),
        }
        assert_eq!((sem.in_flight(), sem.queued()), (1, 0));
        sem.release();
        sem.check_at_rest();
        assert_eq!(sem.in_flight(), 0);
    });
}

/// While a permit is handed to a waiter, a caller on the fast path cannot take it.
#[test]
fn nobody_overtakes_a_waiter_during_a_hand_over() {
    model(|| {
        let (sem, tickets) = full(1, 1);
        let sem = Arc::new(sem);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        let newcomer = {
            let sem = sem.clone();
            thread::spawn(move || sem.try_acquire())
        };
        releaser.join().unwrap();
        assert!(
            !newcomer.join().unwrap(),
            "the newcomer overtook the waiter"
        );
        assert!(sem.granted(tickets[0]));
        assert_eq!((sem.in_flight(), sem.queued()), (1, 0));
        sem.release();
        sem.check_at_rest();
    });
}

/// Two releases and two waiters, one giving up: every permit ends up held or free, once.
#[test]
fn two_releases_racing_a_waiter_giving_up() {
    model(|| {
        let (sem, tickets) = full(2, 2);
        let sem = Arc::new(sem);
        let releasers = releasers(&sem, 2);
        let mut held = 0;
        if sem.cancel(tickets[0]) {
            held += 1;
        }
        for r in releasers {
            r.join().unwrap();
        }
        // Both releases are done: the other waiter was served.
        assert!(sem.granted(tickets[1]));
        held += 1;
        release_all_within(&sem, held, 2);
    });
}

/// A release whose hand-over is delayed while the last waiter gives up, a newcomer takes the
/// free permit and another caller queues: the late hand-over must not serve that caller too
/// (two calls in flight under a limit of one).
#[test]
fn a_late_hand_over_never_serves_a_newcomer_beyond_the_limit() {
    model(|| {
        let (sem, tickets) = full(1, 1);
        let sem = Arc::new(sem);
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        };
        let mut held = 0;
        if sem.cancel(tickets[0]) {
            held += 1; // handed over before it gave up
        }
        if sem.try_acquire() {
            held += 1;
        }
        let late = sem.enqueue();
        releaser.join().unwrap();
        held += holds(&sem, late);
        release_all_within(&sem, held, 1);
    });
}

/// Two releases racing a newcomer and a late caller, with one waiter: the waiter is served
/// first, and nobody beyond the limit.
#[test]
fn two_releases_racing_newcomers_serve_the_waiter_and_nobody_beyond_the_limit() {
    model(|| {
        let (sem, tickets) = full(2, 1);
        let sem = Arc::new(sem);
        let releasers = releasers(&sem, 2);
        let mut held = 0;
        if sem.try_acquire() {
            held += 1;
        }
        let late = sem.enqueue();
        for r in releasers {
            r.join().unwrap();
        }
        assert!(sem.granted(tickets[0]), "the waiter was overtaken");
        held += 1 + holds(&sem, late);
        release_all_within(&sem, held, 2);
    });
}

/// `n` threads, each giving one permit back.
fn releasers(sem: &Arc<Semaphore>, n: usize) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let sem = sem.clone();
            thread::spawn(move || sem.release())
        })
        .collect()
}

/// 1 if a caller that enqueued holds a permit once the races are over: taken at once, or
/// served while it waited (one still waiting leaves the queue).
fn holds(sem: &Semaphore, late: Enqueued) -> u64 {
    match late {
        Enqueued::Acquired => 1,
        Enqueued::Queued(t) => u64::from(sem.granted(t) || sem.cancel(t)),
        Enqueued::Full => 0,
    }
}

/// Checks that the `held` permits are within `max` and counted, gives them back, and checks
/// the semaphore is at rest.
fn release_all_within(sem: &Semaphore, held: u64, max: u64) {
    assert!(held <= max, "{held} calls in flight under a limit of {max}");
    assert_eq!(sem.in_flight(), held);
    for _ in 0..held {
        sem.release();
    }
    sem.check_at_rest();
    assert_eq!((sem.in_flight(), sem.queued()), (0, 0));
}
