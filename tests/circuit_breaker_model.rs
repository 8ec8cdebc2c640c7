//! The breaker's state machine against a sequential reference model (`tests/support/model.rs`):
//! random sequences of admissions, outcomes, drops, time and operator actions, made through
//! several handles to the one shared machine (as a layer's service clones share it), must give
//! the same decisions, states and counts.

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade::circuit_breaker::{
    Backoff, CircuitBreakerConfig, Permit, SlidingWindow, State, StateMachine,
};
use palisade::classify::Outcome;
use proptest::prelude::*;
use support::model::{Kind, Model, ModelPermit, ModelSnapshot};

#[derive(Debug, Clone)]
enum Op {
    Admit,
    /// Complete the outstanding call at this index (mod len).
    Complete {
        idx: usize,
        kind: Kind,
        slow: bool,
        pushback_ms: Option<u64>,
    },
    /// Drop the outstanding call at this index (cancellation).
    Drop(usize),
    Advance(u64),
    ForceOpen,
    Disable,
    MetricsOnly,
    Reset,
    /// Go on through another handle to the shared machine.
    Clone,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Admit),
        6 => (any::<usize>(), prop_oneof![3 => Just(Kind::Success), 3 => Just(Kind::Failure), 1 => Just(Kind::Ignored)], any::<bool>(), prop::option::weighted(0.1, 0u64..200_000))
            .prop_map(|(idx, kind, slow, pushback_ms)| Op::Complete { idx, kind, slow, pushback_ms }),
        1 => any::<usize>().prop_map(Op::Drop),
        3 => prop_oneof![0u64..50, 0u64..2_000, Just(1_000u64), Just(10_000u64)].prop_map(Op::Advance),
        1 => Just(Op::ForceOpen).prop_filter("rare", |_| true),
        1 => Just(Op::Disable),
        1 => Just(Op::MetricsOnly),
        1 => Just(Op::Reset),
        1 => Just(Op::Clone),
    ]
}

fn config() -> impl Strategy<Value = CircuitBreakerConfig> {
    (
        prop_oneof![
            (1u32..12).prop_map(SlidingWindow::Count),
            (20u64..5_000).prop_map(|ms| SlidingWindow::Time(Duration::from_millis(ms))),
        ],
        1u32..12,
        prop_oneof![Just(0.5), Just(1.0), Just(0.3), 0.05f64..1.0],
        prop::option::of(Just(Duration::from_millis(100))),
        prop_oneof![Just(1.0), Just(0.5)],
        prop::option::of(1u32..5),
        (1u64..3_000, prop::option::of((1.0f64..3.0, 0u64..20_000))),
        (
            1u32..5,
            prop_oneof![Just(0.5), Just(1.0), 0.1f64..1.0],
            1u64..5_000,
        ),
        prop_oneof![Just(0u64), Just(60_000), Just(300_000)],
    )
        .prop_map(
            |(
                window,
                min,
                rate,
                slow,
                slow_rate,
                consecutive,
                (open, backoff),
                (probes, probe_rate, wait),
                pushback,
            )| {
                let mut c = CircuitBreakerConfig::default();
                c.window = window;
                c.minimum_calls = match window {
                    SlidingWindow::Count(n) => min.min(n),
                    SlidingWindow::Time(_) => min,
                };
                c.failure_rate = rate;
                c.slow_call_duration = slow;
                c.slow_call_rate = slow_rate;
                c.consecutive_failures = consecutive;
                c.open_duration = Duration::from_millis(open);
                c.backoff = backoff.map(|(multiplier, extra)| Backoff {
                    multiplier,
                    max: Duration::from_millis(open + extra),
                    jitter: 0.0,
                });
                c.permitted_probes = probes;
                c.probe_success_rate = probe_rate;
                c.max_half_open_wait = Duration::from_millis(wait);
                c.max_pushback = Duration::from_millis(pushback);
                c
            },
        )
}

fn snapshot_of(sm: &StateMachine, t: Duration) -> ModelSnapshot {
    let s = sm.snapshot(t);
    ModelSnapshot {
        state: s.state,
        generation: s.generation,
        calls: s.calls,
        failures: s.failures,
        slow_calls: s.slow_calls,
        rejected: s.rejected,
        probes_in_flight: s.probes_in_flight,
        probe_successes: s.probe_successes,
        probe_failures: s.probe_failures,
        consecutive_trips: s.consecutive_trips,
        retry_after: s.retry_after.map(|d| d.as_nanos() as u64),
    }
}

fn run(config: CircuitBreakerConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let shared = Arc::new(StateMachine::new(&config).unwrap());
    let mut handles = vec![shared.clone(), shared];
    let mut current = 0;
    let mut model = Model::new(&config);
    let mut t: u64 = 0;
    let mut outstanding: Vec<(Permit, ModelPermit)> = Vec::new();
    let slow_ns = 100_000_000u64;
    for op in ops {
        let sm = &handles[current];
        let now = Duration::from_nanos(t);
        match op {
            Op::Admit => {
                let real = sm.admit(now);
                let expected = model.admit(t);
                match (real, expected) {
                    (Ok(p), Ok(m)) => {
                        prop_assert_eq!(p.is_probe(), m.probe);
                        prop_assert_eq!(p.generation(), m.generation);
                        outstanding.push((p, m));
                    }
                    (Err(r), Err((reason, retry))) => {
                        prop_assert_eq!(r.reason, reason);
                        prop_assert_eq!(r.retry_at.map(|d| d.as_nanos() as u64), retry);
                    }
                    (real, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "admit differs: real {real:?}, model {expected:?}"
                        )));
                    }
                }
            }
            Op::Complete {
                idx,
                kind,
                slow,
                pushback_ms,
            } => {
                if outstanding.is_empty() {
                    continue;
                }
                let (p, m) = outstanding.remove(idx % outstanding.len());
                let duration = if slow { slow_ns } else { 1_000 };
                let pushback = pushback_ms.map(|ms| ms * 1_000_000);
                let mut outcome = match kind {
                    Kind::Success => Outcome::success(),
                    Kind::Failure => Outcome::failure(),
                    Kind::Ignored => Outcome::ignored(),
                }
                .with_duration(Duration::from_nanos(duration));
                if let Some(pb) = pushback {
                    outcome = outcome.with_pushback(Duration::from_nanos(pb));
                }
                sm.record(p, outcome, now);
                model.record(m, kind, duration, pushback, t);
            }
            Op::Drop(idx) => {
                if outstanding.is_empty() {
                    continue;
                }
                let (p, m) = outstanding.remove(idx % outstanding.len());
                sm.release(p);
                model.release(m);
            }
            Op::Advance(ms) => t += ms * 1_000_000,
            Op::ForceOpen => {
                sm.force_open(now);
                model.operator(State::ForcedOpen);
            }
            Op::Disable => {
                sm.disable(now);
                model.operator(State::Disabled);
            }
            Op::MetricsOnly => {
                sm.metrics_only(now);
                model.operator(State::MetricsOnly);
            }
            Op::Reset => {
                sm.reset(now);
                model.operator(State::Closed);
            }
            Op::Clone => {
                handles.push(handles[current].clone());
                current = handles.len() - 1;
            }
        }
        let now = Duration::from_nanos(t);
        prop_assert_eq!(snapshot_of(&handles[current], now), model.snapshot(t));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_the_reference_model(config in config(), ops in prop::collection::vec(op(), 1..120)) {
        run(config, ops)?;
    }
}
