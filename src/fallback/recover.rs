use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use tower::BoxError;

use super::cache::Stale;

use crate::error::{ErrorKind, error_kind};

/// The ways a call can fail, as the fallback tells them apart.
///
/// ```
/// use std::time::Duration;
/// use palisade::error::{BulkheadFull, CircuitOpen, Elapsed};
/// use palisade::fallback::{Failure, FailureKind};
///
/// let kind = |err: tower::BoxError| Failure::<()>::Error(err).kind();
/// assert_eq!(
///     kind(Box::new(CircuitOpen::new(None))),
///     FailureKind::CircuitOpen
/// );
/// assert_eq!(
///     kind(Box::new(BulkheadFull::new(1))),
///     FailureKind::BulkheadFull
/// );
/// assert_eq!(
///     kind(Box::new(Elapsed::new(Duration::from_secs(1)))),
///     FailureKind::TimedOut
/// );
/// assert_eq!(kind("refused".into()), FailureKind::InnerError);
/// assert_eq!(Failure::Response(()).kind(), FailureKind::FailureResponse);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum FailureKind {
    /// Rejected by an open circuit breaker.
    CircuitOpen,
    /// Rejected by a full bulkhead.
    BulkheadFull,
    /// Timed out.
    TimedOut,
    /// The inner service failed with an error.
    InnerError,
    /// The inner service answered, but the classifier calls the response a failure.
    FailureResponse,
}

impl FailureKind {
    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// A short name for logs and metrics labels.
    ///
    /// ```
    /// use palisade::fallback::FailureKind;
    ///
    /// assert_eq!(FailureKind::TimedOut.as_str(), "timed_out");
    /// assert_eq!(FailureKind::FailureResponse.as_str(), "failure_response");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::CircuitOpen => "circuit_open",
            FailureKind::BulkheadFull => "bulkhead_full",
            FailureKind::TimedOut => "timed_out",
            FailureKind::InnerError => "inner_error",
            FailureKind::FailureResponse => "failure_response",
        }
    }
}

/// How a fallback response was made, as [`Event::FallbackServed`](crate::events::Event)
/// reports it.
///
/// ```
/// use std::time::Duration;
/// use palisade::fallback::{Served, Stale};
///
/// let stale = Served::Stale(Stale {
///     age: Duration::from_secs(30),
/// });
/// assert_eq!(
///     (stale.as_str(), stale.age()),
///     ("stale", Some(Duration::from_secs(30)))
/// );
/// assert_eq!(
///     (Served::Fresh.as_str(), Served::Fresh.age()),
///     ("fresh", None)
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Served {
    /// Made for this failure: a fixed value, or a function's answer.
    Fresh,
    /// A response stored earlier, served stale: this old.
    Stale(Stale),
}

impl Served {
    /// `"fresh"` or `"stale"`, for logs and metrics labels.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::fallback::{Served, Stale};
    ///
    /// assert_eq!(Served::Fresh.as_str(), "fresh");
    /// assert_eq!(
    ///     Served::Stale(Stale {
    ///         age: Duration::ZERO
    ///     })
    ///     .as_str(),
    ///     "stale"
    /// );
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Served::Fresh => "fresh",
            Served::Stale(_) => "stale",
        }
    }

    /// The age of a stale response; `None` for a fresh one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::fallback::{Served, Stale};
    ///
    /// assert_eq!(
    ///     Served::Stale(Stale {
    ///         age: Duration::from_secs(5)
    ///     })
    ///     .age(),
    ///     Some(Duration::from_secs(5))
    /// );
    /// assert_eq!(Served::Fresh.age(), None);
    /// ```
    pub const fn age(self) -> Option<Duration> {
        match self {
            Served::Fresh => None,
            Served::Stale(stale) => Some(stale.age),
        }
    }
}

/// A set of [`FailureKind`]s: which failures the fallback handles.
///
/// ```
/// use palisade::fallback::{FailureKind, Kinds};
///
/// // Everything but an error of the dependency itself.
/// let kinds = Kinds::ALL.without(FailureKind::InnerError);
/// assert!(kinds.contains(FailureKind::TimedOut));
/// assert!(!kinds.contains(FailureKind::InnerError));
/// assert_eq!(
///     format!("{:?}", Kinds::only(FailureKind::CircuitOpen)),
///     "{CircuitOpen}"
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kinds(u8);

impl Kinds {
    /// Every kind (the default).
    ///
    /// ```
    /// use palisade::fallback::{FailureKind, Kinds};
    ///
    /// assert!(
    ///     Kinds::ALL.contains(FailureKind::CircuitOpen)
    ///         && Kinds::ALL.contains(FailureKind::FailureResponse)
    /// );
    /// assert_eq!(Kinds::default(), Kinds::ALL);
    /// ```
    pub const ALL: Kinds = Kinds(0b1_1111);
    /// No kind.
    ///
    /// ```
    /// use palisade::fallback::{FailureKind, Kinds};
    ///
    /// assert!(!Kinds::NONE.contains(FailureKind::TimedOut));
    /// assert_eq!(
    ///     Kinds::NONE.with(FailureKind::TimedOut),
    ///     Kinds::only(FailureKind::TimedOut)
    /// );
    /// ```
    pub const NONE: Kinds = Kinds(0);

    /// Just this kind.
    ///
    /// ```
    /// use palisade::fallback::{FailureKind, Kinds};
    ///
    /// let kinds = Kinds::only(FailureKind::CircuitOpen);
    /// assert!(kinds.contains(FailureKind::CircuitOpen));
    /// assert!(!kinds.contains(FailureKind::TimedOut));
    /// ```
    pub const fn only(kind: FailureKind) -> Self {
        Kinds(kind.bit())
    }

    /// This set and `kind`.
    ///
    /// ```
    /// use palisade::fallback::{FailureKind, Kinds};
    ///
    /// let rejections = Kinds::NONE
    ///     .with(FailureKind::CircuitOpen)
    ///     .with(FailureKind::BulkheadFull);
    /// assert!(rejections.contains(FailureKind::BulkheadFull));
    /// assert!(!rejections.contains(FailureKind::InnerError));
    /// ```
    #[must_use]
    pub const fn with(self, kind: FailureKind) -> Self {
        Kinds(self.0 | kind.bit())
    }

    /// This set without `kind`.
    ///
    /// ```
    /// use palisade::fallback::{FailureKind, Kinds};
    ///
    /// let kinds = Kinds::ALL.without(FailureKind::FailureResponse);
    /// assert!(!kinds.contains(FailureKind::FailureResponse));
    /// assert!(kinds.contains(FailureKind::TimedOut));
    /// ```
    #[must_use]
    pub const fn without(self, kind: FailureKind) -> Self {
        Kinds(self.0 & !kind.bit())
    }

    /// Whether `kind` is in the set.
    ///
    /// ```
    /// use palisade::fallback::{FailureKind, Kinds};
    ///
    /// assert!(Kinds::ALL.contains(FailureKind::InnerError));
    /// assert!(!Kinds::NONE.contains(FailureKind::InnerError));
    /// ```
    pub const fn contains(self, kind: FailureKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

impl Default for Kinds {
    fn default() -> Self {
        Kinds::ALL
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FailureKind::*;
        f.debug_set()
            .entries(
                [
                    CircuitOpen,
                    BulkheadFull,
                    TimedOut,
                    InnerError,
                    FailureResponse,
                ]
                .into_iter()
                .filter(|k| self.contains(*k)),
            )
            .finish()
    }
}

/// A failed call: the error, or the response the classifier called a failure.
///
/// ```
/// use palisade::fallback::{from_fn, Failure, Recover};
///
/// // Recover failure responses with an apology; let errors through.
/// let recover = from_fn(|failure: Failure<String>| match failure {
///     Failure::Response(body) => Ok(format!("sorry ({body})")),
///     Failure::Error(_) => Err(failure),
/// });
/// let answered =
///     Recover::<(), String>::recover(&recover, (), Failure::Response("503".into()));
/// assert_eq!(answered.unwrap(), "sorry (503)");
/// assert!(
///     Recover::<(), String>::recover(&recover, (), Failure::Error("down".into()))
///         .is_err()
/// );
/// ```
#[derive(Debug)]
pub enum Failure<Res> {
    /// The call failed with this error (palisade's own rejections included).
    Error(BoxError),
    /// The call answered with a failure response.
    Response(Res),
}

impl<Res> Failure<Res> {
    /// What kind of failure this is.
    ///
    /// ```
    /// use palisade::error::CircuitOpen;
    /// use palisade::fallback::{Failure, FailureKind};
    ///
    /// assert_eq!(
    ///     Failure::<()>::Error(Box::new(CircuitOpen::new(None))).kind(),
    ///     FailureKind::CircuitOpen
    /// );
    /// assert_eq!(Failure::Response(503).kind(), FailureKind::FailureResponse);
    /// ```
    pub fn kind(&self) -> FailureKind {
        match self {
            Failure::Response(_) => FailureKind::FailureResponse,
            Failure::Error(e) => match error_kind(e.as_ref()) {
                ErrorKind::CircuitOpen(_) => FailureKind::CircuitOpen,
                ErrorKind::BulkheadFull(_) => FailureKind::BulkheadFull,
                ErrorKind::TimedOut(_) => FailureKind::TimedOut,
                _ => FailureKind::InnerError,
            },
        }
    }

    /// The error's message followed by its sources' (`: ` between them, sixteen at most), for
    /// listeners; `None` for a failure response, or if an error's `Display` panics (and the
    /// panic unwinds). A URL written as reqwest writes one (`for url (...)`) is cut down to its
    /// scheme, host and port: its credentials, path and query are request data.
    pub(crate) fn message(&self) -> Option<String> {
        let Failure::Error(e) = self else {
            return None;
        };
        catch_unwind(AssertUnwindSafe(|| {
            let mut message = say(e.as_ref());
            let mut source = e.source();
            // A chain that loops back on itself (a bug, but not the caller's to pay for) ends.
            for _ in 0..16 {
                let Some(cause) = source else { break };
                let said = say(cause);
                // An error that repeats its source's message in its own is not said twice.
                if !said.is_empty() && !repeats(&message, &said) {
                    if !message.is_empty() {
                        message.push_str(": ");
                    }
                    message.push_str(&said);
                }
                source = cause.source();
            }
            cut_urls(message)
        }))
        .ok()
    }

    /// The failure as the call's result, unrecovered.
    ///
    /// ```
    /// use palisade::fallback::Failure;
    ///
    /// assert_eq!(Failure::Response(503).into_result().unwrap(), 503); // the response as it came
    /// let err = Failure::<u16>::Error("refused".into())
    ///     .into_result()
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "refused");
    /// ```
    pub fn into_result(self) -> Result<Res, BoxError> {
        match self {
            Failure::Error(e) => Err(e),
            Failure::Response(r) => Ok(r),
        }
    }
}

/// `error`'s own message.
fn say(error: &(dyn std::error::Error + 'static)) -> String {
    let mut said = String::new();
    let _ = write!(said, "{error}");
    said
}

/// `message` with each URL written as reqwest writes one in its errors (`for url (...)`) cut
/// down to its scheme, host and port: its credentials, path, query and fragment are request
/// data. Done on the text, so that it holds however the error was wrapped (in an `io::Error`,
/// a `#[error(transparent)]` enum, a message quoting it), and with or without the `reqwest`
/// feature. A written URL has no whitespace: all of it after the authority, up to the next
/// whitespace, goes. Not covered: an error written with `{:?}` into another's message
/// (reqwest's `Debug` shows the URL as `url: "..."`).
fn cut_urls(message: String) -> String {
    const MARK: &str = "for url (";
    if !message.contains(MARK) {
        return message;
    }
    let mut cut = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(at) = rest.find(MARK) {
        let (before, after) = rest.split_at(at + MARK.len());
        cut.push_str(before);
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        match url.split_once("://") {
            Some((scheme, past)) => {
                // The credentials end at the authority's last `@` (one inside them is
                // encoded), but may hold a `)`, which the host cannot.
                let authority = &past[..past.find(['/', '?', '#']).unwrap_or(past.len())];
                let host = authority
                    .rsplit_once('@')
                    .map_or(authority, |(_, host)| host);
                let host = &host[..host.find(')').unwrap_or(host.len())];
                cut.push_str(scheme);
                cut.push_str("://");
                cut.push_str(host);
                // reqwest's closing `)`, and the `:` before a source's message if one follows.
                cut.push_str("/...)");
                if url.ends_with(':') {
                    cut.push(':');
                }
            }
            None => cut.push_str(url),
        }
        rest = tail;
    }
    cut.push_str(rest);
    cut
}

/// Whether `message` already says `said`: it is all of it, or its last `: `-separated part, as
/// in an error that writes its source's message into its own.
fn repeats(message: &str, said: &str) -> bool {
    message
        .strip_suffix(said)
        .is_some_and(|before| before.is_empty() || before.ends_with(": "))
}

/// Decides how to recover from a failed call.
///
/// `keep` runs before the call, on the request (which the inner service then consumes), and may
/// keep what recovery will need: a cache key, an id. `recover` runs on a selected failure; it
/// returns the response to give the caller, or the failure back to let it through.
/// `succeeded` sees every response classified as a success (a cache stores it there); a
/// failure response goes to `recover`, and an ignored one to neither.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::fallback::{Failure, FallbackLayer, Recover};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// /// Answers a failed price lookup with the list price of the product asked about.
/// #[derive(Clone)]
/// struct ListPrice;
///
/// impl Recover<u32, u64> for ListPrice {
///     type Kept = u32; // the product id, kept before the request is consumed
///
///     fn keep(&self, product: &u32) -> u32 {
///         *product
///     }
///
///     fn recover(
///         &self,
///         product: u32,
///         failure: Failure<u64>,
///     ) -> Result<u64, Failure<u64>> {
///         match product {
///             7 => Ok(1_999),
///             _ => Err(failure), // nothing to offer: let the failure through
///         }
///     }
/// }
///
/// let svc = FallbackLayer::new(ListPrice).layer(service_fn(|_: u32| async {
///     Err::<u64, _>(std::io::Error::other("pricing down"))
/// }));
/// assert_eq!(svc.clone().oneshot(7).await.unwrap(), 1_999);
/// assert!(svc.oneshot(8).await.is_err());
/// # }
/// ```
pub trait Recover<Req, Res> {
    /// What is kept of the request.
    ///
    /// ```
    /// use palisade::fallback::{value, with_request, Failure, Recover};
    ///
    /// // `value` keeps nothing; `with_request` keeps what its function takes from the request.
    /// let fixed = value(0u64);
    /// let () = Recover::<u32, u64>::keep(&fixed, &7);
    /// let by_id = with_request(|id: &u32| *id, |id: u32, _: Failure<u64>| Ok(u64::from(id)));
    /// assert_eq!(Recover::<u32, u64>::keep(&by_id, &7), 7);
    /// ```
    type Kept;

    /// Keeps what recovery needs from the request.
    ///
    /// ```
    /// use palisade::fallback::{Recover, StaleCache};
    ///
    /// let cache =
    ///     StaleCache::builder(|path: &String| (!path.contains("?")).then(|| path.clone()))
    ///         .build()
    ///         .unwrap();
    /// assert_eq!(
    ///     Recover::<String, String>::keep(&cache, &"/catalog".to_owned()),
    ///     Some("/catalog".to_owned())
    /// );
    /// assert_eq!(
    ///     Recover::<String, String>::keep(&cache, &"/search?q=x".to_owned()),
    ///     None
    /// ); // not cached
    /// ```
    fn keep(&self, req: &Req) -> Self::Kept;

    /// Makes a response for a failed call, or gives the failure back.
    ///
    /// ```
    /// use palisade::fallback::{value, Failure, Recover};
    ///
    /// let recover = value("default");
    /// let answer = Recover::<(), &str>::recover(&recover, (), Failure::Error("down".into()));
    /// assert_eq!(answer.unwrap(), "default");
    /// ```
    fn recover(&self, kept: Self::Kept, failure: Failure<Res>) -> Result<Res, Failure<Res>>;

    /// Sees a successful response, and may adjust it (the HTTP stale cache copies the body as
    /// it streams by). Does nothing by default.
    ///
    /// ```
    /// use palisade::fallback::{Failure, Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
    /// // A success is offered to the recovery: a cache keeps it for later failures.
    /// cache.succeeded(cache.keep(&7), &mut String::from("item 7"));
    /// let later = cache.recover(cache.keep(&7), Failure::Error("down".into()));
    /// assert_eq!(later.unwrap(), "item 7");
    /// ```
    fn succeeded(&self, kept: Self::Kept, response: &mut Res) {
        let _ = (kept, response);
    }

    /// [`succeeded`](Self::succeeded), then `stored` with [`cached_entries`](Self::cached_entries)
    /// once the response is kept (or refused): the fallback layer calls this one while someone
    /// listens, to report the cache's size. The default calls `succeeded` and then `stored` at
    /// once; a recovery that keeps a response only later overrides it (the HTTP stale cache
    /// keeps one when its body has ended, and does not call `stored` if the body breaks).
    ///
    /// ```
    /// use palisade::fallback::{Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// cache.succeeded_then(cache.keep(&7), &mut String::from("item 7"), move |entries| {
    ///     tx.send(entries).unwrap()
    /// });
    /// assert_eq!(rx.recv().unwrap(), Some(1));
    /// ```
    fn succeeded_then<F>(&self, kept: Self::Kept, response: &mut Res, stored: F)
    where
        F: FnOnce(Option<usize>) + Send + Sync + 'static,
    {
        self.succeeded(kept, response);
        // Only for listeners: a panic in user code here loses the report, not the response.
        if let Ok(entries) =
            crate::error::catch_callback("Recover::cached_entries", || self.cached_entries())
        {
            stored(entries);
        }
    }

    /// Like [`recover`](Self::recover), and also says how the response was made, for events
    /// and metrics. The fallback layer calls this one. The default calls `recover` and reports
    /// [`Served::Fresh`]; a recovery that serves stored responses overrides it.
    ///
    /// ```
    /// use palisade::fallback::{value, Failure, Recover, Served, StaleCache};
    ///
    /// let (_, served) =
    ///     Recover::<(), u32>::recover_served(&value(0), (), Failure::Error("down".into()))
    ///         .unwrap();
    /// assert_eq!(served, Served::Fresh);
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
    /// cache.succeeded(cache.keep(&1), &mut 42u32);
    /// let (answer, served) = cache
    ///     .recover_served(cache.keep(&1), Failure::Error("down".into()))
    ///     .unwrap();
    /// assert_eq!((answer, served.as_str()), (42, "stale"));
    /// ```
    fn recover_served(
        &self,
        kept: Self::Kept,
        failure: Failure<Res>,
    ) -> Result<(Res, Served), Failure<Res>> {
        self.recover(kept, failure).map(|r| (r, Served::Fresh))
    }

    /// How many responses this recovery keeps, for the stale-cache gauge; `None` (the default)
    /// for a recovery that keeps none. Asked after [`succeeded`](Self::succeeded), and only
    /// while someone listens: keep it cheap.
    ///
    /// ```
    /// use palisade::fallback::{value, Recover, StaleCache};
    ///
    /// assert_eq!(Recover::<(), u32>::cached_entries(&value(0)), None);
    /// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
    /// cache.succeeded(cache.keep(&1), &mut 42u32);
    /// assert_eq!(cache.cached_entries(), Some(1));
    /// ```
    fn cached_entries(&self) -> Option<usize> {
        None
    }
}

/// Recovers with a clone of a fixed response. See [`value`].
///
/// ```
/// use palisade::fallback::{value, Failure, Recover, Value};
///
/// let recover: Value<Vec<u32>> = value(vec![1, 2, 3]);
/// let clone = recover.clone(); // shares the one response; cloned only when recovering
/// let answer =
///     Recover::<(), Vec<u32>>::recover(&clone, (), Failure::Error("down".into()));
/// assert_eq!(answer.unwrap(), [1, 2, 3]);
/// ```
#[derive(Debug)]
pub struct Value<Res>(Arc<Res>);

impl<Res> Clone for Value<Res> {
    fn clone(&self) -> Self {
        Value(Arc::clone(&self.0))
    }
}

/// Recovers with a clone of `response`, made only when a call is recovered.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::fallback::{value, FallbackLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let svc = FallbackLayer::new(value("out of stock")).layer(service_fn(|_: u32| async {
///     Err::<&str, _>(std::io::Error::other("down"))
/// }));
/// assert_eq!(svc.oneshot(7).await.unwrap(), "out of stock");
/// # }
/// ```
pub fn value<Res: Clone>(response: Res) -> Value<Res> {
    Value(Arc::new(response))
}

impl<Req, Res: Clone> Recover<Req, Res> for Value<Res> {
    type Kept = ();

    fn keep(&self, _: &Req) {}

    fn recover(&self, _: (), _: Failure<Res>) -> Result<Res, Failure<Res>> {
        Ok(Res::clone(&self.0))
    }
}

/// Recovers with a function of the failure. See [`from_fn`].
///
/// ```
/// use palisade::fallback::{from_fn, Failure, FailureKind, FromFn, Recover};
///
/// fn recovery() -> FromFn<fn(Failure<String>) -> Result<String, Failure<String>>> {
///     from_fn(|failure| match failure.kind() {
///         FailureKind::CircuitOpen => Ok("temporarily unavailable".into()),
///         _ => Err(failure),
///     })
/// }
/// let open = Failure::Error(Box::new(palisade::error::CircuitOpen::new(None)));
/// assert_eq!(
///     Recover::<(), String>::recover(&recovery(), (), open).unwrap(),
///     "temporarily unavailable"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct FromFn<F>(F);

/// Recovers with `f(failure)`; `f` returns the failure back (`Err`) to let it through.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::fallback::{from_fn, FallbackLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let svc =
///     FallbackLayer::new(from_fn(|failure: palisade::fallback::Failure<String>| {
///         Ok(format!("unavailable ({})", failure.kind().as_str()))
///     }))
///     .layer(service_fn(|_: ()| async {
///         Err::<String, _>(std::io::Error::other("down"))
///     }));
/// assert_eq!(svc.oneshot(()).await.unwrap(), "unavailable (inner_error)");
/// # }
/// ```
pub fn from_fn<F>(f: F) -> FromFn<F> {
    FromFn(f)
}

impl<Req, Res, F> Recover<Req, Res> for FromFn<F>
where
    F: Fn(Failure<Res>) -> Result<Res, Failure<Res>>,
{
    type Kept = ();

    fn keep(&self, _: &Req) {}

    fn recover(&self, _: (), failure: Failure<Res>) -> Result<Res, Failure<Res>> {
        (self.0)(failure)
    }
}

/// Recovers with a function of what was kept of the request and the failure. See
/// [`with_request`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::fallback::{with_request, FallbackLayer, Failure};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// // Requests are user ids; a failed lookup answers with a placeholder naming the user.
/// let recover = with_request(
///     |user: &u32| *user,
///     |user: u32, _: Failure<String>| Ok(format!("user {user} (details unavailable)")),
/// );
/// let svc = FallbackLayer::new(recover).layer(service_fn(|_: u32| async {
///     Err::<String, _>(std::io::Error::other("down"))
/// }));
/// assert_eq!(
///     svc.oneshot(42).await.unwrap(),
///     "user 42 (details unavailable)"
/// );
/// # }
/// ```
pub struct WithRequest<K, F, T> {
    keep: K,
    recover: F,
    _kept: PhantomData<fn() -> T>,
}

impl<K: Clone, F: Clone, T> Clone for WithRequest<K, F, T> {
    fn clone(&self) -> Self {
        Self {
            keep: self.keep.clone(),
            recover: self.recover.clone(),
            _kept: PhantomData,
        }
    }
}

impl<K, F, T> fmt::Debug for WithRequest<K, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithRequest").finish_non_exhaustive()
    }
}

/// Keeps `keep(&request)` before the call and recovers with `recover(kept, failure)`.
///
/// ```
/// use palisade::fallback::{with_request, Failure, Recover};
///
/// // Answer "no stock" for the product that was asked about.
/// let recover = with_request::<_, _, u32>(
///     |product: &u32| *product,
///     |product: u32, _failure: Failure<String>| -> Result<String, Failure<String>> {
///         Ok(format!("product {product}: unknown stock"))
///     },
/// );
/// let kept = Recover::<u32, String>::keep(&recover, &7); // before the call consumes the request
/// let answer = Recover::<u32, String>::recover(&recover, kept, Failure::Error("down".into()));
/// assert_eq!(answer.unwrap(), "product 7: unknown stock");
/// ```
pub fn with_request<K, F, T>(keep: K, recover: F) -> WithRequest<K, F, T> {
    WithRequest {
        keep,
        recover,
        _kept: PhantomData,
    }
}

impl<Req, Res, K, F, T> Recover<Req, Res> for WithRequest<K, F, T>
where
    K: Fn(&Req) -> T,
    F: Fn(T, Failure<Res>) -> Result<Res, Failure<Res>>,
{
    type Kept = T;

    fn keep(&self, req: &Req) -> T {
        (self.keep)(req)
    }

    fn recover(&self, kept: T, failure: Failure<Res>) -> Result<Res, Failure<Res>> {
        (self.recover)(kept, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::cut_urls;

    #[test]
    fn urls_written_as_reqwest_writes_them_keep_only_scheme_host_and_port() {
        let cases = [
            (
                "error sending request for url (http://alice:pw@127.0.0.1:8080/a/42?token=s#f): \
                 client error (Connect)",
                "error sending request for url (http://127.0.0.1:8080/...): client error (Connect)",
            ),
            (
                "error decoding response body for url (https://[::1]:443/x?(a)=(b))",
                "error decoding response body for url (https://[::1]:443/...)",
            ),
            (
                "fetch failed: for url (https://h/p?q=1) and for url (https://h/?sig=X)",
                "fetch failed: for url (https://h/...) and for url (https://h/...)",
            ),
            (
                "for url (http://alice:pa)ss@127.0.0.1:8080/x?token=s): refused",
                "for url (http://127.0.0.1:8080/...): refused",
            ),
            (
                "for url (http://h) (h being down)",
                "for url (http://h/...) (h being down)",
            ),
            (
                "for url (no scheme here) stays",
                "for url (no scheme here) stays",
            ),
            ("connection refused", "connection refused"),
            (
                "ends with the mark for url (",
                "ends with the mark for url (",
            ),
        ];
        for (message, cut) in cases {
            assert_eq!(cut_urls(message.to_owned()), cut, "{message}");
        }
    }
}
