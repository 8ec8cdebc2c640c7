//! No input makes palisade panic: the parsers of what a dependency sends (here, the gRPC
//! status and pushback in arbitrary trailers, read through `GrpcClassifier` at the end of a
//! body) and every configuration builder and deserializer, over arbitrary strings and numbers.
//!
//! The other no-panic properties live beside the code they test:
//! `http::header_parsers_never_panic_and_respect_the_cap` (`Retry-After`, `grpc-timeout`,
//! `grpc-retry-pushback-ms`, and a gRPC status in the head),
//! `http::grpc_timeout_format_is_short_rounded_up_and_parses_back`,
//! `config::build_never_panics` (circuit breaker), `bulkhead::build_never_panics`,
//! `timeout::any_timeout_builds_or_is_refused_and_never_panics`,
//! `policy::never_panics::policy_build_never_panics` and `stale_cache_build_never_panics`.

mod support;

use proptest::prelude::*;
use support::any_duration;

/// The gRPC status, wherever it arrives, and whatever bytes it is made of.
#[cfg(feature = "grpc")]
mod grpc_status {
    use super::*;

    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::stream;
    use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
    use palisade::classify::OutcomeKind;
    use palisade::classify::grpc::{Code, GrpcClassifier};
    use palisade::events::Event;
    use palisade::policy::Policy;
    use tower::{Layer, Service, ServiceExt};

    /// Bytes a header value might hold: anything, digits (some too many for any integer),
    /// digits padded with blanks, signs.
    fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            "[0-9]{1,25}".prop_map(String::into_bytes),
            "[ \t]{0,2}[0-9]{1,3}[ \t]{0,2}".prop_map(String::into_bytes),
            "[+-][0-9]{1,3}".prop_map(String::into_bytes),
            (0u32..20).prop_map(|n| n.to_string().into_bytes()),
        ]
    }

    /// Where the status is.
    #[derive(Debug, Clone, Copy)]
    enum Placement {
        /// In the trailers, after one message.
        Trailers,
        /// In a `200` head ("trailers-only").
        Head,
        /// Nowhere: the body ends after one message without trailers.
        Missing,
        /// A non-`200` head with no `grpc-status` (as a proxy answers), read as the gRPC spec
        /// maps the HTTP status.
        HttpStatus(u16),
        /// A non-`200` head that carries a `grpc-status`: the status decides (the spec maps the
        /// HTTP status only when none came).
        HttpStatusWithGrpc(u16),
    }

    fn placement() -> impl Strategy<Value = Placement> {
        prop_oneof![
            3 => Just(Placement::Trailers),
            2 => Just(Placement::Head),
            1 => Just(Placement::Missing),
            // (A 200 is another placement: `Head` or `Missing`.)
            1 => (100u16..1000)
                .prop_filter("not 200", |s| *s != 200)
                .prop_map(Placement::HttpStatus),
            1 => (100u16..1000)
                .prop_filter("not 200", |s| *s != 200)
                .prop_map(Placement::HttpStatusWithGrpc),
        ]
    }

    /// The code a `grpc-status` value stands for, as tonic reads it (what the caller gets):
    /// one of `0` to `16` written exactly, with no sign, space or leading zero; anything else
    /// is `UNKNOWN`.
    fn code_of(value: &[u8]) -> u32 {
        (0..=16u32)
            .find(|code| code.to_string().as_bytes() == value)
            .unwrap_or(2)
    }

    /// The spec's mapping of an HTTP status to a gRPC code.
    fn code_of_http(status: u16) -> u32 {
        match status {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502 | 503 | 504 => 14,
            _ => 2,
        }
    }

    type Frames = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any status bytes, in any place, under any classifier: no panic, and the recorded
        /// outcome is the one the status stands for (a missing status is a failure).
        #[test]
        fn any_grpc_status_in_any_place_is_classified_as_the_spec_reads_it(
            status in value_bytes(),
            pushback in value_bytes(),
            place in placement(),
            marks in prop::collection::vec((0u8..3, -2i32..20), 0..6),
            max_pushback in any_duration(),
        ) {
            let mut builder = GrpcClassifier::builder().max_pushback(max_pushback);
            for &(kind, code) in &marks {
                builder = match kind {
                    0 => builder.failure(code),
                    1 => builder.success(code),
                    _ => builder.ignore(code),
                };
            }
            let classifier = match builder.build() {
                Ok(c) => c,
                Err(err) => {
                    prop_assert!(marks.iter().any(|&(_, c)| !(0..=16).contains(&c)));
                    prop_assert!(["failure", "success", "ignore"].contains(&err.field()));
                    return Ok(());
                }
            };
            prop_assert!(marks.iter().all(|&(_, c)| (0..=16).contains(&c)));
            let (Ok(status_value), Ok(pushback_value)) =
                (HeaderValue::from_bytes(&status), HeaderValue::from_bytes(&pushback))
            else {
                return Ok(()); // not a header value at all: no response can carry it
            };
            let mut fields = HeaderMap::new();
            fields.insert("grpc-status", status_value);
            fields.insert(HeaderName::from_static("grpc-retry-pushback-ms"), pushback_value);

            let (head_status, head, frames) = match place {
                Placement::Trailers => (
                    StatusCode::OK,
                    HeaderMap::new(),
                    vec![Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))), Ok(Frame::trailers(fields))],
                ),
                Placement::Head => (StatusCode::OK, fields, vec![]),
                Placement::Missing => (
                    StatusCode::OK,
                    HeaderMap::new(),
                    vec![Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0")))],
                ),
                Placement::HttpStatus(s) => (StatusCode::from_u16(s).unwrap(), HeaderMap::new(), vec![]),
                Placement::HttpStatusWithGrpc(s) => (StatusCode::from_u16(s).unwrap(), fields, vec![]),
            };
            let code = match place {
                Placement::Trailers | Placement::Head | Placement::HttpStatusWithGrpc(_) => {
                    Some(code_of(&status))
                }
                Placement::Missing => None,
                Placement::HttpStatus(s) => Some(code_of_http(s)),
            };
            let expected = match code {
                None => OutcomeKind::Failure,
                Some(code) if classifier.is_failure(Code(code)) => OutcomeKind::Failure,
                Some(code) if classifier.is_ignored(Code(code)) => OutcomeKind::Ignored,
                Some(_) => OutcomeKind::Success,
            };

            let recorded = Arc::new(Mutex::new(Vec::new()));
            let log = recorded.clone();
            let mut breaker = CircuitBreakerConfig::default();
            breaker.window = SlidingWindow::Count(1);
            breaker.minimum_calls = 1;
            let policy = Policy::builder()
                .grpc()
                .classifier(classifier)
                .circuit_breaker(breaker)
                .listener(move |event: &Event<'_>| {
                    if let Event::CallRecorded { outcome, .. } = event {
                        log.lock().unwrap().push(outcome.kind());
                    }
                })
                .build()
                .unwrap();
            let response = Arc::new(Mutex::new(Some((head_status, head, frames))));
            let mut svc = policy.layer(tower::service_fn(move |_: Request<()>| {
                let (status, headers, frames) = response.lock().unwrap().take().unwrap();
                async move {
                    let mut res = Response::new(StreamBody::new(stream::iter(frames) as Frames));
                    *res.status_mut() = status;
                    *res.headers_mut() = headers;
                    res.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
                    Ok::<_, Infallible>(res)
                }
            }));
            futures::executor::block_on(async {
                let res = svc.ready().await.unwrap().call(Request::new(())).await.unwrap();
                res.into_body().collect().await.unwrap();
            });
            prop_assert_eq!(&*recorded.lock().unwrap(), &[expected]);
        }
    }
}

/// The HTTP and gRPC classifier builders, over any status, code and cap.
#[cfg(feature = "grpc")]
mod classifier_builders {
    use super::*;

    use http::{HeaderMap, HeaderValue, StatusCode};
    use palisade::classify::grpc::GrpcClassifier;
    use palisade::classify::http::HttpClassifier;

    proptest! {
        #[test]
        fn http_classifier_builds_or_names_the_status_and_classifies_any_head(
            marks in prop::collection::vec((any::<bool>(), prop_oneof![0u16..1100, any::<u16>()]), 0..6),
            max_pushback in any_duration(),
            status in 100u16..1000,
            retry_after in prop::collection::vec(any::<u8>(), 0..40),
            date in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut builder = HttpClassifier::builder().max_pushback(max_pushback);
            for &(failure, code) in &marks {
                builder = if failure { builder.failure(code) } else { builder.success(code) };
            }
            let classifier = match builder.build() {
                Ok(c) => c,
                Err(err) => {
                    prop_assert!(marks.iter().any(|&(_, c)| !(100..=999).contains(&c)));
                    prop_assert!(["failure", "success"].contains(&err.field()));
                    return Ok(());
                }
            };
            prop_assert!(marks.iter().all(|&(_, c)| (100..=999).contains(&c)));
            let status = StatusCode::from_u16(status).unwrap();
            let mut headers = HeaderMap::new();
            for (name, bytes) in [("retry-after", &retry_after), ("date", &date)] {
                if let Ok(value) = HeaderValue::from_bytes(bytes) {
                    headers.insert(name, value);
                }
            }
            let outcome = classifier.classify_head(status, &headers);
            prop_assert_eq!(outcome.is_failure(), classifier.is_failure(status));
            prop_assert!(outcome.is_failure() || outcome.is_success());
            if let Some(pushback) = outcome.pushback() {
                prop_assert!(pushback <= max_pushback);
            }
        }

        #[test]
        fn grpc_classifier_builds_or_names_the_code(
            marks in prop::collection::vec((0u8..3, any::<i32>()), 0..6),
            max_pushback in any_duration(),
        ) {
            let mut builder = GrpcClassifier::builder().max_pushback(max_pushback);
            for &(kind, code) in &marks {
                builder = match kind {
                    0 => builder.failure(code),
                    1 => builder.success(code),
                    _ => builder.ignore(code),
                };
            }
            prop_assert_eq!(
                builder.build().is_ok(),
                marks.iter().all(|&(_, c)| (0..=16).contains(&c))
            );
        }
    }
}

/// The HTTP stale cache, the whole-response deadline and `grpc-timeout` propagation, over any
/// bound and duration, used for a call.
#[cfg(feature = "grpc")]
mod http_builders {
    use super::*;

    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{HeaderValue, Method, Request, Response};
    use http_body_util::{BodyExt, Full};
    use palisade::http::{HttpStaleCache, Tracked, format_grpc_timeout, parse_grpc_timeout};
    use palisade::policy::Policy;
    use std::time::Duration;
    use tower::{Layer, Service, ServiceExt};

    fn any_count() -> impl Strategy<Value = usize> {
        prop_oneof![
            Just(0),
            Just(1),
            Just(usize::MAX),
            0usize..10_000,
            any::<usize>()
        ]
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    proptest! {
        #[test]
        fn http_stale_cache_builds_or_names_the_bound_and_then_serves(
            stale in any_duration(),
            entries in any_count(),
            bytes in any_count(),
            entry in any_count(),
            methods in prop::collection::vec(prop_oneof![Just(Method::GET), Just(Method::HEAD), Just(Method::POST)], 0..3),
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let built = HttpStaleCache::builder()
                .max_stale(stale)
                .max_entries(entries)
                .max_bytes(bytes)
                .max_entry_bytes(entry)
                .methods(methods.clone())
                .build();
            let valid = !methods.is_empty() && !stale.is_zero() && entries > 0 && entry > 0 && bytes >= entry;
            let cache = match built {
                Ok(cache) => cache,
                Err(err) => {
                    prop_assert!(!valid, "{}", err);
                    prop_assert!(["methods", "max_stale", "max_entries", "max_entry_bytes", "max_bytes"].contains(&err.field()));
                    return Ok(());
                }
            };
            prop_assert!(valid);
            // Used: one good response (kept if it fits), then a failure (served from it, if
            // kept and fresh).
            let policy = Policy::builder().http().fallback(cache.clone()).build().unwrap();
            let body = Bytes::from(body);
            let answers = std::sync::Arc::new(std::sync::Mutex::new(vec![503u16, 200]));
            let mut svc = policy.layer(tower::service_fn(move |_: Request<()>| {
                let status = answers.lock().unwrap().pop().unwrap_or(503);
                let body = body.clone();
                async move {
                    let mut res = Response::new(Full::new(body));
                    *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(res)
                }
            }));
            let statuses = runtime().block_on(async {
                let mut statuses = Vec::new();
                for _ in 0..2 {
                    let res: Response<Tracked<Full<Bytes>>> =
                        svc.ready().await.unwrap().call(Request::new(())).await.unwrap();
                    statuses.push(res.status().as_u16());
                    res.into_body().collect().await.unwrap();
                }
                statuses
            });
            let stats = cache.stats();
            prop_assert!(stats.entries <= 1 && stats.bytes <= bytes);
            prop_assert_eq!(statuses[0], 200);
            // The requests are GETs: kept, and served in place of the 503 (at the same
            // instant: fresh), when GET is cached and the bounds leave room for a small
            // response; never when GET is not cached.
            let gets = methods.contains(&Method::GET);
            if gets && entry >= 4096 && bytes >= 4096 {
                prop_assert_eq!((statuses[1], stats.entries), (200, 1), "not served stale");
            }
            if !gets {
                prop_assert_eq!((statuses[1], stats.entries), (503, 0), "served uncached");
            }
            if statuses[1] == 200 {
                prop_assert_eq!(stats.entries, 1);
            }
        }

        #[test]
        fn any_response_deadline_and_grpc_timeout_build_or_name_the_field(
            deadline in any_duration(),
            timeout in any_duration(),
            callers in prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
        ) {
            match Policy::builder().http().response_deadline(deadline).build() {
                Ok(_) => prop_assert!(!deadline.is_zero()),
                Err(err) => {
                    prop_assert!(deadline.is_zero());
                    prop_assert_eq!(err.field(), "response.deadline");
                }
            }
            let built = Policy::builder().grpc().timeout(timeout).response_deadline(deadline).build();
            let policy = match built {
                Ok(policy) => policy,
                Err(err) => {
                    prop_assert!(timeout.is_zero() || deadline.is_zero(), "{}", err);
                    return Ok(());
                }
            };
            // A call: the grpc-timeout sent is well-formed and never more than the caller's.
            let sent = std::sync::Arc::new(std::sync::Mutex::new(None));
            let seen = sent.clone();
            let mut svc = policy.layer(tower::service_fn(move |req: Request<()>| {
                *seen.lock().unwrap() = req.headers().get("grpc-timeout").cloned();
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
            }));
            let mut req = Request::new(());
            let callers = callers.and_then(|b| HeaderValue::from_bytes(&b).ok());
            if let Some(value) = &callers {
                req.headers_mut().insert("grpc-timeout", value.clone());
            }
            runtime().block_on(async {
                let _ = svc.ready().await.unwrap().call(req).await;
            });
            let sent = sent.lock().unwrap().clone();
            // The whole call's time: the response deadline, set here; `Duration::MAX` is none
            // (a stream read for as long as it lasts), whatever the head's timeout.
            let whole = deadline;
            if whole == Duration::MAX {
                // None: nothing to send, the caller's header (if any) goes as it was.
                prop_assert_eq!(sent, callers);
            } else {
                let sent = sent.expect("a grpc-timeout is sent");
                let parsed = parse_grpc_timeout(sent.as_bytes());
                prop_assert!(parsed.is_some(), "well-formed: {:?}", sent);
                match callers.as_ref().and_then(|v| parse_grpc_timeout(v.as_bytes())) {
                    // A caller asking for less keeps its value.
                    Some(c) if c <= whole => prop_assert_eq!(Some(sent), callers),
                    // Otherwise the policy's, rounded up to at most 8 digits.
                    _ => prop_assert_eq!(sent.to_str().unwrap(), format_grpc_timeout(whole)),
                }
            }
        }
    }
}

/// A whole `PolicyConfig` read from any string, as JSON or TOML: an error or a policy that
/// builds and answers, never a panic.
#[cfg(feature = "serde")]
mod config_files {
    use super::*;

    use palisade::policy::{Policy, PolicyConfig};
    use support::{Dependency, Reply, call};
    use tower::Layer;

    /// The fields of each section (and one that does not exist).
    const TOP: &[&str] = &["name", "timeout", "bulkhead", "circuit_breaker", "retry"];
    const TIMEOUT: &[&str] = &["timeout", "deadline"];
    const BULKHEAD: &[&str] = &["name", "max_concurrent", "max_wait", "max_queued", "limit"];
    const BREAKER: &[&str] = &[
        "name",
        "window",
        "minimum_calls",
        "failure_rate",
        "slow_call_duration",
        "slow_call_rate",
        "consecutive_failures",
        "open_duration",
        "backoff",
        "max_pushback",
        "permitted_probes",
        "probe_success_rate",
        "max_half_open_wait",
        "threshold",
    ];

    /// A hostile value, written for `json` or TOML.
    fn value(json: bool) -> BoxedStrategy<String> {
        let words: &'static [&'static str] = if json {
            &[
                "0",
                "-1",
                "1",
                "2",
                "0.5",
                "1.5",
                "-0.0",
                "1e308",
                "1e400",
                "4294967296",
                "18446744073709551615",
                "18446744073709551616",
                "true",
                "null",
                "[]",
                "{}",
                "\"\"",
                "\"0s\"",
                "\"1ns\"",
                "\"250ms\"",
                "\"1s 5ms\"",
                "\"-1s\"",
                "\"2days\"",
                "\"25h\"",
                "\"1y\"",
                "\"18446744073709551615s\"",
                "\"99999999999999999999h\"",
                "\"NaN\"",
                "{\"count\": 0}",
                "{\"count\": 10}",
                "{\"count\": 4294967296}",
                "{\"time\": \"10ms\"}",
                "{\"time\": \"1s\"}",
                "{\"time\": \"1000d\"}",
                "{\"count\": 1, \"time\": \"1s\"}",
                "{\"multiplier\": 1e308, \"max\": \"1s\", \"jitter\": 1}",
                "{\"multiplier\": 2, \"max\": \"1h\", \"jitter\": 0.5}",
                "{\"multiplier\": -1}",
            ]
        } else {
            &[
                "0",
                "-1",
                "1",
                "2",
                "0.5",
                "1.5",
                "-0.0",
                "1e308",
                "nan",
                "inf",
                "-inf",
                "4294967296",
                "9223372036854775807",
                "true",
                "[]",
                "{}",
                "\"\"",
                "\"0s\"",
                "\"1ns\"",
                "\"250ms\"",
                "\"1s 5ms\"",
                "\"-1s\"",
                "\"2days\"",
                "\"25h\"",
                "\"18446744073709551615s\"",
                "\"99999999999999999999h\"",
                "\"NaN\"",
                "{ count = 0 }",
                "{ count = 10 }",
                "{ count = 4294967296 }",
                "{ time = \"10ms\" }",
                "{ time = \"1s\" }",
                "{ time = \"1000d\" }",
                "{ multiplier = 1e308, max = \"1s\", jitter = 1 }",
                "{ multiplier = 2, max = \"1h\", jitter = 0.5 }",
                "{ multiplier = nan }",
            ]
        };
        prop_oneof![
            3 => prop::sample::select(words).prop_map(str::to_owned),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            1 => "[a-z0-9 .]{0,10}".prop_map(|s| format!("\"{s}\"")),
        ]
        .boxed()
    }

    /// A section: some of its fields, each with a hostile value.
    fn section(keys: &'static [&'static str], json: bool) -> BoxedStrategy<Vec<(String, String)>> {
        prop::collection::vec((prop::sample::select(keys), value(json)), 0..6)
            .prop_map(|fields| fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            .boxed()
    }

    /// A document: a name, and each section maybe, in JSON or TOML.
    fn document(json: bool) -> impl Strategy<Value = String> {
        (
            prop::option::of(value(json)),
            prop::option::of(section(TIMEOUT, json)),
            prop::option::of(section(BULKHEAD, json)),
            prop::option::of(section(BREAKER, json)),
            prop::option::of((prop::sample::select(TOP), value(json))),
        )
            .prop_map(move |(name, timeout, bulkhead, breaker, extra)| {
                let sections = [
                    ("timeout", timeout),
                    ("bulkhead", bulkhead),
                    ("circuit_breaker", breaker),
                ];
                if json {
                    let mut top = Vec::new();
                    if let Some(name) = name {
                        top.push(format!("\"name\": {name}"));
                    }
                    for (title, fields) in sections {
                        if let Some(fields) = fields {
                            let inner: Vec<String> = fields
                                .iter()
                                .map(|(k, v)| format!("\"{k}\": {v}"))
                                .collect();
                            top.push(format!("\"{title}\": {{{}}}", inner.join(", ")));
                        }
                    }
                    if let Some((k, v)) = extra {
                        top.push(format!("\"{k}\": {v}"));
                    }
                    format!("{{{}}}", top.join(", "))
                } else {
                    let mut text = String::new();
                    if let Some(name) = name {
                        text.push_str(&format!("name = {name}\n"));
                    }
                    if let Some((k, v)) = extra {
                        text.push_str(&format!("{k} = {v}\n"));
                    }
                    for (title, fields) in sections {
                        if let Some(fields) = fields {
                            text.push_str(&format!("[{title}]\n"));
                            for (k, v) in fields {
                                text.push_str(&format!("{k} = {v}\n"));
                            }
                        }
                    }
                    text
                }
            })
    }

    /// A configuration that was accepted is valid (its own rules included: a non-empty
    /// `name`), builds a policy, and a call through it answers.
    fn accepted(config: PolicyConfig) -> Result<(), TestCaseError> {
        prop_assert!(!config.name.is_empty(), "an empty name was accepted");
        prop_assert!(config.validate().is_ok(), "{:?}", config);
        let policy = Policy::builder().config(config.clone()).build();
        let policy = policy.map_err(|e| TestCaseError::fail(format!("{config:?}: {e}")))?;
        let mut svc = policy.layer(Dependency::new());
        let answer = futures::executor::block_on(call(&mut svc, Reply::Ok));
        prop_assert_eq!(answer.unwrap(), "ok");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn any_json_document_is_an_error_or_a_working_policy(text in document(true)) {
            if let Ok(config) = serde_json::from_str::<PolicyConfig>(&text) {
                accepted(config)?;
            }
        }

        #[test]
        fn any_toml_document_is_an_error_or_a_working_policy(text in document(false)) {
            if let Ok(config) = toml::from_str::<PolicyConfig>(&text) {
                accepted(config)?;
            }
        }

        #[test]
        fn any_string_is_an_error_or_a_working_policy(text in "\\PC{0,80}") {
            if let Ok(config) = serde_json::from_str::<PolicyConfig>(&text) {
                accepted(config)?;
            }
            if let Ok(config) = toml::from_str::<PolicyConfig>(&text) {
                accepted(config)?;
            }
        }
    }

    /// The generator reaches valid configurations too (else the properties above would only
    /// ever see errors).
    #[test]
    fn some_generated_documents_are_accepted() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        for json in [true, false] {
            let mut runner = TestRunner::deterministic();
            let strategy = document(json);
            let accepted = (0..2000)
                .filter(|_| {
                    let text = strategy.new_tree(&mut runner).unwrap().current();
                    if json {
                        serde_json::from_str::<PolicyConfig>(&text).is_ok()
                    } else {
                        toml::from_str::<PolicyConfig>(&text).is_ok()
                    }
                })
                .count();
            assert!(accepted >= 50, "json: {json}, {accepted} of 2000 accepted");
        }
    }
}
