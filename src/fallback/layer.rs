use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};

use crate::classify::{Classify, DefaultClassifier};
use crate::error::{CallbackPanicked, ErrorKind, catch_callback, error_kind};
use crate::events::{Event, Listeners};

use super::recover::{Failure, Kinds, Recover};

/// Recovers from selected failures with a [`Recover`] implementation. See the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct FallbackLayer<R, C = DefaultClassifier> {
    recover: R,
    classifier: C,
    kinds: Kinds,
    listeners: Listeners,
}

impl<R> FallbackLayer<R> {
    /// Recovers from every kind of failure with `recover`. Responses are all successes (the
    /// default classifier); set one with [`with_classifier`](Self::with_classifier) to
    /// recover from failure responses too.
    pub fn new(recover: R) -> Self {
        Self {
            recover,
            classifier: DefaultClassifier,
            kinds: Kinds::ALL,
            listeners: Listeners::default(),
        }
    }
}

impl<R, C> FallbackLayer<R, C> {
    /// Only these kinds of failure are recovered; the others reach the caller unchanged.
    #[must_use]
    pub fn kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// Classifies responses, so that a failure response (an HTTP 503, say) can be recovered.
    pub fn with_classifier<C2>(self, classifier: C2) -> FallbackLayer<R, C2> {
        FallbackLayer {
            recover: self.recover,
            classifier,
            kinds: self.kinds,
            listeners: self.listeners,
        }
    }

    /// Tells `listeners` about every fallback served.
    #[must_use]
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The shared recovery (for example a [`StaleCache`](super::StaleCache), to read its stats).
    pub fn recover(&self) -> &R {
        &self.recover
    }
}

impl<S, R: Clone, C: Clone> Layer<S> for FallbackLayer<R, C> {
    type Service = Fallback<S, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            recover: self.recover.clone(),
            classifier: self.classifier.clone(),
            kinds: self.kinds,
            listeners: self.listeners.clone(),
        }
    }
}

/// A service whose selected failures are recovered. Made by [`FallbackLayer`].
///
/// # Readiness
///
/// Forwards to the inner service; an error from `poll_ready` is passed through (there is no
/// request to recover yet).
///
/// # Clone
///
/// The [`Recover`] implementation and the classifier are cloned into every clone and every
/// response future, so that the success path touches no shared memory: keep them cheap to
/// clone. Those palisade provides are: [`from_fn`](super::from_fn) and
/// [`with_request`](super::with_request) with closures or function pointers, free;
/// [`value`](super::value), one reference-count update per call (it holds its response in an
/// `Arc` and clones the response only when it recovers); a [`StaleCache`](super::StaleCache), a
/// handle on shared state (one reference-count update per call).
///
/// # Cancellation
///
/// Dropping the response future drops the inner future; nothing is recovered or stored.
#[derive(Debug, Clone)]
pub struct Fallback<S, R, C = DefaultClassifier> {
    inner: S,
    recover: R,
    classifier: C,
    kinds: Kinds,
    listeners: Listeners,
}

impl<S, R, C> Fallback<S, R, C> {
    inner_accessors!();
}

impl<S, R, C, Req> Service<Req> for Fallback<S, R, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Recover<Req, S::Response> + Clone,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R, Req, R::Kept, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // `keep` is user code (a stale cache's key function): a panic in it fails the call
        // before it is sent, with the panic as its typed error.
        let inner = match catch_callback("Recover::keep", || self.recover.keep(&req)) {
            Ok(kept) => Inner::Called {
                fut: self.inner.call(req),
                kept: Some(kept),
            },
            Err(panicked) => Inner::Panicked {
                panicked: Box::new(panicked),
            },
        };
        ResponseFuture {
            inner,
            recover: self.recover.clone(),
            classifier: self.classifier.clone(),
            kinds: self.kinds,
            listeners: self.listeners.clone(),
            _req: PhantomData,
        }
    }
}

pin_project! {
    /// Response future of [`Fallback`].
    #[derive(Debug)]
    pub struct ResponseFuture<F, R, Req, K, C> {
        #[pin]
        inner: Inner<F, K>,
        recover: R,
        classifier: C,
        kinds: Kinds,
        listeners: Listeners,
        _req: PhantomData<fn(Req)>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<F, K> {
        Called {
            #[pin]
            fut: F,
            // Taken when the call completes; the rest is used in place (moving it all out as
            // one struct costs more than the call itself).
            kept: Option<K>,
        },
        // `Recover::keep` panicked: the call was never sent.
        // Boxed: a rare path should not make every future larger.
        Panicked {
            panicked: Box<CallbackPanicked>,
        },
    }
}

impl<F, R, Req, K, C, Res, E> Future for ResponseFuture<F, R, Req, K, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    R: Recover<Req, Res, Kept = K>,
    C: Classify<Res>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (fut, kept) = match this.inner.project() {
            InnerProj::Called { fut, kept } => (fut, kept),
            InnerProj::Panicked { panicked } => return Poll::Ready(Err(panicked.clone())),
        };
        let result = std::task::ready!(fut.poll(cx)).map_err(Into::into);
        let Some(kept) = kept.take() else {
            return Poll::Ready(result);
        };
        // Every user callback below runs under `catch_callback`: a panic becomes the call's
        // typed error (the breaker, inside, has recorded the call already).
        let failure = match result {
            Ok(mut response) => {
                match catch_callback("classifier", || {
                    this.classifier.classify(Ok(&response)).is_failure()
                }) {
                    Ok(true) => Failure::Response(response),
                    Ok(false) => {
                        if let Err(panicked) = catch_callback("Recover::succeeded", || {
                            this.recover.succeeded(kept, &mut response)
                        }) {
                            return Poll::Ready(Err(panicked.into()));
                        }
                        if !this.listeners.is_empty() {
                            cache_updated(&*this.recover, this.listeners);
                        }
                        return Poll::Ready(Ok(response));
                    }
                    Err(panicked) => return Poll::Ready(Err(panicked.into())),
                }
            }
            // A callback's panic inside (a breaker's classifier) is a bug to see, not a
            // failure to recover.
            Err(e) if matches!(error_kind(e.as_ref()), ErrorKind::CallbackPanicked(_)) => {
                return Poll::Ready(Err(e));
            }
            Err(e) => Failure::Error(e),
        };
        let kind = failure.kind();
        if !this.kinds.contains(kind) {
            return Poll::Ready(failure.into_result());
        }
        Poll::Ready(
            match catch_callback("Recover::recover", || {
                this.recover.recover_served(kept, failure)
            }) {
                Ok(Ok((response, served))) => {
                    this.listeners
                        .emit(|name| Event::FallbackServed { name, kind, served });
                    Ok(response)
                }
                Ok(Err(failure)) => failure.into_result(),
                Err(panicked) => Err(panicked.into()),
            },
        )
    }
}

/// Tells the listeners how many responses a caching recovery holds now.
#[cold]
fn cache_updated<R: Recover<Req, Res> + ?Sized, Req, Res>(recover: &R, listeners: &Listeners) {
    // Only for listeners: a panic here (user code in a custom `Recover`) loses the event, as a
    // listener's own panic does, and not the response.
    if let Ok(Some(entries)) =
        catch_callback("Recover::cached_entries", || recover.cached_entries())
    {
        listeners.emit(|name| Event::StaleCacheUpdated { name, entries });
    }
}
