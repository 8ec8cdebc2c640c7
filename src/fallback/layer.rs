use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};

use crate::classify::{Classify, DefaultClassifier, OutcomeKind};
use crate::error::{CallbackPanicked, ErrorKind, catch_callback, error_kind};
use crate::events::{Event, Listeners};

use super::recover::{Failure, Kinds, Recover};

/// Recovers from selected failures with a [`Recover`] implementation. See the
/// [module docs](super).
///
/// What is a failure is the classifier's to say: a response it classifies as a failure, and
/// an error of the dependency's own that it classifies as a failure (the default classifier
/// calls every such error one); palisade's own rejections and timeouts are failures of their
/// kind. Only the [`kinds`](Self::kinds) selected are recovered.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::fallback::{self, FailureKind, FallbackLayer, Kinds};
/// use palisade::error::BulkheadFull;
/// use tower::{service_fn, BoxError, Layer, ServiceExt};
///
/// // Recover only from local overload; let every other failure through.
/// let layer = FallbackLayer::new(fallback::value("try again shortly"))
///     .kinds(Kinds::only(FailureKind::BulkheadFull));
/// let overloaded = layer.layer(service_fn(|_: ()| async {
///     Err::<&str, BoxError>(Box::new(BulkheadFull::new(4)))
/// }));
/// let broken = layer.layer(service_fn(|_: ()| async {
///     Err::<&str, BoxError>("corrupt".into())
/// }));
/// assert_eq!(overloaded.oneshot(()).await.unwrap(), "try again shortly");
/// assert_eq!(broken.oneshot(()).await.unwrap_err().to_string(), "corrupt");
/// # }
/// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::fallback::{self, FallbackLayer};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let layer = FallbackLayer::new(fallback::value(Vec::<String>::new())); // no recommendations
    /// let svc = layer.layer(service_fn(|_: u32| async {
    ///     Err::<Vec<String>, _>(std::io::Error::other("down"))
    /// }));
    /// assert!(svc.oneshot(7).await.unwrap().is_empty());
    /// # }
    /// ```
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
    /// Only these kinds of failure are recovered; the others reach the caller as they came
    /// (a typed breaker's [`BreakerError`](crate::error::BreakerError) inside, as every error
    /// through the fallback, comes out as the `BoxError` it holds: the fallback's error type is
    /// `BoxError`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::fallback::{self, FailureKind, FallbackLayer, Kinds};
    /// use palisade::timeout::TimeoutLayer;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    ///
    /// // A timeout is recovered; an error of the dependency is not.
    /// let svc = |fail_fast: bool| {
    ///     ServiceBuilder::new()
    ///         .layer(
    ///             FallbackLayer::new(fallback::value("cached answer"))
    ///                 .kinds(Kinds::only(FailureKind::TimedOut)),
    ///         )
    ///         .layer(
    ///             TimeoutLayer::builder()
    ///                 .timeout(Duration::from_millis(100))
    ///                 .build()
    ///                 .unwrap(),
    ///         )
    ///         .service(service_fn(move |_: ()| async move {
    ///             if fail_fast {
    ///                 return Err(std::io::Error::other("refused"));
    ///             }
    ///             std::future::pending().await
    ///         }))
    /// };
    /// assert_eq!(svc(false).oneshot(()).await.unwrap(), "cached answer");
    /// assert!(svc(true).oneshot(()).await.is_err());
    /// # }
    /// ```
    #[must_use]
    pub fn kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// Classifies responses, so that a failure response (an HTTP 503, say) can be recovered.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::classify::Outcome;
    /// use palisade::fallback::{self, FallbackLayer};
    /// use tower::{service_fn, BoxError, Layer, ServiceExt};
    ///
    /// // Responses are (status, body); a 503 is a failure, to be recovered.
    /// let layer = FallbackLayer::new(fallback::value((200, "default".to_owned())))
    ///     .with_classifier(|res: Result<&(u16, String), &BoxError>| match res {
    ///         Ok((503, _)) | Err(_) => Outcome::failure(),
    ///         Ok(_) => Outcome::success(),
    ///     });
    /// let svc = layer.layer(service_fn(|_: ()| async {
    ///     Ok::<_, BoxError>((503, "busy".to_owned()))
    /// }));
    /// assert_eq!(svc.oneshot(()).await.unwrap(), (200, "default".to_owned()));
    /// # }
    /// ```
    pub fn with_classifier<C2>(self, classifier: C2) -> FallbackLayer<R, C2> {
        FallbackLayer {
            recover: self.recover,
            classifier,
            kinds: self.kinds,
            listeners: self.listeners,
        }
    }

    /// Tells `listeners` about every fallback served.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use palisade::events::{Event, Listeners};
    /// use palisade::fallback::{self, FailureKind, FallbackLayer, Served};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let served = Arc::new(Mutex::new(Vec::new()));
    /// let seen = served.clone();
    /// let listeners = Listeners::new("recommendations").with(move |event: &Event<'_>| {
    ///     if let Event::FallbackServed { kind, served, .. } = event {
    ///         seen.lock().unwrap().push((*kind, *served));
    ///     }
    /// });
    /// let layer = FallbackLayer::new(fallback::value(0u32)).listeners(listeners);
    /// let svc = layer.layer(service_fn(|_: ()| async {
    ///     Err::<u32, _>(std::io::Error::other("down"))
    /// }));
    /// assert_eq!(svc.oneshot(()).await.unwrap(), 0);
    /// assert_eq!(
    ///     *served.lock().unwrap(),
    ///     [(FailureKind::InnerError, Served::Fresh)]
    /// );
    /// # }
    /// ```
    #[must_use]
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The shared recovery (for example a [`StaleCache`](super::StaleCache), to read its stats).
    ///
    /// ```
    /// use palisade::fallback::{FallbackLayer, StaleCache};
    ///
    /// let layer = FallbackLayer::new(
    ///     StaleCache::<u32, String, u32>::builder(|id| Some(*id))
    ///         .build()
    ///         .unwrap(),
    /// );
    /// assert_eq!(layer.recover().stats().entries, 0); // the layer's cache, shared by its services
    /// ```
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
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::fallback::{self, FallbackLayer};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// let mut svc = ServiceBuilder::new()
///     .layer(FallbackLayer::new(fallback::from_fn(|failure: fallback::Failure<String>| {
///         // Only errors of the dependency are answered; the failure is given back otherwise.
///         match failure.kind() {
///             fallback::FailureKind::InnerError => Ok("unknown".to_owned()),
///             _ => Err(failure),
///         }
///     })))
///     .service(service_fn(|id: u32| async move {
///         match id {
///             0 => Err(std::io::Error::other("no such id")),
///             _ => Ok(format!("item {id}")),
///         }
///     }));
/// // A success is never replaced.
/// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), "item 7");
/// assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), "unknown");
/// # }
/// ```
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
        self.inner
            .poll_ready(cx)
            .map_err(|e| unwrap_breaker_error(e.into()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // `keep` is user code (a stale cache's key function): a panic in it fails the call
        // before it is sent, with the panic as its typed error.
        let inner = match catch_callback("Recover::keep", || self.recover.keep(&req)) {
            Ok(kept) => Inner::Called {
                fut: self.inner.call(req),
                kept: Some(kept),
                recover: self.recover.clone(),
                classifier: self.classifier.clone(),
                kinds: self.kinds,
                listeners: self.listeners.clone(),
            },
            Err(panicked) => Inner::Panicked {
                panicked: Box::new(panicked),
            },
        };
        ResponseFuture {
            inner,
            _req: PhantomData,
        }
    }
}

pin_project! {
    /// Response future of [`Fallback`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::fallback::{self, FallbackLayer};
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// let mut svc = FallbackLayer::new(fallback::value(-1))
    ///     .layer(service_fn(|_: ()| async { Err::<i32, _>(std::io::Error::other("down")) }));
    /// let future = svc.ready().await.unwrap().call(()); // recovers when the call fails
    /// assert_eq!(future.await.unwrap(), -1);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F, R, Req, K, C> {
        #[pin]
        inner: Inner<F, R, K, C>,
        _req: PhantomData<fn(Req)>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<F, R, K, C> {
        Called {
            #[pin]
            fut: F,
            // Taken when the call completes; the rest is used in place (moving it all out as
            // one struct costs more than the call itself).
            kept: Option<K>,
            recover: R,
            classifier: C,
            kinds: Kinds,
            listeners: Listeners,
        },
        // `Recover::keep` panicked: the call was never sent.
        // Boxed: a rare path should not make every future larger.
        Panicked {
            panicked: Box<CallbackPanicked>,
        },
        // A `policy::Optional` fallback left out: the inner future, passed through.
        Bypassed {
            #[pin]
            fut: F,
        },
    }
}

impl<F, R, Req, K, C> crate::policy::sealed::Bypass<F> for ResponseFuture<F, R, Req, K, C> {
    #[inline]
    fn bypass(fut: F) -> Self {
        Self {
            inner: Inner::Bypassed { fut },
            _req: PhantomData,
        }
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
        let (fut, kept, recover, classifier, kinds, listeners) =
            match self.project().inner.project() {
                InnerProj::Called {
                    fut,
                    kept,
                    recover,
                    classifier,
                    kinds,
                    listeners,
                } => (fut, kept, recover, classifier, kinds, listeners),
                InnerProj::Panicked { panicked } => return Poll::Ready(Err(panicked.clone())),
                InnerProj::Bypassed { fut } => return fut.poll(cx).map_err(Into::into),
            };
        let result = std::task::ready!(fut.poll(cx)).map_err(|e| unwrap_breaker_error(e.into()));
        let Some(kept) = kept.take() else {
            return Poll::Ready(result);
        };
        // Every user callback below runs under `catch_callback`: a panic becomes the call's
        // typed error (the breaker, inside, has recorded the call already).
        let failure = match result {
            Ok(mut response) => {
                let classified =
                    catch_callback("classifier", || classifier.classify(Ok(&response))).and_then(
                        |outcome| {
                            if outcome.is_success() {
                                // A body whose end has the last word (a gRPC status in the trailers)
                                // is read by that rule, so that a recovery copying it (the HTTP stale
                                // cache) keeps it only if it ends as a success, breaker or not.
                                catch_callback("Classify::end_of_body", || {
                                    classifier.end_of_body(&mut response, &outcome);
                                })?;
                            }
                            Ok(outcome.kind())
                        },
                    );
                match classified {
                    Ok(OutcomeKind::Failure) => Failure::Response(response),
                    // Only a success is offered to the recovery (a cache keeps the last good
                    // response); an ignored response is passed on, unkept.
                    Ok(OutcomeKind::Success) => {
                        let offered = if listeners.is_empty() {
                            catch_callback("Recover::succeeded", || {
                                recover.succeeded(kept, &mut response);
                            })
                        } else {
                            let listeners = listeners.clone();
                            catch_callback("Recover::succeeded", || {
                                recover.succeeded_then(kept, &mut response, move |entries| {
                                    cache_updated(entries, &listeners);
                                });
                            })
                        };
                        if let Err(panicked) = offered {
                            return Poll::Ready(Err(panicked.into()));
                        }
                        return Poll::Ready(Ok(response));
                    }
                    Ok(OutcomeKind::Ignored) => return Poll::Ready(Ok(response)),
                    Err(panicked) => return Poll::Ready(Err(panicked.into())),
                }
            }
            // A callback's panic inside (a breaker's classifier) is a bug to see, not a
            // failure to recover.
            Err(e) => match error_kind(e.as_ref()) {
                ErrorKind::CallbackPanicked(_) => return Poll::Ready(Err(e)),
                // The dependency's own error is recovered only if the classifier calls it a
                // failure (one it calls a success, such as a "not found", is an answer to pass
                // on, not to paper over with a stale copy). palisade's rejections and timeouts
                // are selected by kind.
                ErrorKind::Inner(_) => {
                    match catch_callback("classifier", || classifier.classify(Err(&e))) {
                        Ok(outcome) if outcome.is_failure() => Failure::Error(e),
                        Ok(_) => return Poll::Ready(Err(e)),
                        Err(panicked) => return Poll::Ready(Err(panicked.into())),
                    }
                }
                _ => Failure::Error(e),
            },
        };
        let kind = failure.kind();
        if !kinds.contains(kind) {
            return Poll::Ready(failure.into_result());
        }
        // The original error stays visible to listeners: its message is written before the
        // recovery takes it (only while someone listens; a recovery may consume the error).
        let error = if listeners.is_empty() {
            None
        } else {
            failure.message()
        };
        Poll::Ready(
            match catch_callback("Recover::recover", || recover.recover_served(kept, failure)) {
                Ok(Ok((response, served))) => {
                    listeners.emit(|name| Event::FallbackServed {
                        name,
                        kind,
                        served,
                        error: error.as_deref(),
                    });
                    Ok(response)
                }
                Ok(Err(failure)) => failure.into_result(),
                Err(panicked) => Err(panicked.into()),
            },
        )
    }
}

/// The error a breaker with [`typed_errors`](crate::circuit_breaker::CircuitBreakerLayer::typed_errors)
/// gave, unwrapped to the one a default breaker gives (its `CircuitOpen`, or the dependency's
/// own error): the fallback's classifier then judges the error the breaker judged, and a
/// "not found" it calls a success is passed on, not recovered.
/// Typed breakers stacked unwrap in turn.
#[inline]
fn unwrap_breaker_error(mut e: BoxError) -> BoxError {
    loop {
        match e.downcast::<crate::error::BreakerError>() {
            Ok(typed) => e = typed.into_boxed(),
            Err(leaf) => return leaf,
        }
    }
}

/// Tells the listeners how many responses a caching recovery holds now (`None`: a recovery
/// that keeps none).
#[cold]
fn cache_updated(entries: Option<usize>, listeners: &Listeners) {
    if let Some(entries) = entries {
        listeners.emit(|name| Event::StaleCacheUpdated { name, entries });
    }
}
