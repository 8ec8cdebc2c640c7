//! HTTP classification (feature `http`): a failure status, a dependency's pushback.
//!
//! By default 5xx (except 501 Not Implemented and 505 HTTP Version Not Supported), 429 Too Many
//! Requests and 408 Request Timeout are failures; every other status is a success. A 429 or
//! 503 with `Retry-After` asks the breaker to stay open at least that long (up to
//! [`max_pushback`](Builder::max_pushback)).
//!
//! ```
//! use http::StatusCode;
//! use palisade::classify::http::HttpClassifier;
//!
//! let classifier = HttpClassifier::builder()
//!     .failure(StatusCode::CONFLICT)           // 409 counts against the dependency
//!     .success(StatusCode::SERVICE_UNAVAILABLE) // and 503 does not
//!     .build()
//!     .unwrap();
//! let headers = http::HeaderMap::new();
//! assert!(classifier.classify_head(StatusCode::CONFLICT, &headers).is_failure());
//! assert!(classifier.classify_head(StatusCode::SERVICE_UNAVAILABLE, &headers).is_success());
//! assert!(classifier.classify_head(StatusCode::BAD_GATEWAY, &headers).is_failure());
//! ```

use std::time::Duration;

use http::header::{DATE, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use tower::BoxError;

use super::body::EndRule;
use super::{Classify, Hooks, Outcome, classify_error};
use crate::error::ConfigError;
use crate::http::{Tracked, parse_retry_after};

/// The default cap on a `Retry-After`: 5 minutes, like the breaker's own.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, StatusCode};
/// use palisade::classify::http::{HttpClassifier, DEFAULT_MAX_PUSHBACK};
///
/// // A dependency asking for an hour off gets the cap.
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "3600".parse().unwrap());
/// let outcome =
///     HttpClassifier::default().classify_head(StatusCode::SERVICE_UNAVAILABLE, &headers);
/// assert_eq!(outcome.pushback(), Some(DEFAULT_MAX_PUSHBACK));
/// assert_eq!(DEFAULT_MAX_PUSHBACK, Duration::from_secs(300));
/// ```
pub const DEFAULT_MAX_PUSHBACK: Duration = Duration::from_secs(300);

/// Classifies HTTP responses by status; see the [module docs](self).
///
/// On `http::Response<Tracked<B>>` (a client under [`TrackLayer`](crate::http::TrackLayer)) a
/// successful head defers the outcome to the end of the body: a body that breaks half-way is a
/// failure, one dropped unread is ignored. On `reqwest::Response` (feature `reqwest`) the head
/// decides.
///
/// ```
/// use http::StatusCode;
/// use palisade::classify::http::HttpClassifier;
///
/// let classifier = HttpClassifier::default();
/// for failure in [500, 502, 503, 504, 429, 408] {
///     assert!(
///         classifier.is_failure(StatusCode::from_u16(failure).unwrap()),
///         "{failure}"
///     );
/// }
/// // The dependency answered correctly: the caller asked for something wrong or unsupported.
/// for success in [200, 301, 400, 404, 409, 501, 505] {
///     assert!(
///         !classifier.is_failure(StatusCode::from_u16(success).unwrap()),
///         "{success}"
///     );
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpClassifier {
    /// Bit `s - 100` set: status `s` is a failure (statuses 100 to 999).
    failures: [u64; 15],
    max_pushback: Duration,
}

impl Default for HttpClassifier {
    fn default() -> Self {
        let mut failures = [0u64; 15];
        for status in (500..600).chain([408, 429]) {
            if status != 501 && status != 505 {
                set(&mut failures, status, true);
            }
        }
        Self {
            failures,
            max_pushback: DEFAULT_MAX_PUSHBACK,
        }
    }
}

fn set(bits: &mut [u64; 15], status: u16, on: bool) {
    let i = usize::from(status.saturating_sub(100));
    if let Some(word) = bits.get_mut(i / 64) {
        if on {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }
}

impl HttpClassifier {
    /// The defaults, to change.
    ///
    /// ```
    /// use http::StatusCode;
    /// use palisade::classify::http::HttpClassifier;
    ///
    /// let classifier = HttpClassifier::builder()
    ///     .failure(StatusCode::NOT_FOUND)
    ///     .build()
    ///     .unwrap();
    /// assert!(classifier.is_failure(StatusCode::NOT_FOUND));
    /// assert!(classifier.is_failure(StatusCode::BAD_GATEWAY)); // the defaults are kept
    /// ```
    pub fn builder() -> Builder {
        Builder {
            classifier: Self::default(),
            error: None,
        }
    }

    /// Whether `status` is a failure.
    ///
    /// ```
    /// use http::StatusCode;
    /// use palisade::classify::http::HttpClassifier;
    ///
    /// let classifier = HttpClassifier::default();
    /// assert!(classifier.is_failure(StatusCode::SERVICE_UNAVAILABLE));
    /// assert!(!classifier.is_failure(StatusCode::NOT_IMPLEMENTED));
    /// ```
    pub fn is_failure(&self, status: StatusCode) -> bool {
        let i = usize::from(status.as_u16().saturating_sub(100));
        self.failures
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    /// The outcome of a response head: its status, and for 429 and 503 the `Retry-After`
    /// pushback (measured from the `Date` header when it is a date).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{HeaderMap, StatusCode};
    /// use palisade::classify::http::HttpClassifier;
    ///
    /// let classifier = HttpClassifier::default();
    /// let mut headers = HeaderMap::new();
    /// headers.insert("retry-after", "120".parse().unwrap());
    /// let outcome = classifier.classify_head(StatusCode::TOO_MANY_REQUESTS, &headers);
    /// assert!(outcome.is_failure());
    /// assert_eq!(outcome.pushback(), Some(Duration::from_secs(120)));
    /// // Only 429 and 503 push back; a 500's Retry-After is not read.
    /// assert_eq!(
    ///     classifier
    ///         .classify_head(StatusCode::INTERNAL_SERVER_ERROR, &headers)
    ///         .pushback(),
    ///     None
    /// );
    /// assert!(
    ///     classifier
    ///         .classify_head(StatusCode::OK, &headers)
    ///         .is_success()
    /// );
    /// ```
    pub fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        if !self.is_failure(status) {
            return Outcome::success();
        }
        let outcome = Outcome::failure();
        if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
            return outcome;
        }
        with_retry_after(outcome, headers, self.max_pushback)
    }
}

/// `outcome` (a failure: a 429 or a 503) with the head's `Retry-After` as its pushback, capped
/// at `cap`; zero ignores pushback.
pub(crate) fn with_retry_after(outcome: Outcome, headers: &HeaderMap, cap: Duration) -> Outcome {
    if cap.is_zero() {
        return outcome; // pushback ignored
    }
    let pushback = headers.get(RETRY_AFTER).and_then(|value| {
        let date = headers.get(DATE).map(|d| d.as_bytes());
        parse_retry_after(value.as_bytes(), date, cap)
    });
    match pushback {
        Some(pushback) => outcome.with_pushback(pushback),
        None => outcome,
    }
}

impl<B: Body> Classify<Response<Tracked<B>>> for HttpClassifier {
    fn classify(&self, result: Result<&Response<Tracked<B>>, &BoxError>) -> Outcome {
        match result {
            Ok(res) => self.classify_head(res.status(), res.headers()),
            Err(err) => classify_error(err),
        }
    }

    fn end_of_body<'a>(
        &self,
        response: &'a mut Response<Tracked<B>>,
        head: &Outcome,
    ) -> Option<&'a mut Hooks> {
        if !head.is_success() {
            return None;
        }
        let hooks = crate::http::hooks_if_streaming(response)?;
        // Judged by the head, whatever a gRPC classifier over the same body reads the end by.
        hooks.set_rule(EndRule::Body);
        Some(hooks)
    }
}

#[cfg(feature = "reqwest")]
impl Classify<reqwest::Response> for HttpClassifier {
    fn classify(&self, result: Result<&reqwest::Response, &BoxError>) -> Outcome {
        match result {
            Ok(res) => self.classify_head(res.status(), res.headers()),
            Err(err) => classify_error(err),
        }
    }
}

/// A status: a `StatusCode`, or a `u16` checked to be from 100 to 999.
///
/// ```
/// use http::StatusCode;
/// use palisade::classify::http::HttpClassifier;
///
/// let classifier = HttpClassifier::builder()
///     .failure(StatusCode::CONFLICT) // a StatusCode
///     .failure(423u16) // or a number
///     .build()
///     .unwrap();
/// assert!(classifier.is_failure(StatusCode::LOCKED));
///
/// let err = HttpClassifier::builder()
///     .failure(1000u16)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "failure");
/// ```
pub trait StatusLike: TryInto<StatusCode> + Copy + std::fmt::Debug {}

impl<T: TryInto<StatusCode> + Copy + std::fmt::Debug> StatusLike for T {}

/// Builds an [`HttpClassifier`].
///
/// ```
/// use http::StatusCode;
/// use palisade::classify::http::HttpClassifier;
///
/// let classifier = HttpClassifier::builder()
///     .failure(StatusCode::CONFLICT)
///     .success(StatusCode::TOO_MANY_REQUESTS) // a client-side quota, not a sick dependency
///     .build()
///     .unwrap();
/// assert!(classifier.is_failure(StatusCode::CONFLICT));
/// assert!(!classifier.is_failure(StatusCode::TOO_MANY_REQUESTS));
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    classifier: HttpClassifier,
    error: Option<ConfigError>,
}

impl Builder {
    fn mark<S: StatusLike>(mut self, field: &'static str, status: S, on: bool) -> Self {
        match status.try_into() {
            Ok(code) => set(&mut self.classifier.failures, code.as_u16(), on),
            Err(_) => {
                self.error.get_or_insert(ConfigError::new(
                    field,
                    "must be a status from 100 to 999",
                    status,
                ));
            }
        }
        self
    }

    /// Counts `status` as a failure (a `StatusCode`, or a `u16` from 100 to 999).
    ///
    /// ```
    /// use http::StatusCode;
    /// use palisade::classify::http::HttpClassifier;
    ///
    /// let classifier = HttpClassifier::builder().failure(409u16).build().unwrap();
    /// assert!(classifier.is_failure(StatusCode::CONFLICT));
    /// ```
    pub fn failure(self, status: impl StatusLike) -> Self {
        self.mark("failure", status, true)
    }

    /// Counts `status` as a success.
    ///
    /// ```
    /// use http::StatusCode;
    /// use palisade::classify::http::HttpClassifier;
    ///
    /// let classifier = HttpClassifier::builder()
    ///     .success(StatusCode::SERVICE_UNAVAILABLE)
    ///     .build()
    ///     .unwrap();
    /// assert!(!classifier.is_failure(StatusCode::SERVICE_UNAVAILABLE));
    /// ```
    pub fn success(self, status: impl StatusLike) -> Self {
        self.mark("success", status, false)
    }

    /// The cap on a `Retry-After` pushback (default 5 minutes); zero ignores pushback.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{HeaderMap, StatusCode};
    /// use palisade::classify::http::HttpClassifier;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("retry-after", "120".parse().unwrap());
    /// let capped = HttpClassifier::builder()
    ///     .max_pushback(Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// let outcome = capped.classify_head(StatusCode::SERVICE_UNAVAILABLE, &headers);
    /// assert_eq!(outcome.pushback(), Some(Duration::from_secs(30)));
    ///
    /// // A cap of zero: no pushback, and the breaker keeps its own open duration.
    /// let deaf = HttpClassifier::builder()
    ///     .max_pushback(Duration::ZERO)
    ///     .build()
    ///     .unwrap();
    /// let outcome = deaf.classify_head(StatusCode::SERVICE_UNAVAILABLE, &headers);
    /// assert_eq!(outcome.pushback(), None);
    /// ```
    pub fn max_pushback(mut self, cap: Duration) -> Self {
        self.classifier.max_pushback = cap;
        self
    }

    /// The classifier; a [`ConfigError`] naming `failure` or `success` if a status was out of
    /// range.
    ///
    /// ```
    /// use palisade::classify::http::HttpClassifier;
    ///
    /// assert!(HttpClassifier::builder().failure(418u16).build().is_ok());
    /// let err = HttpClassifier::builder()
    ///     .success(42u16)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "success");
    /// ```
    pub fn build(&self) -> Result<HttpClassifier, ConfigError> {
        match &self.error {
            Some(err) => Err(err.clone()),
            None => Ok(self.classifier),
        }
    }
}
