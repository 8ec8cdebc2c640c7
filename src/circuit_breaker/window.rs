//! Sliding windows of outcomes, updated without locks.
//!
//! * [`CountWindow`]: the last `size` outcomes, as two bitmaps (failed, slow) and a cursor.
//!   Recording a fast success into a full window without failures writes nothing (all its
//!   slots are alike); otherwise it moves the cursor (one compare-and-swap) and reads one
//!   bitmap word. The bitmaps and the counters are written only when an outcome flips a bit.
//! * [`TimeWindow`]: the outcomes of the last `length`, in [`BUCKETS`] buckets of
//!   `length / BUCKETS`, one atomic word each (tag, calls, failures, slow calls).
//!
//! Both carry an epoch (the generation of the closed state they belong to): an outcome from
//! another epoch is dropped, so a call admitted before a state change cannot touch the window
//! of the state after it.

use crate::sync::{AtomicU32, AtomicU64, Ordering, Padded};

/// Counts read from a window.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
/// use palisade::classify::Outcome;
///
/// let mut config = CircuitBreakerConfig::default();
/// config.slow_call_duration = Some(Duration::from_secs(1));
/// let sm = StateMachine::new(&config).unwrap();
/// for (outcome, took) in [
///     (Outcome::success(), 2),
///     (Outcome::failure(), 0),
///     (Outcome::success(), 0),
/// ] {
///     let permit = sm.admit(Duration::ZERO).unwrap();
///     sm.record(
///         permit,
///         outcome.with_duration(Duration::from_secs(took)),
///         Duration::ZERO,
///     );
/// }
/// let s = sm.snapshot(Duration::ZERO);
/// assert_eq!((s.calls, s.failures, s.slow_calls), (3, 1, 1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Outcomes (successes and failures) in the window.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls (successes or failures that took at least the slow-call duration).
    pub slow_calls: u32,
}

impl WindowCounts {
    /// Failures over calls, 0 when the window is empty.
    ///
    /// ```
    /// use palisade::circuit_breaker::WindowCounts;
    ///
    /// let counts = WindowCounts {
    ///     calls: 20,
    ///     failures: 5,
    ///     slow_calls: 0,
    /// };
    /// assert_eq!(counts.failure_rate(), 0.25);
    /// assert_eq!(WindowCounts::default().failure_rate(), 0.0);
    /// ```
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls over calls, 0 when the window is empty.
    ///
    /// ```
    /// use palisade::circuit_breaker::WindowCounts;
    ///
    /// let counts = WindowCounts {
    ///     calls: 20,
    ///     failures: 0,
    ///     slow_calls: 4,
    /// };
    /// assert_eq!(counts.slow_call_rate(), 0.2);
    /// ```
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow_calls, self.calls)
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (f64::from(part) / f64::from(whole)).min(1.0)
    }
}

const SEQ_BITS: u32 = 32;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// The last `size` outcomes.
#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u32,
    /// epoch (high 32 bits) | sequence number (low 32 bits), the sequence kept in `[0, 2 * size)`.
    cursor: Padded<AtomicU64>,
    failed: Box<[AtomicU64]>,
    slow: Box<[AtomicU64]>,
    failures: Padded<AtomicU32>,
    slow_calls: AtomicU32,
}

/// What a count window's record found (see [`CountWindow::record`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Recorded {
    /// Nothing to judge: a success in a full window, or a stale epoch.
    Nothing,
    /// A success in a window not yet full.
    Filling,
    /// The counts after a failure or a slow call.
    Counts(WindowCounts),
}

impl CountWindow {
    pub(crate) fn new(size: u32, track_slow: bool, epoch: u32) -> Self {
        let words = (size as usize).div_ceil(64);
        let bitmap = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Self {
            size,
            cursor: Padded(AtomicU64::new(u64::from(epoch) << SEQ_BITS)),
            failed: bitmap(words),
            slow: bitmap(if track_slow { words } else { 0 }),
            failures: Padded(AtomicU32::new(0)),
            slow_calls: AtomicU32::new(0),
        }
    }

    /// Records one outcome of `epoch`: [`Recorded::Counts`] after a failure or a slow call
    /// (the outcomes that can raise a rate), the window's counts read after this record's
    /// own; [`Recorded::Filling`] after a success that went into a window not yet full (it
    /// may have made up `minimum_calls`); [`Recorded::Nothing`] otherwise or when the epoch is
    /// stale.
    ///
    /// The counts are read after the record, from the cursor as it is then, not from this
    /// record's own place in it: a record that took an earlier place may finish after one
    /// that took a later place, and the last of them to count its failure must see them all
    /// (all in one epoch's window, judged at its full size). Sequentially consistent, with
    /// [`counts`](Self::counts): a record that makes up the minimum while a failure reads the
    /// cursor just short of it either is seen by that failure or sees its flag (see
    /// `StateMachine::rate_pending`).
    #[inline]
    pub(crate) fn record(&self, epoch: u32, failed: bool, slow: bool) -> Recorded {
        let size = u64::from(self.size);
        let mut cur = self.cursor.load(Ordering::Relaxed);
        if !failed
            && !slow
            && cur & SEQ_MASK >= size
            && self.failures.load(Ordering::Relaxed) == 0
            && self.slow_calls.load(Ordering::Relaxed) == 0
        {
            // A full window of fast successes: one more changes nothing (every slot it could
            // evict holds the same), so the healthy path writes no shared memory at all.
            return Recorded::Nothing;
        }
        let seq = loop {
            if (cur >> SEQ_BITS) as u32 != epoch {
                return Recorded::Nothing;
            }
            let seq = cur & SEQ_MASK;
            // Keep the sequence in [0, 2 * size): same slot, and "full" stays full.
            let next = if seq + 1 == 2 * size { size } else { seq + 1 };
            match self.cursor.compare_exchange_weak(
                cur,
                (cur & !SEQ_MASK) | next,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break seq,
                Err(actual) => cur = actual,
            }
        };
        let slot = (if seq >= size { seq - size } else { seq }) as usize;
        set_bit(&self.failed, slot, failed, &self.failures);
        if !self.slow.is_empty() {
            set_bit(&self.slow, slot, slow, &self.slow_calls);
        }
        if failed || slow {
            match self.counts_in(epoch) {
                Some(counts) => Recorded::Counts(counts),
                None => Recorded::Nothing,
            }
        } else if seq < size {
            Recorded::Filling
        } else {
            Recorded::Nothing
        }
    }

    pub(crate) fn counts(&self) -> WindowCounts {
        let seq = self.cursor.load(Ordering::SeqCst) & SEQ_MASK;
        self.bounded(seq.min(u64::from(self.size)) as u32)
    }

    /// The counts while the window is still in `epoch`.
    fn counts_in(&self, epoch: u32) -> Option<WindowCounts> {
        let cur = self.cursor.load(Ordering::SeqCst);
        ((cur >> SEQ_BITS) as u32 == epoch)
            .then(|| self.bounded((cur & SEQ_MASK).min(u64::from(self.size)) as u32))
    }

    /// The counts, each at most `calls`: a record racing a reset can leave a count one
    /// higher than its marks until the next reset (see `set_bit`).
    fn bounded(&self, calls: u32) -> WindowCounts {
        WindowCounts {
            calls,
            failures: self.failures.load(Ordering::SeqCst).min(calls),
            slow_calls: self.slow_calls.load(Ordering::SeqCst).min(calls),
        }
    }

    /// Empties the window and moves it to `epoch`.
    pub(crate) fn reset(&self, epoch: u32) {
        self.cursor
            .store(u64::from(epoch) << SEQ_BITS, Ordering::Release);
        for w in self.failed.iter().chain(self.slow.iter()) {
            w.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::Relaxed);
        self.slow_calls.store(0, Ordering::Relaxed);
    }
}

/// Sets or clears bit `slot`; keeps `count` equal to the number of set bits. Writes nothing
/// when the bit already has the wanted value (the common case: success over success).
#[inline]
fn set_bit(bits: &[AtomicU64], slot: usize, value: bool, count: &AtomicU32) {
    let word = &bits[slot / 64];
    let mask = 1u64 << (slot % 64);
    let old = word.load(Ordering::Relaxed);
    if (old & mask != 0) == value {
        return;
    }
    let old = if value {
        word.fetch_or(mask, Ordering::Relaxed)
    } else {
        word.fetch_and(!mask, Ordering::Relaxed)
    };
    match (old & mask != 0, value) {
        (false, true) => {
            count.fetch_add(1, Ordering::SeqCst);
        }
        // Never below zero: a reset racing the record that set this mark may have zeroed the
        // count after the mark was counted, and a wrapped count would be a 100 % rate.
        (true, false) => {
            let _ = count.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |c| c.checked_sub(1));
        }
        _ => {}
    }
}

/// Buckets in a time-based window.
pub(crate) const BUCKETS: u64 = 20;

const TAG_SHIFT: u32 = 52;
/// A bucket's tag: its tick, mod 2^12.
const TAG: u64 = 0xfff;
const SCALE_SHIFT: u32 = 48;
/// A bucket's scale: each of its counts stands for 2^scale calls.
const SCALE: u64 = 0xf;
/// A count.
const FIELD: u64 = 0xffff;
const CALLS_SHIFT: u32 = 32;
const FAIL_SHIFT: u32 = 16;

/// A full `bucket` with its counts halved (rounded down) and its scale doubled, its tag kept;
/// `None` at the largest scale (2^15: some 2 billion calls in one bucket), where it stops.
#[cold]
fn halved(bucket: u64) -> Option<u64> {
    let scale = (bucket >> SCALE_SHIFT) & SCALE;
    if scale == SCALE {
        return None;
    }
    let field = |shift: u32| ((bucket >> shift) & FIELD) / 2;
    Some(
        (bucket & (TAG << TAG_SHIFT))
            | ((scale + 1) << SCALE_SHIFT)
            | (field(CALLS_SHIFT) << CALLS_SHIFT)
            | (field(FAIL_SHIFT) << FAIL_SHIFT)
            | field(0),
    )
}

/// Whether a call at `now` is one of the 1 in 2^`scale` a scaled bucket counts: the top
/// `scale` bits of `now` hashed (Fibonacci hashing) are zero. Calls at different nanoseconds
/// draw independently enough; calls at one instant draw alike (a paused clock's, in tests).
#[inline]
fn sampled(scale: u32, now: u64) -> bool {
    scale == 0 || now.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - scale) == 0
}

/// Bucket `cur`, full or scaled, after a call (`one`, its counts): a full bucket is halved
/// with its scale doubled (at the largest scale it keeps its sample as it is), and at scale s,
/// where a count stands for 2^s calls, the call is counted with chance 2^-s, so that the
/// counts stay a sample of all the bucket's calls. `None` when the bucket does not change.
#[inline]
fn scaled(cur: u64, one: u64, now: u64) -> Option<u64> {
    let base = if (cur >> CALLS_SHIFT) & FIELD == FIELD {
        halved(cur)?
    } else {
        cur
    };
    let scale = ((base >> SCALE_SHIFT) & SCALE) as u32;
    if sampled(scale, now) {
        Some(base + one)
    } else if base != cur {
        Some(base) // halved, this call not in the sample
    } else {
        None
    }
}

/// The window's counts, summed in 64 bits (twenty buckets at the largest scale hold up to
/// 2^36 calls).
#[derive(Default)]
struct Sums {
    calls: u64,
    failures: u64,
    slow_calls: u64,
}

impl Sums {
    /// Adds what bucket `v` holds (its counts times its scale).
    fn add(&mut self, v: u64) {
        let scale = (v >> SCALE_SHIFT) & SCALE;
        let count = |shift: u32| ((v >> shift) & FIELD) << scale;
        self.calls += count(CALLS_SHIFT);
        self.failures += count(FAIL_SHIFT);
        self.slow_calls += count(0);
    }

    /// The counts, all three divided by the same power of two if the calls would not fit in
    /// 32 bits, so that the rates stay what they are.
    fn counts(self) -> WindowCounts {
        // The bits of `calls` beyond 32.
        let shift = (64 - self.calls.leading_zeros()).saturating_sub(32);
        WindowCounts {
            calls: (self.calls >> shift) as u32,
            failures: (self.failures >> shift) as u32,
            slow_calls: (self.slow_calls >> shift) as u32,
        }
    }
}

/// The outcomes of the last `BUCKETS * bucket` nanoseconds.
///
/// Each bucket is one word: tag (tick number mod 2^12, 12 bits) | scale (4 bits) | calls |
/// failures | slow calls (16 bits each). A bucket that is full (65 535 calls) halves its three
/// counts and doubles its scale: each count then stands for twice as many calls, and a call is
/// counted with chance 2^-scale, so that the counts stay a sample of all the bucket's calls. A
/// burst of failures late in a busy bucket is seen, and a busy bucket weighs as much as the
/// calls it saw against the window's other buckets.
/// Whoever first sees a new tick clears the buckets the clock has moved past, so that after an
/// idle gap longer than the window no outcome survives.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket: u64,
    buckets: Box<[AtomicU64]>,
    /// The latest tick any record has seen.
    latest: Padded<AtomicU64>,
    epoch: AtomicU32,
}

impl TimeWindow {
    pub(crate) fn new(bucket_nanos: u64, epoch: u32) -> Self {
        Self {
            bucket: bucket_nanos.max(1),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            latest: Padded(AtomicU64::new(0)),
            epoch: AtomicU32::new(epoch),
        }
    }

    fn tick(&self, now: u64) -> u64 {
        now / self.bucket
    }

    /// Clears the buckets of every tick in `(latest, tick]` (at most all of them) and moves
    /// `latest` forward to `tick`; `true` if this call moved it (once per tick).
    fn advance(&self, tick: u64) -> bool {
        let mut latest = self.latest.load(Ordering::Acquire);
        while tick > latest {
            match self.latest.compare_exchange_weak(
                latest,
                tick,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let from = latest
                        .saturating_add(1)
                        .max(tick.saturating_sub(BUCKETS - 1));
                    // After a gap this long a tag equal to the new tick's is a wrapped-around
                    // old one: every bucket is stale.
                    let wrapped = tick - latest > TAG - BUCKETS;
                    for t in from..=tick {
                        let b = &self.buckets[(t % BUCKETS) as usize];
                        let fresh = (t & TAG) << TAG_SHIFT;
                        let mut cur = b.load(Ordering::Acquire);
                        // Only replace a bucket that belongs to an older tick.
                        while (wrapped && cur != fresh)
                            || is_stale(cur >> TAG_SHIFT, t, self.latest.load(Ordering::Acquire))
                        {
                            match b.compare_exchange_weak(
                                cur,
                                fresh,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            ) {
                                Ok(_) => break,
                                Err(actual) => cur = actual,
                            }
                        }
                    }
                    return true;
                }
                Err(actual) => latest = actual,
            }
        }
        false
    }

    pub(crate) fn record(
        &self,
        epoch: u32,
        now: u64,
        failed: bool,
        slow: bool,
    ) -> Option<WindowCounts> {
        if self.epoch.load(Ordering::Acquire) != epoch {
            return None;
        }
        let tick = self.tick(now);
        let moved = self.advance(tick);
        let b = &self.buckets[(tick % BUCKETS) as usize];
        let tag = tick & TAG;
        let mut cur = b.load(Ordering::Acquire);
        loop {
            let cur_tag = cur >> TAG_SHIFT;
            let next = if cur_tag == tag {
                let one = (1 << CALLS_SHIFT) + (u64::from(failed) << FAIL_SHIFT) + u64::from(slow);
                // The common case: not full, not scaled.
                if (cur >> CALLS_SHIFT) & FIELD != FIELD && (cur >> SCALE_SHIFT) & SCALE == 0 {
                    cur + one
                } else {
                    match scaled(cur, one, now) {
                        Some(next) => next,
                        None => break,
                    }
                }
            } else if is_stale(cur_tag, tick, self.latest.load(Ordering::Acquire)) {
                (tag << TAG_SHIFT)
                    | (1 << CALLS_SHIFT)
                    | (u64::from(failed) << FAIL_SHIFT)
                    | u64::from(slow)
            } else {
                break; // a record that arrived after the window moved on
            };
            match b.compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        // A success is judged with the first record of a bucket, once per bucket: older
        // buckets may have expired since, raising the rates the window holds.
        if failed || slow || moved {
            Some(self.counts_at(tick))
        } else {
            None
        }
    }

    fn counts_at(&self, tick: u64) -> WindowCounts {
        let mut sums = Sums::default();
        for (i, b) in self.buckets.iter().enumerate() {
            let v = b.load(Ordering::SeqCst);
            let age = tick.wrapping_sub(v >> TAG_SHIFT) & TAG;
            // Its tick is in the window and belongs in this slot (a bucket not cleared yet by
            // a racing `advance`, whose tag names a tick 2^12 ticks back, does not).
            if age < BUCKETS
                && tick
                    .checked_sub(age)
                    .is_some_and(|t| t % BUCKETS == i as u64)
            {
                sums.add(v);
            }
        }
        sums.counts()
    }

    pub(crate) fn counts(&self, now: u64) -> WindowCounts {
        let tick = self.tick(now);
        // Buckets of ticks the clock has passed without records are stale: if nothing was
        // recorded for a whole window, the window is empty.
        let latest = self.latest.load(Ordering::SeqCst);
        if tick.saturating_sub(latest) >= BUCKETS {
            return WindowCounts::default();
        }
        let mut sums = Sums::default();
        for (i, b) in self.buckets.iter().enumerate() {
            let v = b.load(Ordering::SeqCst);
            // Full tick of this bucket: the latest tick congruent to i, at most `latest`.
            let age_from_latest = (latest.wrapping_sub(v >> TAG_SHIFT)) & TAG;
            let bucket_tick = latest.saturating_sub(age_from_latest);
            if age_from_latest < BUCKETS
                && bucket_tick % BUCKETS == i as u64
                && tick.saturating_sub(bucket_tick) < BUCKETS
            {
                sums.add(v);
            }
        }
        sums.counts()
    }

    /// Empties the window (keeping each bucket's tag) and moves it to `epoch`.
    pub(crate) fn reset(&self, epoch: u32) {
        self.epoch.store(epoch, Ordering::Release);
        for b in self.buckets.iter() {
            let v = b.load(Ordering::Relaxed);
            b.store(v & (TAG << TAG_SHIFT), Ordering::Relaxed);
        }
    }
}

/// Whether a bucket tagged `tag` (a tick mod 2^12) belongs to a tick before `t`, when no record
/// has moved the window past tick `latest` (so no bucket holds a later tick: a bucket is
/// written only for a tick `latest` has reached). A tag is newer than `t` only if it names a
/// tick in `(t, latest]`; any other tag but `t`'s own is older, however long ago it was
/// written. (Comparing tags modulo 2^12 alone would read a tag left before an idle gap of more
/// than 2^11 ticks as newer, and drop every record until the gap reached 2^12 ticks.)
fn is_stale(tag: u64, t: u64, latest: u64) -> bool {
    let ahead = tag.wrapping_sub(t) & TAG;
    ahead != 0 && ahead > latest.saturating_sub(t)
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[test]
    fn count_window_slides_over_the_last_n_outcomes() {
        let w = CountWindow::new(3, true, 7);
        let counts = |r| match r {
            Recorded::Counts(c) => Some(c),
            _ => None,
        };
        assert_eq!(
            counts(w.record(7, true, false)).map(|c| c.failures),
            Some(1)
        );
        // A success while the window fills may make up the minimum.
        assert_eq!(w.record(7, false, false), Recorded::Filling);
        assert_eq!(counts(w.record(7, false, true)).map(|c| c.calls), Some(3));
        // The 4th outcome evicts the first failure; the window is full.
        assert_eq!(w.record(7, false, false), Recorded::Nothing);
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 3,
                failures: 0,
                slow_calls: 1
            }
        );
        // A stale epoch changes nothing.
        assert_eq!(w.record(6, true, true), Recorded::Nothing);
        assert_eq!(w.counts().failures, 0);
        w.reset(8);
        assert_eq!(w.counts(), WindowCounts::default());
    }

    #[test]
    fn count_window_keeps_sliding_past_many_laps() {
        let w = CountWindow::new(5, false, 0);
        for i in 0..1_000u32 {
            w.record(0, i % 5 == 0, false);
        }
        assert_eq!(w.counts().calls, 5);
        assert_eq!(w.counts().failures, 1);
    }

    #[test]
    fn time_window_forgets_after_an_idle_gap() {
        let w = TimeWindow::new(100, 1); // 20 buckets of 100 ns: a 2 µs window
        w.record(1, 0, true, false);
        w.record(1, 150, false, false);
        assert_eq!(w.counts(150).calls, 2);
        assert_eq!(w.record(1, 1_999, true, false).map(|c| c.failures), Some(2));
        // At 2_000 the first bucket (0..100) has left the window.
        assert_eq!(w.record(1, 2_000, true, false).map(|c| c.failures), Some(2));
        // After a long gap, nothing survives, even when the tag wraps around to the same value.
        let far = (1u64 << 12) * 100 * 3 + 50;
        assert_eq!(w.counts(far), WindowCounts::default());
        assert_eq!(
            w.record(1, far, true, false),
            Some(WindowCounts {
                calls: 1,
                failures: 1,
                slow_calls: 0
            })
        );
    }

    /// Twenty buckets at a large scale sum to more calls than 32 bits hold: the counts are
    /// scaled down together, and the rate is the buckets' (not raised by a saturated sum).
    #[test]
    fn a_window_of_scaled_buckets_keeps_its_rate() {
        let w = TimeWindow::new(1, 1);
        for (t, b) in w.buckets.iter().enumerate() {
            let t = t as u64;
            b.store(
                ((t & TAG) << TAG_SHIFT)
                    | (12 << SCALE_SHIFT)
                    | (65_535 << CALLS_SHIFT)
                    | (19_661 << FAIL_SHIFT),
                Ordering::Relaxed,
            );
        }
        w.latest.store(19, Ordering::Relaxed);
        for c in [w.counts(19), w.counts_at(19)] {
            assert!(c.calls > 1 << 30, "{c:?}");
            assert!((c.failure_rate() - 0.3).abs() < 0.001, "{c:?}");
        }
    }

    /// A bucket whose tag matches a tick in the window but whose slot does not (left from 2^12
    /// ticks back, not yet cleared by a racing `advance`) is not counted.
    #[test]
    fn a_bucket_in_the_wrong_slot_is_not_counted() {
        let w = TimeWindow::new(1, 1);
        w.record(1, 5_000, false, false);
        let old = 5_000 - (1 << 12); // the same tag as tick 5 000
        let slot = (old % BUCKETS) as usize;
        assert_ne!(slot, (5_000 % BUCKETS) as usize);
        w.buckets[slot].store(
            ((old & TAG) << TAG_SHIFT) | (10 << CALLS_SHIFT) | (10 << FAIL_SHIFT),
            Ordering::Relaxed,
        );
        assert_eq!(w.counts_at(5_000).failures, 0);
        assert_eq!(w.counts(5_000).failures, 0);
    }

    /// A record after any idle gap counts, whatever the gap is modulo the tags' range: in
    /// particular gaps of 2^11 to 2^12 ticks (and, before the tags were 12 bits, 2^15 to 2^16),
    /// which a modular tag comparison reads backwards
    /// (found by the reference-model proptest: a 20 ms window, idle for 20 s).
    #[test]
    fn time_window_counts_a_record_after_any_idle_gap() {
        for gap in [
            19, 20, 21, 1_000, 2_047, 2_048, 2_049, 3_000, 4_075, 4_076, 4_095, 4_096, 4_097,
            32_767, 32_768, 32_769, 40_000, 65_515, 65_516, 65_535, 65_536, 65_537, 100_000,
            1_000_000,
        ] {
            let w = TimeWindow::new(100, 1);
            w.record(1, 5_000, false, false);
            let later = 5_000 + gap * 100;
            let counts = w.record(1, later, true, false);
            let expected = WindowCounts {
                calls: 1 + u32::from(gap < BUCKETS),
                failures: 1,
                slow_calls: 0,
            };
            assert_eq!(counts, Some(expected), "gap of {gap} ticks");
            assert_eq!(w.counts(later), expected, "gap of {gap} ticks");
            // And the window keeps counting from there.
            assert_eq!(
                w.record(1, later + 1, true, false),
                Some(WindowCounts {
                    calls: expected.calls + 1,
                    failures: 2,
                    slow_calls: 0
                })
            );
        }
    }
}
