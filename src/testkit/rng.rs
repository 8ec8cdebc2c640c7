//! A tiny seeded PRNG (SplitMix64) whose state is one atomic word, so that every clone of a
//! service, and every connection of a server, draws from one reproducible sequence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One SplitMix64 output for an already advanced state.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 sequence shared by reference: each draw is one `fetch_add`.
#[derive(Debug)]
pub(crate) struct SharedRng {
    state: AtomicU64,
}

impl SharedRng {
    pub(crate) const fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// Starts the sequence again from `seed`.
    pub(crate) fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    /// The next two numbers of the sequence, drawn together so that concurrent callers each
    /// get a consecutive pair.
    pub(crate) fn next_pair(&self) -> Draw {
        let old = self
            .state
            .fetch_add(GAMMA.wrapping_mul(2), Ordering::Relaxed);
        Draw {
            first: mix(old.wrapping_add(GAMMA)),
            second: mix(old.wrapping_add(GAMMA.wrapping_mul(2))),
        }
    }
}

/// Two random numbers for one call: the first decides latency, the second the fault.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draw {
    pub(crate) first: u64,
    pub(crate) second: u64,
}

/// A uniform number in `[0, 1)` from 53 random bits.
pub(crate) fn unit(r: u64) -> f64 {
    (r >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether an event of probability `p` happens for the random number `r`. `p >= 1` always,
/// `p <= 0` (and NaN) never.
pub(crate) fn chance(r: u64, p: f64) -> bool {
    unit(r) < p
}

/// A duration uniform in `[min, max]` for the random number `r` (`min` if `max <= min`).
/// Spans longer than `u64::MAX` nanoseconds (584 years) are shortened to that.
pub(crate) fn between(r: u64, min: Duration, max: Duration) -> Duration {
    let span = max.saturating_sub(min);
    if span.is_zero() {
        return min;
    }
    let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    // (span * r) / 2^64, plus one so that `max` itself can be drawn.
    let offset = ((u128::from(span_nanos) + 1) * u128::from(r)) >> 64;
    let offset = u64::try_from(offset).unwrap_or(u64::MAX);
    min.saturating_add(Duration::from_nanos(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a = SharedRng::new(7);
        let b = SharedRng::new(7);
        for _ in 0..100 {
            let (x, y) = (a.next_pair(), b.next_pair());
            assert_eq!((x.first, x.second), (y.first, y.second));
        }
        a.reseed(7);
        let c = SharedRng::new(7);
        assert_eq!(a.next_pair().first, c.next_pair().first);
    }

    #[test]
    fn chance_bounds() {
        for r in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(chance(r, 1.0));
            assert!(!chance(r, 0.0));
            assert!(!chance(r, f64::NAN));
        }
    }

    #[test]
    fn between_stays_in_range() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(20);
        assert_eq!(between(0, min, max), min);
        assert!(between(u64::MAX, min, max) <= max);
        assert_eq!(between(u64::MAX, max, min), max);
        let _ = between(u64::MAX, Duration::ZERO, Duration::MAX);
    }
}
