//! A small, obviously-sequential reference model of the circuit breaker, written from the
//! documented rules (not from the implementation), for the proptest in
//! `tests/circuit_breaker_model.rs`.
#![allow(dead_code)]

use std::collections::VecDeque;

use palisade::circuit_breaker::{CircuitBreakerConfig, RejectReason, SlidingWindow, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Success,
    Failure,
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPermit {
    pub generation: u32,
    pub probe: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSnapshot {
    pub state: State,
    pub generation: u32,
    pub calls: u32,
    pub failures: u32,
    pub slow_calls: u32,
    pub rejected: u64,
    pub probes_in_flight: u32,
    pub probe_successes: u32,
    pub probe_failures: u32,
    pub consecutive_trips: u32,
    pub retry_after: Option<u64>,
}

pub struct Model {
    cfg: CircuitBreakerConfig,
    pub state: State,
    pub generation: u32,
    /// (time in ns, failed, slow), oldest first.
    window: VecDeque<(u64, bool, bool)>,
    consecutive: u32,
    open_until: u64,
    /// The start of the current busy spell (probes in flight).
    half_open_since: u64,
    /// The time of the trial's ended busy spells.
    busy: u64,
    /// The latest time a probe's admission or record read.
    seen: u64,
    pushback_until: u64,
    in_flight: u32,
    ok: u32,
    bad: u32,
    trips: u32,
    rejected: u64,
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Model {
    pub fn new(cfg: &CircuitBreakerConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            state: State::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            half_open_since: 0,
            busy: 0,
            seen: 0,
            pushback_until: 0,
            in_flight: 0,
            ok: 0,
            bad: 0,
            trips: 0,
            rejected: 0,
        }
    }

    fn required(&self) -> u32 {
        let p = self.cfg.permitted_probes;
        (((self.cfg.probe_success_rate * f64::from(p)) - 1e-9).ceil() as u32).clamp(1, p)
    }

    fn bucket(&self) -> Option<u64> {
        match self.cfg.window {
            SlidingWindow::Time(d) => Some(ns(d).div_ceil(20).max(1)),
            SlidingWindow::Count(_) => None,
        }
    }

    /// (calls, failures, slow) in the window at time `t`.
    fn counts(&self, t: u64) -> (u32, u32, u32) {
        let mut c = (0, 0, 0);
        for &(at, failed, slow) in &self.window {
            if let Some(b) = self.bucket()
                && t / b >= at / b + 20
            {
                continue;
            }
            c.0 += 1;
            c.1 += u32::from(failed);
            c.2 += u32::from(slow);
        }
        c
    }

    fn open_for(&self, trips: u32, t: u64) -> u64 {
        let base = ns(self.cfg.open_duration);
        let d = match self.cfg.backoff {
            None => base,
            Some(b) => {
                let max = ns(b.max);
                let grown = (base as f64 * b.multiplier.powi(trips as i32 - 1)).min(max as f64);
                (grown as u64).clamp(1, max.max(1))
            }
        };
        t.saturating_add(d).max(self.pushback_until) - t
    }

    fn open_now(&mut self, t: u64) {
        let d = self.open_for(self.trips, t);
        self.open_until = t.saturating_add(d);
        self.state = State::Open;
        self.generation += 1;
    }

    fn enter_windowed(&mut self, to: State) {
        self.state = to;
        self.generation += 1;
        self.window.clear();
        self.consecutive = 0;
        self.pushback_until = 0;
        self.trips = 0;
        self.in_flight = 0;
        self.ok = 0;
        self.bad = 0;
    }

    fn reopen(&mut self, t: u64) {
        self.trips += 1;
        self.in_flight = 0;
        self.ok = 0;
        self.bad = 0;
        self.open_now(t);
    }

    /// The trial's time with probes in flight, up to `t`.
    fn busy_at(&self, t: u64) -> u64 {
        let spell = if self.in_flight > 0 {
            t.saturating_sub(self.half_open_since)
        } else {
            0
        };
        self.busy.saturating_add(spell)
    }

    pub fn admit(&mut self, t: u64) -> Result<ModelPermit, (RejectReason, Option<u64>)> {
        loop {
            match self.state {
                State::Closed | State::Disabled | State::MetricsOnly => {
                    return Ok(ModelPermit {
                        generation: self.generation,
                        probe: false,
                    });
                }
                State::ForcedOpen => {
                    self.rejected += 1;
                    return Err((RejectReason::ForcedOpen, None));
                }
                State::Open => {
                    if t < self.open_until {
                        self.rejected += 1;
                        return Err((RejectReason::Open, Some(self.open_until)));
                    }
                    self.state = State::HalfOpen;
                    self.generation += 1;
                    self.half_open_since = t;
                    self.busy = 0;
                    self.seen = t;
                    self.in_flight = 0;
                    self.ok = 0;
                    self.bad = 0;
                }
                State::HalfOpen => {
                    self.seen = self.seen.max(t);
                    let wait = ns(self.cfg.max_half_open_wait);
                    let busy = self.busy_at(t);
                    if busy >= wait {
                        self.reopen(t);
                        continue;
                    }
                    if self.in_flight + self.ok + self.bad >= self.cfg.permitted_probes {
                        self.rejected += 1;
                        let by = t.saturating_add(wait - busy);
                        return Err((RejectReason::HalfOpenFull, Some(by)));
                    }
                    if self.in_flight == 0 {
                        self.half_open_since = t;
                    }
                    self.in_flight += 1;
                    return Ok(ModelPermit {
                        generation: self.generation,
                        probe: true,
                    });
                }
            }
        }
    }

    /// A permit given back with no clock: a probe of the current trial frees its slot, and
    /// nothing else happens.
    pub fn release(&mut self, p: ModelPermit) {
        if p.probe && p.generation == self.generation && self.state == State::HalfOpen {
            self.in_flight -= 1;
            if self.in_flight == 0 {
                let spell = self.seen.saturating_sub(self.half_open_since);
                self.busy = self.busy.saturating_add(spell);
            }
        }
    }

    pub fn record(
        &mut self,
        p: ModelPermit,
        kind: Kind,
        duration: u64,
        pushback: Option<u64>,
        t: u64,
    ) {
        let slow = self
            .cfg
            .slow_call_duration
            .is_some_and(|d| duration >= ns(d));
        if p.generation != self.generation {
            return; // stale: changes nothing
        }
        if p.probe {
            if self.state != State::HalfOpen {
                return;
            }
            self.seen = self.seen.max(t);
            let spell = t.saturating_sub(self.half_open_since);
            self.in_flight -= 1;
            let (good, bad) = match kind {
                Kind::Success if !slow => (1, 0),
                Kind::Success | Kind::Failure => (0, 1),
                Kind::Ignored => (0, 0),
            };
            self.ok += good;
            self.bad += bad;
            let busy = if self.in_flight == 0 {
                self.busy = self.busy.saturating_add(spell);
                self.busy
            } else {
                self.busy.saturating_add(spell)
            };
            if kind == Kind::Failure {
                self.pushback(pushback, t);
            }
            let required = self.required();
            if busy >= ns(self.cfg.max_half_open_wait) {
                self.reopen(t);
            } else if good + bad == 0 {
                // ignored
            } else if self.ok >= required {
                self.enter_windowed(State::Closed);
            } else if self.bad > self.cfg.permitted_probes - required {
                self.reopen(t);
            }
            return;
        }
        if !self.state.admits_all() {
            return;
        }
        let failed = match kind {
            Kind::Ignored => return,
            Kind::Failure => true,
            Kind::Success => false,
        };
        if failed {
            self.pushback(pushback, t);
        }
        let consecutive_trip = match self.cfg.consecutive_failures {
            Some(n) if failed => {
                self.consecutive += 1;
                self.consecutive >= n
            }
            _ => {
                self.consecutive = 0;
                false
            }
        };
        self.window.push_back((t, failed, slow));
        if let SlidingWindow::Count(n) = self.cfg.window {
            while self.window.len() > n as usize {
                self.window.pop_front();
            }
        }
        let (calls, failures, slows) = self.counts(t);
        // Every outcome checks both rates: a success can make up `minimum_calls` behind
        // failures, or follow the expiry of older successes in a time window.
        let rate_trip = calls >= self.cfg.minimum_calls
            && (f64::from(failures) / f64::from(calls) >= self.cfg.failure_rate
                || (self.cfg.slow_call_duration.is_some()
                    && f64::from(slows) / f64::from(calls) >= self.cfg.slow_call_rate));
        if rate_trip || consecutive_trip {
            match self.state {
                State::Closed => {
                    self.trips = 1;
                    self.open_now(t);
                }
                State::MetricsOnly => {
                    self.window.clear();
                    self.consecutive = 0;
                }
                _ => {}
            }
        }
    }

    fn pushback(&mut self, pushback: Option<u64>, t: u64) {
        if let Some(pb) = pushback {
            let capped = pb.min(ns(self.cfg.max_pushback));
            if capped > 0 {
                self.pushback_until = self.pushback_until.max(t.saturating_add(capped));
            }
        }
    }

    pub fn operator(&mut self, to: State) {
        if to.admits_all() {
            self.enter_windowed(to);
        } else {
            self.state = to;
            self.generation += 1;
            self.trips = 0;
            self.in_flight = 0;
            self.ok = 0;
            self.bad = 0;
        }
    }

    pub fn snapshot(&mut self, t: u64) -> ModelSnapshot {
        if self.state == State::HalfOpen && self.busy_at(t) >= ns(self.cfg.max_half_open_wait) {
            self.reopen(t);
        }
        let (calls, failures, slow_calls) = if self.state.admits_all() {
            self.counts(t)
        } else {
            (0, 0, 0)
        };
        let half = self.state == State::HalfOpen;
        ModelSnapshot {
            state: self.state,
            generation: self.generation,
            calls,
            failures,
            slow_calls,
            rejected: self.rejected,
            probes_in_flight: if half { self.in_flight } else { 0 },
            probe_successes: if half { self.ok } else { 0 },
            probe_failures: if half { self.bad } else { 0 },
            consecutive_trips: self.trips,
            retry_after: (self.state == State::Open).then(|| self.open_until.saturating_sub(t)),
        }
    }
}
