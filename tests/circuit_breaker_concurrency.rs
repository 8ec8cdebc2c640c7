//! Admission bounds under real concurrency: many clones racing at the Open → HalfOpen instant.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State, StateMachine};
use palisade::classify::Outcome;

const THREADS: usize = 16;

#[test]
fn sixteen_racers_at_the_half_open_instant_admit_exactly_the_permitted_probes() {
    for probes in [1u32, 3, 5] {
        for iteration in 0..200 {
            let mut config = CircuitBreakerConfig::default();
            config.window = SlidingWindow::Count(2);
            config.minimum_calls = 1;
            config.permitted_probes = probes;
            config.open_duration = Duration::from_secs(1);
            let sm = Arc::new(StateMachine::new(&config).unwrap());
            let p = sm.admit(Duration::ZERO).unwrap();
            sm.record(p, Outcome::failure(), Duration::ZERO);
            assert_eq!(sm.snapshot(Duration::ZERO).state, State::Open);

            // Everyone arrives exactly when the open duration ends.
            let at = Duration::from_secs(1);
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let sm = sm.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        sm.admit(at).ok()
                    })
                })
                .collect();
            let permits: Vec<_> = handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect();
            assert_eq!(
                permits.len(),
                probes as usize,
                "iteration {iteration}: {probes} probes permitted"
            );
            assert!(permits.iter().all(|p| p.is_probe()));
            let snap = sm.snapshot(at);
            assert_eq!(snap.state, State::HalfOpen);
            assert_eq!(snap.probes_in_flight, probes);
            assert_eq!(snap.rejected, (THREADS - probes as usize) as u64);
            // Dropping them all gives every slot back.
            for p in permits {
                sm.release(p);
            }
            assert_eq!(sm.snapshot(at).probes_in_flight, 0);
        }
    }
}

#[test]
fn concurrent_probe_outcomes_close_exactly_once() {
    for _ in 0..200 {
        let mut config = CircuitBreakerConfig::default();
        config.window = SlidingWindow::Count(2);
        config.minimum_calls = 1;
        config.permitted_probes = 8;
        config.probe_success_rate = 0.5;
        config.open_duration = Duration::from_secs(1);
        let transitions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t2 = transitions.clone();
        let sm = Arc::new(
            StateMachine::new(&config)
                .unwrap()
                .with_observer(move |_, t| {
                    if t.to == State::Closed {
                        t2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }),
        );
        let p = sm.admit(Duration::ZERO).unwrap();
        sm.record(p, Outcome::failure(), Duration::ZERO);
        let at = Duration::from_secs(1);
        let permits: Vec<_> = (0..8).map(|_| sm.admit(at).unwrap()).collect();
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = permits
            .into_iter()
            .map(|p| {
                let sm = sm.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    sm.record(p, Outcome::success(), at);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let snap = sm.snapshot(at);
        assert_eq!(snap.state, State::Closed);
        assert_eq!(
            snap.calls, 0,
            "late probe outcomes do not leak into the new window"
        );
        assert_eq!(transitions.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

#[test]
fn an_armed_open_timer_lets_rejections_skip_the_clock() {
    let mut config = CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(1);
    config.minimum_calls = 1;
    config.open_duration = Duration::from_secs(5);
    let sm = StateMachine::new(&config).unwrap();
    let p = sm.admit(Duration::ZERO).unwrap();
    sm.record(p, Outcome::failure(), Duration::ZERO);
    let generation = sm.snapshot(Duration::ZERO).generation;
    assert!(sm.arm_open_timer(generation));
    assert!(!sm.arm_open_timer(generation), "armed once");
    // While armed, a rejection never asks for the time, and says when to come back.
    let rejection = sm
        .admit(|| -> Duration { panic!("the clock was read") })
        .unwrap_err();
    assert_eq!(rejection.retry_at, Some(Duration::from_secs(5)));
    assert_eq!(
        rejection.retry_after(Duration::from_secs(1)),
        Some(Duration::from_secs(4))
    );
    // Fired early: the clock decides, and it is still open.
    sm.open_timer_fired(generation);
    assert!(sm.admit(Duration::from_millis(4_999)).is_err());
    assert!(sm.admit(Duration::from_secs(5)).unwrap().is_probe());
    // A stale generation cannot arm or fire anything.
    assert!(!sm.arm_open_timer(generation));
}
