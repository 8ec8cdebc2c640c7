//! What a response carries until its body ends.
//!
//! The outcome of a streamed call is only known when its body ends: a gRPC status usually comes
//! in the trailers, and an HTTP body can break half-way. Layers that must wait for the end hand
//! what they hold to the response body as [`Hooks`]: the circuit breaker its pending outcome
//! (with the probe slot it may hold), the bulkhead its permit. The body settles them when it
//! ends, fails, or is dropped unfinished. With the `http` feature, `palisade::http::Tracked` is
//! such a body.

use std::fmt;
use std::time::Duration;

use super::{Outcome, OutcomeKind};
use crate::bulkhead::Permit;
use crate::circuit_breaker::Guard;

/// How the end of a body decides a deferred call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum EndRule {
    /// The body's clean end confirms the head's outcome; a body error is a failure.
    #[default]
    Body,
    /// The `grpc-status` in the trailers decides; an end without one is a failure.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    Grpc {
        /// Bit `n` set: code `n` is a failure.
        failures: u32,
        /// Bit `n` set: code `n` is ignored.
        ignored: u32,
        /// The cap on `grpc-retry-pushback-ms`, in whole milliseconds rounded up (the header's
        /// unit; kept in 32 bits so that every response's hooks stay small).
        max_pushback_ms: u32,
    },
}

/// How a tracked body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) enum End {
    /// Cleanly, with this outcome (the end rule already applied).
    Complete(Outcome),
    /// With an error (a reset, a broken body, the whole-response deadline).
    Failed,
}

/// What the layers of a call hand to its response body, to be settled when the body ends.
///
/// Dropping the hooks unsettled (the body dropped unfinished) gives everything back and records
/// the call as ignored: a caller that stops reading says nothing about the dependency.
///
/// ```
/// # #[cfg(not(feature = "http"))] fn main() {}
/// # #[cfg(feature = "http")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::classify::http::HttpClassifier;
/// use palisade::http::TrackLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// let layer = CircuitBreakerLayer::builder()
///     .build()
///     .unwrap()
///     .with_classifier(HttpClassifier::default());
/// let breaker = layer.handle();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .layer(TrackLayer::new()) // wraps each body in `Tracked`, which carries the hooks
///     .service(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
///             "catalog",
///         ))))
///     }));
///
/// let response = svc
///     .ready()
///     .await
///     .unwrap()
///     .call(http::Request::new(()))
///     .await
///     .unwrap();
/// assert_eq!(breaker.snapshot().calls, 0); // the outcome waits in the body's hooks...
/// response.into_body().collect().await.unwrap();
/// assert_eq!(breaker.snapshot().calls, 1); // ...and is recorded when the body ends
///
/// # }
/// ```
#[derive(Default)]
pub struct Hooks {
    deferred: Option<(Guard, HeadOutcome)>,
    permit: Option<Permit>,
    rule: EndRule,
    /// The outcomes and permits of further breakers and bulkheads over the same body (layers
    /// stacked by hand, such as a global bulkhead around a Policy): rare, so boxed.
    more: Option<Box<More>>,
}

#[derive(Default)]
struct More {
    /// Each with the rule its breaker's classifier set, when it differs from the body's.
    deferred: Vec<(Guard, Outcome, Option<EndRule>)>,
    permits: Vec<Permit>,
    /// A rule set, different from the body's, after an outcome was deferred: the rule of the
    /// next outcome deferred (a breaker's classifier sets its rule, then the breaker defers).
    next_rule: Option<EndRule>,
}

/// A deferred head's outcome in two words, where an [`Outcome`] takes five: every response
/// carries its hooks through each layer's future, and is moved at each, so their size is paid
/// on every call (with [`EndRule`]'s 16 bytes, it keeps a tracked HTTP response within 256).
#[derive(Clone, Copy)]
struct HeadOutcome {
    /// The kind in the top two bits; below them the duration in nanoseconds, saturated at
    /// 2^62 - 1 (146 years).
    kind_and_nanos: u64,
    /// The pushback in nanoseconds, saturated at `u64::MAX - 1` (584 years); `u64::MAX` for none.
    pushback: u64,
}

impl HeadOutcome {
    const NANOS: u64 = (1 << 62) - 1;
    const NO_PUSHBACK: u64 = u64::MAX;

    fn new(outcome: Outcome) -> Self {
        let kind = match outcome.kind() {
            OutcomeKind::Success => 0,
            OutcomeKind::Failure => 1,
            OutcomeKind::Ignored => 2,
        };
        let nanos = |d: Duration, max: u64| u64::try_from(d.as_nanos()).map_or(max, |n| n.min(max));
        Self {
            kind_and_nanos: kind << 62 | nanos(outcome.duration(), Self::NANOS),
            pushback: outcome
                .pushback()
                .map_or(Self::NO_PUSHBACK, |p| nanos(p, Self::NO_PUSHBACK - 1)),
        }
    }

    fn get(self) -> Outcome {
        let kind = match self.kind_and_nanos >> 62 {
            0 => OutcomeKind::Success,
            1 => OutcomeKind::Failure,
            _ => OutcomeKind::Ignored,
        };
        let outcome = Outcome::of(kind)
            .with_duration(Duration::from_nanos(self.kind_and_nanos & Self::NANOS));
        match self.pushback {
            Self::NO_PUSHBACK => outcome,
            nanos => outcome.with_pushback(Duration::from_nanos(nanos)),
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("outcome_pending", &self.deferred.is_some())
            .field("holds_permit", &self.permit.is_some())
            .finish()
    }
}

impl Hooks {
    /// Takes the circuit breaker's pending outcome; `head` is the outcome the response head gave.
    pub(crate) fn defer(&mut self, mut guard: Guard, head: Outcome) {
        guard.suspended();
        if self.deferred.is_none() {
            self.deferred = Some((guard, HeadOutcome::new(head)));
        } else {
            // Another breaker over the same body, further out, waits for the end too, judged
            // by the rule its own classifier set.
            let more = self.more();
            let rule = more.next_rule.take();
            more.deferred.push((guard, head, rule));
        }
    }

    /// Holds a bulkhead permit until the body ends.
    pub(crate) fn hold(&mut self, permit: Permit) {
        // Another bulkhead's permit over the same body is held until the end too.
        if let Some(earlier) = self.permit.replace(permit) {
            self.more().permits.push(earlier);
        }
    }

    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    /// Sets how the body's end decides the outcome. Once a breaker's outcome waits for the end,
    /// it stays judged by the rule its own classifier set (a breaker sets the rule, then
    /// defers): a different rule set by a layer further out is kept for whoever comes next,
    /// the next outcome deferred (another breaker's) or a copy the layer makes (a fallback's
    /// stale cache, through [`take_rule_set_last`](Self::take_rule_set_last)).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn set_rule(&mut self, rule: EndRule) {
        if self.deferred.is_none() {
            self.rule = rule;
        } else if rule != self.rule {
            self.more().next_rule = Some(rule);
        } else if let Some(more) = self.more.as_mut() {
            more.next_rule = None;
        }
    }

    #[cfg(feature = "http")]
    pub(crate) fn rule(&self) -> EndRule {
        self.rule
    }

    /// Whether the rule set last (by the layer that classified the response last) waits
    /// for a gRPC reply's trailers.
    #[cfg(feature = "http")]
    pub(crate) fn awaits_trailers(&self) -> bool {
        let last = self
            .more
            .as_ref()
            .and_then(|more| more.next_rule)
            .unwrap_or(self.rule);
        matches!(last, EndRule::Grpc { .. })
    }

    /// Whether any outcome waiting here, or the rule set for the next, is judged by a gRPC
    /// reply's trailers.
    #[cfg(feature = "http")]
    pub(crate) fn any_awaits_trailers(&self) -> bool {
        let grpc = |rule: EndRule| matches!(rule, EndRule::Grpc { .. });
        grpc(self.rule)
            || self.more.as_ref().is_some_and(|more| {
                more.next_rule.is_some_and(grpc)
                    || more
                        .deferred
                        .iter()
                        .any(|(_, _, rule)| rule.is_some_and(grpc))
            })
    }

    /// The rule set last (by the layer that classified the response last), taken: a rule
    /// kept for the next outcome deferred is not left for another layer's.
    #[cfg(feature = "http")]
    pub(crate) fn take_rule_set_last(&mut self) -> EndRule {
        self.more
            .as_mut()
            .and_then(|more| more.next_rule.take())
            .unwrap_or(self.rule)
    }

    /// Whether nothing waits for the body's end: no outcome, no permit.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.deferred.is_none() && self.permit.is_none() && self.more.is_none()
    }

    /// The head's outcome, if an outcome is pending.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn head(&self) -> Option<Outcome> {
        self.deferred.as_ref().map(|(_, head)| head.get())
    }

    /// Settles everything: records the outcome, then gives the permit back. `end` is the
    /// body's end under its rule; `under` gives a clean end's outcome under another rule, for
    /// a breaker further out whose classifier set one (`under(rule, head)`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn settle(&mut self, end: End, under: impl Fn(EndRule, Outcome) -> Outcome) {
        if let Some((guard, head)) = self.deferred.take() {
            guard.finish(end_for(end, head.get()));
        }
        if let Some(more) = self.more.take() {
            for (guard, head, rule) in more.deferred {
                // A clean end under the body rule is each breaker's own head outcome; a
                // trailer's verdict is that of each breaker's rule.
                let end = match (end, rule.unwrap_or(self.rule)) {
                    (End::Complete(_), EndRule::Body) => End::Complete(head),
                    (End::Complete(_), own) if rule.is_some() => End::Complete(under(own, head)),
                    _ => end,
                };
                guard.finish(end_for(end, head));
            }
            drop(more.permits);
        }
        self.permit = None;
    }
}

/// The outcome to record for a breaker whose head gave `head`, when the body ended with `end`.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
fn end_for(end: End, head: Outcome) -> Outcome {
    let outcome = match end {
        End::Complete(outcome) => outcome,
        End::Failed => Outcome::failure(),
    };
    // A pushback the head asked for still holds.
    match (outcome.pushback(), head.pushback()) {
        (None, Some(pushback)) => outcome.with_pushback(pushback),
        _ => outcome,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{HeadOutcome, Outcome, OutcomeKind};

    #[test]
    fn a_head_outcome_is_kept_whole_in_two_words() {
        assert_eq!(std::mem::size_of::<HeadOutcome>(), 16);
        let durations = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::new(3, 999_999_999),
            Duration::from_secs(146 * 365 * 24 * 3600),
        ];
        let pushbacks = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_millis(1500)),
        ];
        for kind in [
            OutcomeKind::Success,
            OutcomeKind::Failure,
            OutcomeKind::Ignored,
        ] {
            for duration in durations {
                for pushback in pushbacks {
                    let mut outcome = Outcome::of(kind).with_duration(duration);
                    if let Some(pushback) = pushback {
                        outcome = outcome.with_pushback(pushback);
                    }
                    assert_eq!(HeadOutcome::new(outcome).get(), outcome);
                }
            }
        }
        // Past what two words hold, both saturate, and the kind survives.
        let huge = Outcome::failure()
            .with_duration(Duration::MAX)
            .with_pushback(Duration::MAX);
        let kept = HeadOutcome::new(huge).get();
        assert!(kept.is_failure());
        assert_eq!(kept.duration(), Duration::from_nanos((1 << 62) - 1));
        assert_eq!(kept.pushback(), Some(Duration::from_nanos(u64::MAX - 1)));
    }
}
