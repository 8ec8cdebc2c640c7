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
//! breaker to stay open at least that long. A head with an HTTP status other than 200 is read
//! as the gRPC spec maps it (429, 502, 503, 504: `UNAVAILABLE`; others mostly `UNKNOWN`).
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
pub const DEFAULT_MAX_PUSHBACK: Duration = Duration::from_secs(300);

/// Classifies gRPC responses by status code; see the [module docs](self).
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
    pub fn builder() -> Builder {
        Builder {
            classifier: Self::default(),
            error: None,
        }
    }

    /// Whether `code` is a failure.
    pub fn is_failure(&self, code: Code) -> bool {
        code.0 <= 16 && self.failures & 1 << code.0 != 0
    }

    /// Whether `code` is ignored.
    pub fn is_ignored(&self, code: Code) -> bool {
        code.0 <= 16 && self.ignored & 1 << code.0 != 0
    }

    fn rule(&self) -> EndRule {
        EndRule::Grpc {
            failures: self.failures,
            ignored: self.ignored,
            max_pushback: self.max_pushback,
        }
    }

    /// The outcome of a response head: `None` when the head does not decide (a 200 with no
    /// `grpc-status`: the trailers will).
    pub fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
        if status != StatusCode::OK {
            return Some(outcome_of_code(
                http_status_to_grpc(status),
                self.failures,
                self.ignored,
            ));
        }
        headers.get("grpc-status")?;
        Some(outcome_of_trailers(Some(headers), self.rule()))
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
        max_pushback,
    } = rule
    else {
        return Outcome::success();
    };
    let Some(trailers) = trailers else {
        return Outcome::failure();
    };
    let Some(status) = trailers.get("grpc-status") else {
        return Outcome::failure();
    };
    let code = parse_grpc_status(status.as_bytes()).unwrap_or(Code::UNKNOWN.0);
    let outcome = outcome_of_code(code, failures, ignored);
    match trailers
        .get("grpc-retry-pushback-ms")
        .and_then(|v| parse_grpc_pushback(v.as_bytes(), max_pushback))
    {
        Some(pushback) if outcome.is_failure() => outcome.with_pushback(pushback),
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
        let hooks = response.body_mut().hooks_if_streaming()?;
        hooks.set_rule(self.rule());
        Some(hooks)
    }
}

/// Builds a [`GrpcClassifier`].
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
    pub fn failure(self, code: impl Into<Code>) -> Self {
        self.mark("failure", code, true, false)
    }

    /// Counts `code` as a success.
    pub fn success(self, code: impl Into<Code>) -> Self {
        self.mark("success", code, false, false)
    }

    /// Does not count `code`.
    pub fn ignore(self, code: impl Into<Code>) -> Self {
        self.mark("ignore", code, false, true)
    }

    /// The cap on `grpc-retry-pushback-ms` (default 5 minutes); zero ignores pushback.
    pub fn max_pushback(mut self, cap: Duration) -> Self {
        self.classifier.max_pushback = cap;
        self
    }

    /// The classifier; a [`ConfigError`] naming the method if a code was out of range.
    pub fn build(&self) -> Result<GrpcClassifier, ConfigError> {
        match &self.error {
            Some(err) => Err(err.clone()),
            None => Ok(self.classifier),
        }
    }
}
