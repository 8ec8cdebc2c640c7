use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::BoxError;

use crate::classify::{Classify, Outcome};
use crate::error::CircuitOpen;

use super::handle::Breaker;
use super::handle::record;
use super::state::Permit;
use crate::sync::CloneRef;

/// An admitted call's permit. Dropping it unrecorded (cancellation, a panicking classifier)
/// gives the permit back as ignored.
#[derive(Debug)]
pub(crate) struct Guard {
    breaker: Arc<CloneRef<Breaker>>,
    permit: Option<Permit>,
    start: Option<Instant>,
}

impl Guard {
    pub(crate) fn new(
        breaker: Arc<CloneRef<Breaker>>,
        permit: Permit,
        start: Option<Instant>,
    ) -> Self {
        Self {
            breaker,
            permit: Some(permit),
            start,
        }
    }

    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            record(&self.breaker, permit, outcome, self.start);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.machine.release(permit);
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Called { #[pin] fut: F, guard: Option<Guard>, classifier: C },
        Rejected { error: CircuitOpen },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(fut: F, guard: Guard, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                guard: Some(guard),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                fut,
                guard,
                classifier,
            } => {
                let result = std::task::ready!(fut.poll(cx)).map_err(Into::into);
                if let Some(guard) = guard.take() {
                    let outcome = classifier.classify(result.as_ref());
                    guard.finish(outcome);
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => Poll::Ready(Err(Box::new(*error))),
        }
    }
}
