//! gRPC classification (feature `grpc`): the status in the head or in the trailers.
//!
//! A gRPC response's status is in its head only when the response is "trailers-only" (an
//! error with no messages); otherwise it comes in the trailers, after the messages. So a
//! successful head defers the outcome to the end of the body (under
//! [`TrackLayer`](crate::http::TrackLayer)): the trailers' `grpc-status` decides, and a body
//! that ends without one is a failure, never a silent success.
//!
//! By default `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNKNOWN`
//! and `DATA_LOSS` are failures, `CANCELLED` is ignored, and every other code is a success (the
//! dependency answered; the caller's request was at fault). `grpc-retry-pushback-ms` asks the
//! breaker to stay open at least that long (so does a proxy's `Retry-After` on a 429 or 503 head
//! with no `grpc-status`). A `grpc-status` in the head decides whatever the
//! HTTP status; a head with an HTTP status other than 200 and no `grpc-status` is read as the
//! gRPC spec maps it (429, 502, 503, 504: `UNAVAILABLE`; others mostly `UNKNOWN`).
//!
//! ```
//! use palisade::classify::grpc::{Code, GrpcClassifier};
//!
//! let classifier = GrpcClassifier::builder()
//!     .failure(Code::PERMISSION_DENIED)
//!     .success(Code::RESOURCE_EXHAUSTED)
//!     .build()
//!     .unwrap();
//! assert!(classifier.is_failure(Code::PERMISSION_DENIED));
//! assert!(!classifier.is_failure(Code::RESOURCE_EXHAUSTED));
//! assert!(classifier.is_ignored(Code::CANCELLED));
//! ```

use std::time::Duration;

use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use tower::BoxError;

use super::{Classify, EndRule, Hooks, Outcome, classify_error};
use crate::error::ConfigError;
use crate::http::{Tracked, parse_grpc_pushback, parse_grpc_status};

/// gRPC status codes, as numbers (tonic's `Code` converts with `i32::from(code)`).
///
/// ```
/// use palisade::classify::grpc::Code;
///
/// assert_eq!(Code::from(14), Code::UNAVAILABLE);
/// assert_eq!(
///     Code::from(i32::from(tonic::Code::DeadlineExceeded)),
///     Code::DEADLINE_EXCEEDED
/// );
/// assert_eq!(Code::UNAUTHENTICATED.0, 16);
/// assert_eq!(Code::from(-1), Code(u32::MAX)); // not a code: refused by the builder
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(pub u32);

#[allow(missing_docs)]
impl Code {
    pub const OK: Code = Code(0);
    pub const CANCELLED: Code = Code(1);
    pub const UNKNOWN: Code = Code(2);
    pub const INVALID_ARGUMENT: Code = Code(3);
    pub const DEADLINE_EXCEEDED: Code = Code(4);
    pub const NOT_FOUND: Code = Code(5);
    pub const ALREADY_EXISTS: Code = Code(6);
    pub const PERMISSION_DENIED: Code = Code(7);
    pub const RESOURCE_EXHAUSTED: Code = Code(8);
    pub const FAILED_PRECONDITION: Code = Code(9);
    pub const ABORTED: Code = Code(10);
    pub const OUT_OF_RANGE: Code = Code(11);
    pub const UNIMPLEMENTED: Code = Code(12);
    pub const INTERNAL: Code = Code(13);
    pub const UNAVAILABLE: Code = Code(14);
    pub const DATA_LOSS: Code = Code(15);
    pub const UNAUTHENTICATED: Code = Code(16);
}

impl From<i32> for Code {
    fn from(code: i32) -> Self {
        Code(u32::try_from(code).unwrap_or(u32::MAX))
    }
}

/// The default cap on `grpc-retry-pushback-ms`: 5 minutes, like the breaker's own.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, StatusCode};
/// use palisade::classify::grpc::{GrpcClassifier, DEFAULT_MAX_PUSHBACK};
///
/// // A trailers-only UNAVAILABLE asking for ten minutes off gets the cap.
/// let mut headers = HeaderMap::new();
/// headers.insert("grpc-status", "14".parse().unwrap());
/// headers.insert("grpc-retry-pushback-ms", "600000".parse().unwrap());
/// let outcome = GrpcClassifier::default()
///     .classify_head(StatusCode::OK, &headers)
///     .unwrap();
/// assert_eq!(outcome.pushback(), Some(DEFAULT_MAX_PUSHBACK));
/// assert_eq!(DEFAULT_MAX_PUSHBACK, Duration::from_secs(300));
/// ```
pub const DEFAULT_MAX_PUSHBACK: Duration = Duration::from_secs(300);

/// Classifies gRPC responses by status code; see the [module docs](self).
///
/// ```
/// use palisade::classify::grpc::{Code, GrpcClassifier};
///
/// let classifier = GrpcClassifier::default();
/// for code in [
///     Code::UNAVAILABLE,
///     Code::DEADLINE_EXCEEDED,
///     Code::RESOURCE_EXHAUSTED,
///     Code::INTERNAL,
///     Code::UNKNOWN,
///     Code::DATA_LOSS,
/// ] {
///     assert!(classifier.is_failure(code), "{code:?}");
/// }
/// assert!(classifier.is_ignored(Code::CANCELLED));
/// // The dependency answered; the request was at fault.
/// assert!(
///     !classifier.is_failure(Code::NOT_FOUND) && !classifier.is_ignored(Code::NOT_FOUND)
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: u32,
    ignored: u32,
    max_pushback: Duration,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        let bits = |codes: &[Code]| codes.iter().fold(0, |bits, c| bits | 1 << c.0);
        Self {
            failures: bits(&[
                Code::UNAVAILABLE,
                Code::DEADLINE_EXCEEDED,
                Code::RESOURCE_EXHAUSTED,
                Code::INTERNAL,
                Code::UNKNOWN,
                Code::DATA_LOSS,
            ]),
            ignored: bits(&[Code::CANCELLED]),
            max_pushback: DEFAULT_MAX_PUSHBACK,
        }
    }
}

impl GrpcClassifier {
    /// The defaults, to change.
    ///
    /// ```
    /// use palisade::classify::grpc::{Code, GrpcClassifier};
    ///
    /// let classifier = GrpcClassifier::builder()
    ///     .failure(Code::ABORTED)
    ///     .build()
    ///     .unwrap();
    /// assert!(classifier.is_failure(Code::ABORTED));
    /// assert!(classifier.is_failure(Code::UNAVAILABLE)); // the defaults are kept
    /// ```
    pub fn builder() -> Builder {
        Builder {
            classifier: Self::default(),
            error: None,
        }
    }

    /// Whether `code` is a failure.
    ///
    /// ```
    /// use palisade::classify::grpc::{Code, GrpcClassifier};
    ///
    /// assert!(GrpcClassifier::default().is_failure(Code::UNAVAILABLE));
    /// assert!(!GrpcClassifier::default().is_failure(Code::INVALID_ARGUMENT));
    /// ```
    pub fn is_failure(&self, code: Code) -> bool {
        code.0 <= 16 && self.failures & 1 << code.0 != 0
    }

    /// Whether `code` is ignored.
    ///
    /// ```
    /// use palisade::classify::grpc::{Code, GrpcClassifier};
    ///
    /// assert!(GrpcClassifier::default().is_ignored(Code::CANCELLED));
    /// assert!(!GrpcClassifier::default().is_ignored(Code::OK));
    /// ```
    pub fn is_ignored(&self, code: Code) -> bool {
        code.0 <= 16 && self.ignored & 1 << code.0 != 0
    }

    fn rule(&self) -> EndRule {
        EndRule::Grpc {
            failures: self.failures,
            ignored: self.ignored,
            // Rounded up: only a cap of zero turns pushback off.
            max_pushback_ms: u32::try_from(self.max_pushback.as_nanos().div_ceil(1_000_000))
                .unwrap_or(u32::MAX),
        }
    }

    /// The outcome of a response head: `None` when the head does not decide (a 200 with no
    /// `grpc-status`: the trailers will).
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// use palisade::classify::grpc::GrpcClassifier;
    ///
    /// let classifier = GrpcClassifier::default();
    /// let mut headers = HeaderMap::new();
    /// // A 200 head with no grpc-status: the trailers will tell.
    /// assert_eq!(classifier.classify_head(StatusCode::OK, &headers), None);
    /// // Trailers-only: the head decides.
    /// headers.insert("grpc-status", "14".parse().unwrap()); // UNAVAILABLE
    /// assert!(
    ///     classifier
    ///         .classify_head(StatusCode::OK, &headers)
    ///         .unwrap()
    ///         .is_failure()
    /// );
    /// // A proxy's 503 maps to UNAVAILABLE; its 404 to UNIMPLEMENTED, a success.
    /// let none = HeaderMap::new();
    /// assert!(
    ///     classifier
    ///         .classify_head(StatusCode::SERVICE_UNAVAILABLE, &none)
    ///         .unwrap()
    ///         .is_failure()
    /// );
    /// // A proxy's 429 or 503 with a `Retry-After` pushes back as an HTTP one does.
    /// let mut busy = HeaderMap::new();
    /// busy.insert("retry-after", "120".parse().unwrap());
    /// let outcome = classifier
    ///     .classify_head(StatusCode::SERVICE_UNAVAILABLE, &busy)
    ///     .unwrap();
    /// assert_eq!(outcome.pushback(), Some(std::time::Duration::from_secs(120)));
    /// assert!(
    ///     classifier
    ///         .classify_head(StatusCode::NOT_FOUND, &none)
    ///         .unwrap()
    ///         .is_success()
    /// );
    /// // A grpc-status decides whatever the HTTP status, and its pushback holds.
    /// let mut limited = HeaderMap::new();
    /// limited.insert("grpc-status", "0".parse().unwrap()); // OK
    /// assert!(
    ///     classifier
    ///         .classify_head(StatusCode::SERVICE_UNAVAILABLE, &limited)
    ///         .unwrap()
    ///         .is_success()
    /// );
    /// limited.insert("grpc-status", "8".parse().unwrap()); // RESOURCE_EXHAUSTED
    /// limited.insert("grpc-retry-pushback-ms", "250".parse().unwrap());
    /// let outcome = classifier
    ///     .classify_head(StatusCode::TOO_MANY_REQUESTS, &limited)
    ///     .unwrap();
    /// assert!(outcome.is_failure());
    /// assert_eq!(outcome.pushback(), Some(std::time::Duration::from_millis(250)));
    /// ```
    pub fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
        // A status in the head decides, with its pushback, whatever the HTTP status: the spec
        // maps the HTTP status only when no `grpc-status` came (as tonic reads it).
        if headers.contains_key("grpc-status") {
            return Some(outcome_of_trailers(Some(headers), self.rule()));
        }
        if status == StatusCode::OK {
            return None;
        }
        let outcome = outcome_of_code(http_status_to_grpc(status), self.failures, self.ignored);
        // A proxy's 429 or 503 (no gRPC reply behind it) asks for time as HTTP does.
        Some(
            if outcome.is_failure()
                && matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                )
            {
                super::http::with_retry_after(outcome, headers, self.max_pushback)
            } else {
                outcome
            },
        )
    }
}

/// The gRPC spec's mapping of an HTTP status to a code, for a non-200 head.
fn http_status_to_grpc(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

fn outcome_of_code(code: u32, failures: u32, ignored: u32) -> Outcome {
    let bit = 1u32.checked_shl(code).unwrap_or(0);
    if failures & bit != 0 {
        Outcome::failure()
    } else if ignored & bit != 0 {
        Outcome::ignored()
    } else {
        Outcome::success()
    }
}

/// The outcome the trailers (or a trailers-only head) give: no `grpc-status` is a failure; a
/// malformed one is `UNKNOWN`.
pub(crate) fn outcome_of_trailers(trailers: Option<&HeaderMap>, rule: EndRule) -> Outcome {
    let EndRule::Grpc {
        failures,
        ignored,
        max_pushback_ms,
    } = rule
    else {
        return Outcome::success();
    };
    let max_pushback = Duration::from_millis(max_pushback_ms.into());
    let Some(trailers) = trailers else {
        return Outcome::failure();
    };
    let Some(status) = trailers.get("grpc-status") else {
        return Outcome::failure();
    };
    let code = parse_grpc_status(status.as_bytes());
    let outcome = outcome_of_code(code, failures, ignored);
    match trailers
        .get("grpc-retry-pushback-ms")
        .and_then(|v| parse_grpc_pushback(v.as_bytes(), max_pushback))
    {
        Some(pushback) if outcome.is_failure() && !max_pushback.is_zero() => {
            outcome.with_pushback(pushback)
        }
        _ => outcome,
    }
}

impl<B: Body> Classify<Response<Tracked<B>>> for GrpcClassifier {
    fn classify(&self, result: Result<&Response<Tracked<B>>, &BoxError>) -> Outcome {
        match result {
            Ok(res) => match self.classify_head(res.status(), res.headers()) {
                Some(outcome) => outcome,
                // Until the trailers say otherwise; a body with nothing left to read cannot.
                None if res.body().is_drained() => Outcome::failure(),
                None => Outcome::success(),
            },
            Err(err) => classify_error(err),
        }
    }

    fn end_of_body<'a>(
        &self,
        response: &'a mut Response<Tracked<B>>,
        head: &Outcome,
    ) -> Option<&'a mut Hooks> {
        if !head.is_success()
            || response.status() != StatusCode::OK
            || response.headers().contains_key("grpc-status")
        {
            return None;
        }
        // Whatever is left to read now: `classify` found something left, and said success
        // until the trailers tell. A body whose end came in between (a connection on another
        // thread can end it) is judged at that end, with no trailers: a failure, never the
        // head's provisional success.
        let hooks = response.body_mut().hooks_until_end();
        hooks.set_rule(self.rule());
        Some(hooks)
    }
}

/// Builds a [`GrpcClassifier`].
///
/// ```
/// use palisade::classify::grpc::{Code, GrpcClassifier};
///
/// let classifier = GrpcClassifier::builder()
///     .failure(Code::PERMISSION_DENIED)
///     .success(Code::RESOURCE_EXHAUSTED) // a per-caller quota, not a sick server
///     .ignore(Code::ABORTED)
///     .build()
///     .unwrap();
/// assert!(classifier.is_failure(Code::PERMISSION_DENIED));
/// assert!(!classifier.is_failure(Code::RESOURCE_EXHAUSTED));
/// assert!(classifier.is_ignored(Code::ABORTED));
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    classifier: GrpcClassifier,
    error: Option<ConfigError>,
}

impl Builder {
    fn mark(
        mut self,
        field: &'static str,
        code: impl Into<Code>,
        failure: bool,
        ignored: bool,
    ) -> Self {
        let code = code.into();
        if code.0 > 16 {
            self.error.get_or_insert(ConfigError::new(
                field,
                "must be a gRPC status code from 0 to 16",
                code.0,
            ));
            return self;
        }
        let bit = 1 << code.0;
        let c = &mut self.classifier;
        c.failures = if failure {
            c.failures | bit
        } else {
            c.failures & !bit
        };
        c.ignored = if ignored {
            c.ignored | bit
        } else {
            c.ignored & !bit
        };
        self
    }

    /// Counts `code` as a failure.
    ///
    /// ```
    /// use palisade::classify::grpc::{Code, GrpcClassifier};
    ///
    /// // A tonic code converts through its number.
    /// let code = i32::from(tonic::Code::Unauthenticated);
    /// let classifier = GrpcClassifier::builder().failure(code).build().unwrap();
    /// assert!(classifier.is_failure(Code::UNAUTHENTICATED));
    /// ```
    pub fn failure(self, code: impl Into<Code>) -> Self {
        self.mark("failure", code, true, false)
    }

    /// Counts `code` as a success.
    ///
    /// ```
    /// use palisade::classify::grpc::{Code, GrpcClassifier};
    ///
    /// let classifier = GrpcClassifier::builder()
    ///     .success(Code::UNKNOWN)
    ///     .build()
    ///     .unwrap();
    /// assert!(!classifier.is_failure(Code::UNKNOWN));
    /// ```
    pub fn success(self, code: impl Into<Code>) -> Self {
        self.mark("success", code, false, false)
    }

    /// Does not count `code`.
    ///
    /// ```
    /// use palisade::classify::grpc::{Code, GrpcClassifier};
    ///
    /// let classifier = GrpcClassifier::builder()
    ///     .ignore(Code::DEADLINE_EXCEEDED)
    ///     .build()
    ///     .unwrap();
    /// assert!(classifier.is_ignored(Code::DEADLINE_EXCEEDED));
    /// assert!(!classifier.is_failure(Code::DEADLINE_EXCEEDED));
    /// ```
    pub fn ignore(self, code: impl Into<Code>) -> Self {
        self.mark("ignore", code, false, true)
    }

    /// The cap on `grpc-retry-pushback-ms`, and on the `Retry-After` of a proxy's 429 or 503
    /// head with no `grpc-status` (default 5 minutes); zero ignores pushback.
    ///
    /// Kept in whole milliseconds, the header's unit, rounded up (only zero ignores pushback),
    /// and at most 2^32 - 1 ms (49 days).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{HeaderMap, StatusCode};
    /// use palisade::classify::grpc::GrpcClassifier;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("grpc-status", "14".parse().unwrap());
    /// headers.insert("grpc-retry-pushback-ms", "5000".parse().unwrap());
    /// let classifier = GrpcClassifier::builder()
    ///     .max_pushback(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// let outcome = classifier.classify_head(StatusCode::OK, &headers).unwrap();
    /// assert_eq!(outcome.pushback(), Some(Duration::from_secs(1)));
    ///
    /// // A cap of zero: no pushback, and the breaker keeps its own open duration.
    /// let deaf = GrpcClassifier::builder()
    ///     .max_pushback(Duration::ZERO)
    ///     .build()
    ///     .unwrap();
    /// let outcome = deaf.classify_head(StatusCode::OK, &headers).unwrap();
    /// assert_eq!(outcome.pushback(), None);
    /// ```
    pub fn max_pushback(mut self, cap: Duration) -> Self {
        self.classifier.max_pushback = cap;
        self
    }

    /// The classifier; a [`ConfigError`] naming the method if a code was out of range.
    ///
    /// ```
    /// use palisade::classify::grpc::{Code, GrpcClassifier};
    ///
    /// assert!(
    ///     GrpcClassifier::builder()
    ///         .failure(Code::ABORTED)
    ///         .build()
    ///         .is_ok()
    /// );
    /// let err = GrpcClassifier::builder()
    ///     .ignore(Code(17))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "ignore");
    /// ```
    pub fn build(&self) -> Result<GrpcClassifier, ConfigError> {
        match &self.error {
            Some(err) => Err(err.clone()),
            None => Ok(self.classifier),
        }
    }
}
