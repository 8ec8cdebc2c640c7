//! Fallback and the stale-if-error cache.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
use palisade::classify::Outcome;
use palisade::error::{BulkheadFull, CircuitOpen, Elapsed};
use palisade::events::{Event, Listeners};
use palisade::fallback::{
    self, Failure, FailureKind, FallbackLayer, Kinds, Recover, Stale, StaleCache,
};
use tokio::time::advance;
use tower::{BoxError, Layer, Service, ServiceBuilder, service_fn};

/// What the inner service does, by request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Do {
    Succeed,
    FailureResponse,
    InnerError,
    TimedOut,
    BulkheadFull,
    CircuitOpen,
}

const ALL: [(Do, Option<FailureKind>); 6] = [
    (Do::Succeed, None),
    (Do::FailureResponse, Some(FailureKind::FailureResponse)),
    (Do::InnerError, Some(FailureKind::InnerError)),
    (Do::TimedOut, Some(FailureKind::TimedOut)),
    (Do::BulkheadFull, Some(FailureKind::BulkheadFull)),
    (Do::CircuitOpen, Some(FailureKind::CircuitOpen)),
];

/// Responses are status codes; 500 and above is a failure response.
fn inner() -> impl Service<Do, Response = u16, Error = BoxError, Future: Send> + Clone {
    service_fn(|what: Do| async move {
        match what {
            Do::Succeed => Ok(200),
            Do::FailureResponse => Ok(503),
            Do::InnerError => Err::<u16, BoxError>("connection reset".into()),
            Do::TimedOut => Err(Box::new(Elapsed::new(Duration::from_secs(1))) as BoxError),
            Do::BulkheadFull => Err(Box::new(BulkheadFull::new(4)) as BoxError),
            Do::CircuitOpen => Err(Box::new(CircuitOpen::new(None)) as BoxError),
        }
    })
}

fn status_classifier(res: Result<&u16, &BoxError>) -> Outcome {
    match res {
        Ok(s) if *s >= 500 => Outcome::failure(),
        Ok(_) => Outcome::success(),
        Err(_) => Outcome::failure(),
    }
}

type Classifier = fn(Result<&u16, &BoxError>) -> Outcome;

#[tokio::test]
async fn each_selected_kind_selects_only_itself_and_success_is_never_replaced() {
    let kinds = [
        FailureKind::CircuitOpen,
        FailureKind::BulkheadFull,
        FailureKind::TimedOut,
        FailureKind::InnerError,
        FailureKind::FailureResponse,
    ];
    for selected in kinds {
        let recovered = Arc::new(AtomicUsize::new(0));
        let r = recovered.clone();
        let layer = FallbackLayer::new(fallback::from_fn(move |failure: Failure<u16>| {
            r.fetch_add(1, Ordering::SeqCst);
            assert_eq!(
                failure.kind(),
                selected,
                "only the selected kind reaches recovery"
            );
            Ok(299)
        }))
        .with_classifier(status_classifier as Classifier)
        .kinds(Kinds::only(selected));
        let mut svc = layer.layer(inner());
        for (what, kind) in ALL {
            let result = support::call(&mut svc, what).await;
            match kind {
                None => assert_eq!(result.unwrap(), 200, "a success is never replaced"),
                Some(k) if k == selected => assert_eq!(result.unwrap(), 299, "{what:?}"),
                Some(FailureKind::FailureResponse) => assert_eq!(result.unwrap(), 503),
                Some(_) => assert!(result.is_err(), "{what:?} passes through unrecovered"),
            }
        }
        assert_eq!(recovered.load(Ordering::SeqCst), 1, "{selected:?}");
    }
}

/// "Lookup failed", caused by an I/O error: an error with a source.
#[derive(Debug)]
struct LookupFailed(std::io::Error);

impl std::fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lookup failed")
    }
}

impl std::error::Error for LookupFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn listeners_see_the_error_a_fallback_recovered_from() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let told = seen.clone();
    let listeners = Listeners::new("prices").with(move |event: &Event<'_>| {
        if let Event::FallbackServed { kind, error, .. } = event {
            told.lock().unwrap().push((*kind, error.map(str::to_owned)));
        }
    });
    let layer = FallbackLayer::new(fallback::value(299u16))
        .with_classifier(status_classifier as Classifier)
        .listeners(listeners);
    let mut svc = layer.layer(inner());
    for (what, _) in ALL {
        assert_eq!(
            support::call(&mut svc, what).await.unwrap(),
            if what == Do::Succeed { 200 } else { 299 }
        );
    }
    let mut chained = layer.layer(service_fn(|_: Do| async {
        Err::<u16, BoxError>(Box::new(LookupFailed(std::io::Error::other(
            "connection reset",
        ))))
    }));
    assert_eq!(
        support::call(&mut chained, Do::InnerError).await.unwrap(),
        299
    );
    let message = |e: &dyn std::error::Error| Some(e.to_string());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (FailureKind::FailureResponse, None),
            (FailureKind::InnerError, Some("connection reset".to_owned())),
            (
                FailureKind::TimedOut,
                message(&Elapsed::new(Duration::from_secs(1)))
            ),
            (FailureKind::BulkheadFull, message(&BulkheadFull::new(4))),
            (FailureKind::CircuitOpen, message(&CircuitOpen::new(None))),
            (
                FailureKind::InnerError,
                Some("lookup failed: connection reset".to_owned())
            ),
        ]
    );
}

/// An error with a fixed message and, maybe, a source (itself, for a chain that loops).
#[derive(Debug)]
struct Said {
    text: &'static str,
    source: Option<std::io::Error>,
    loops: bool,
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        assert!(!self.text.is_empty(), "a Display that panics");
        f.write_str(self.text)
    }
}

impl std::error::Error for Said {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if self.loops {
            return Some(self);
        }
        self.source.as_ref().map(|e| e as _)
    }
}

/// An error whose source is itself is classified (as the dependency's own), not followed
/// for ever. Run on a thread, so that a loop fails the test instead of hanging it.
#[test]
fn an_error_chain_that_loops_is_classified_and_ends() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let looping = Said {
            text: "loops",
            source: None,
            loops: true,
        };
        let inner = matches!(
            palisade::error_kind(&looping),
            palisade::ErrorKind::Inner(_)
        );
        let _ = done.send(inner);
    });
    assert_eq!(
        finished.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "error_kind did not end on a looping chain"
    );
}

#[tokio::test]
async fn the_recovered_errors_message_is_said_once_and_never_breaks_the_call() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let told = seen.clone();
    let listeners = Listeners::new("prices").with(move |event: &Event<'_>| {
        if let Event::FallbackServed { error, .. } = event {
            told.lock().unwrap().push(error.map(str::to_owned));
        }
    });
    let layer = FallbackLayer::new(fallback::value(299u16)).listeners(listeners);
    let cases = [
        // Its message already ends with its source's: not said twice.
        Said {
            text: "lookup failed: connection reset",
            source: Some(std::io::Error::other("connection reset")),
            loops: false,
        },
        // Its message ends with its source's letters, not as a part: said.
        Said {
            text: "lookup failed",
            source: Some(std::io::Error::other("failed")),
            loops: false,
        },
        // Its own source: the chain ends.
        Said {
            text: "loops",
            source: None,
            loops: true,
        },
        // Its `Display` panics: no message, and the fallback still answers.
        Said {
            text: "",
            source: None,
            loops: false,
        },
    ];
    for said in cases {
        let mut error = Some(Box::new(said) as BoxError);
        let mut svc = layer.layer(service_fn(move |_: ()| {
            let error = error.take().expect("called once");
            async move { Err::<u16, BoxError>(error) }
        }));
        assert_eq!(support::call(&mut svc, ()).await.unwrap(), 299);
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Some("lookup failed: connection reset".to_owned()),
            Some("lookup failed: failed".to_owned()),
            Some("loops".to_owned()),
            None,
        ]
    );
}

#[tokio::test]
async fn a_declined_recovery_gives_the_original_failure_back() {
    let layer = FallbackLayer::new(fallback::from_fn(|failure: Failure<u16>| Err(failure)))
        .with_classifier(status_classifier as Classifier);
    let mut svc = layer.layer(inner());
    assert_eq!(
        support::call(&mut svc, Do::FailureResponse).await.unwrap(),
        503
    );
    let err = support::call(&mut svc, Do::TimedOut).await.unwrap_err();
    assert!(matches!(
        palisade::error_kind(err.as_ref()),
        palisade::ErrorKind::TimedOut(_)
    ));
}

#[tokio::test]
async fn with_request_recovers_from_what_was_kept_of_the_request() {
    let mut svc = FallbackLayer::new(fallback::with_request(
        |id: &u32| *id,
        |id: u32, _: Failure<String>| Ok(format!("item {id}: unavailable")),
    ))
    .layer(service_fn(|_: u32| async {
        Err::<String, _>(std::io::Error::other("down"))
    }));
    assert_eq!(
        support::call(&mut svc, 9).await.unwrap(),
        "item 9: unavailable"
    );
}

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(4))
        .minimum_calls(2)
        .open_duration(Duration::from_secs(5))
        .permitted_probes(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_breaker_inside_still_counts_what_the_fallback_recovers() {
    let breaker = breaker();
    let handle = breaker.handle();
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::new(fallback::value(0u16)))
        .layer(breaker)
        .service(inner());
    assert_eq!(support::call(&mut svc, Do::InnerError).await.unwrap(), 0);
    assert_eq!(handle.snapshot().failures, 1);
    assert_eq!(support::call(&mut svc, Do::InnerError).await.unwrap(), 0);
    assert_eq!(handle.state(), State::Open);
    // Open: the caller still gets the fallback, and the rejection is counted.
    assert_eq!(support::call(&mut svc, Do::Succeed).await.unwrap(), 0);
    assert_eq!(handle.snapshot().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fallback_leaks_no_probe_slot_and_leaves_the_stack_usable() {
    /// One call, which must end in the typed error for the fallback's panic, not unwind.
    async fn fallback_panics<S>(svc: &S)
    where
        S: Service<Do, Response = u16, Error = BoxError> + Clone,
    {
        let mut s = svc.clone();
        let caught =
            support::caught_callback_panic(
                async move { support::call(&mut s, Do::InnerError).await },
            );
        assert_eq!(
            caught.await,
            ("Recover::recover", "fallback bug".to_owned())
        );
    }
    let breaker = breaker();
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::new(fallback::from_fn(
            |_: Failure<u16>| -> Result<u16, Failure<u16>> { panic!("fallback bug") },
        )))
        .layer(breaker)
        .service(inner());
    for _ in 0..2 {
        fallback_panics(&svc).await;
    }
    assert_eq!(handle.state(), State::Open);
    advance(Duration::from_secs(5)).await;
    // The probe fails and the fallback panics: the probe slot still comes back.
    fallback_panics(&svc).await;
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(handle.state(), State::Open, "the failed probe was counted");
    advance(Duration::from_secs(5)).await;
    let mut s = svc.clone();
    assert_eq!(support::call(&mut s, Do::Succeed).await.unwrap(), 200);
    assert_eq!(handle.state(), State::Closed);
}

/// Requests are (tenant, path, what to do); the cache keys on (tenant, path).
type Req = (u32, &'static str, Do);

fn cache(max_stale: Duration) -> StaleCache<Req, (u16, Option<Stale>), (u32, &'static str)> {
    StaleCache::builder(|req: &Req| Some((req.0, req.1)))
        .max_stale(max_stale)
        .mark(|res: &mut (u16, Option<Stale>), stale| res.1 = Some(stale))
        .build()
        .unwrap()
}

fn cached_inner()
-> impl Service<Req, Response = (u16, Option<Stale>), Error = BoxError, Future: Send> + Clone {
    service_fn(|(_, _, what): Req| async move {
        match what {
            Do::Succeed => Ok((200, None)),
            Do::FailureResponse => Ok((503, None)),
            _ => Err::<_, BoxError>("down".into()),
        }
    })
}

fn pair_classifier(res: Result<&(u16, Option<Stale>), &BoxError>) -> Outcome {
    match res {
        Ok((s, _)) if *s >= 500 => Outcome::failure(),
        Ok(_) => Outcome::success(),
        Err(_) => Outcome::failure(),
    }
}

type PairClassifier = fn(Result<&(u16, Option<Stale>), &BoxError>) -> Outcome;

#[tokio::test(start_paused = true)]
async fn the_stale_cache_serves_only_the_same_key_and_only_while_fresh_enough() {
    let layer = FallbackLayer::new(cache(Duration::from_secs(60)))
        .with_classifier(pair_classifier as PairClassifier);
    let mut svc = layer.layer(cached_inner());
    assert_eq!(
        support::call(&mut svc, (1, "/a", Do::Succeed))
            .await
            .unwrap(),
        (200, None)
    );
    advance(Duration::from_secs(10)).await;
    let (status, stale) = support::call(&mut svc, (1, "/a", Do::InnerError))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        stale,
        Some(Stale {
            age: Duration::from_secs(10)
        })
    );
    // Another tenant, same path: never served tenant 1's response.
    assert!(
        support::call(&mut svc, (2, "/a", Do::InnerError))
            .await
            .is_err()
    );
    // A failure response is never stored, and is itself recovered from the cache.
    let (status, stale) = support::call(&mut svc, (1, "/a", Do::FailureResponse))
        .await
        .unwrap();
    assert_eq!((status, stale.is_some()), (200, true));
    assert_eq!(layer.recover().stats().stored, 1);
    // Older than max_stale: not served.
    advance(Duration::from_secs(50)).await;
    assert!(
        support::call(&mut svc, (1, "/a", Do::InnerError))
            .await
            .is_ok(),
        "60 s is fine"
    );
    advance(Duration::from_millis(1)).await;
    assert!(
        support::call(&mut svc, (1, "/a", Do::InnerError))
            .await
            .is_err()
    );
    assert_eq!(layer.recover().stats().served, 3);
}

#[tokio::test]
async fn the_stale_cache_keeps_only_responses_classified_as_successes() {
    // A 404 says nothing about the dependency: the classifier ignores it.
    let classifier = |res: Result<&(u16, Option<Stale>), &BoxError>| match res {
        Ok((404, _)) => Outcome::ignored(),
        other => pair_classifier(other),
    };
    let layer = FallbackLayer::new(cache(Duration::from_secs(60))).with_classifier(classifier);
    let mut svc = layer.layer(service_fn(|(_, path, what): Req| async move {
        match (path, what) {
            ("/missing", Do::Succeed) => Ok((404, None)),
            (_, Do::Succeed) => Ok((200, None)),
            _ => Err::<_, BoxError>("down".into()),
        }
    }));
    let answer = support::call(&mut svc, (1, "/missing", Do::Succeed)).await;
    assert_eq!(
        answer.unwrap(),
        (404, None),
        "an ignored response is passed on"
    );
    let stats = layer.recover().stats();
    assert_eq!((stats.entries, stats.stored), (0, 0), "but never kept");
    assert!(
        support::call(&mut svc, (1, "/missing", Do::InnerError))
            .await
            .is_err()
    );
    // A success is kept.
    support::call(&mut svc, (1, "/a", Do::Succeed))
        .await
        .unwrap();
    assert_eq!(layer.recover().stats().entries, 1);
}

/// A response over the per-entry cap is refused before it is copied: a large success costs
/// no copy of its size (nor, at a large size, the memory for one).
#[test]
fn a_response_too_large_to_keep_is_never_copied() {
    #[derive(Debug)]
    struct Counted(Arc<AtomicUsize>);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::SeqCst);
            Self(self.0.clone())
        }
    }
    let copies = Arc::new(AtomicUsize::new(0));
    let cache = StaleCache::builder(|k: &u32| Some(*k))
        .max_entry_bytes(1_024)
        .size(|_: &Counted| 300 * 1_024 * 1_024)
        .build()
        .unwrap();
    cache.succeeded(cache.keep(&1), &mut Counted(copies.clone()));
    assert_eq!(copies.load(Ordering::SeqCst), 0);
    let stats = cache.stats();
    assert_eq!((stats.too_large, stats.entries), (1, 0), "{stats:?}");
}

#[test]
fn the_stale_cache_stays_within_its_bounds_under_a_million_keys() {
    let cache: StaleCache<u64, Vec<u8>, u64> = StaleCache::builder(|k: &u64| Some(*k))
        .max_entries(1_000)
        .max_bytes(64 * 1_024)
        .max_entry_bytes(512)
        .size(|v: &Vec<u8>| v.len())
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    for k in 0..1_000_000u64 {
        let mut body = vec![0u8; (k % 700) as usize];
        let kept = cache.keep(&k);
        cache.succeeded(kept, &mut body);
        if k % 50_000 == 0 {
            let s = cache.stats();
            assert!(s.entries <= 1_000 && s.bytes <= 64 * 1_024, "{s:?}");
        }
    }
    let s = cache.stats();
    assert!(s.entries <= 1_000 && s.bytes <= 64 * 1_024, "{s:?}");
    assert!(
        s.too_large > 0,
        "bodies over 512 bytes pass through uncached"
    );
    // The most recent entry (399 bytes) is there; the oldest are gone.
    let failure = || Failure::Error("down".into());
    assert!(cache.recover(Some(999_999), failure()).is_ok());
    assert!(cache.recover(Some(0), failure()).is_err());
}

#[test]
fn bad_cache_bounds_are_config_errors() {
    let b = || StaleCache::<u8, u8, u8>::builder(|k: &u8| Some(*k));
    assert_eq!(
        b().max_stale(Duration::ZERO).build().unwrap_err().field(),
        "max_stale"
    );
    assert_eq!(
        b().max_entries(0).build().unwrap_err().field(),
        "max_entries"
    );
    assert_eq!(
        b().max_entry_bytes(0).build().unwrap_err().field(),
        "max_entry_bytes"
    );
    assert_eq!(
        b().max_bytes(10)
            .max_entry_bytes(11)
            .build()
            .unwrap_err()
            .field(),
        "max_bytes"
    );
    assert!(
        b().max_stale(Duration::MAX)
            .max_bytes(usize::MAX)
            .build()
            .is_ok()
    );
}

/// The dependency's own error that the classifier calls a success (a "not found") is an
/// answer, passed on: not replaced by a stale copy of what was there before.
#[tokio::test(start_paused = true)]
async fn an_error_the_classifier_calls_a_success_is_not_recovered() {
    let deleted = Arc::new(AtomicUsize::new(0));
    let gone = deleted.clone();
    let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
    let svc = FallbackLayer::new(cache)
        .with_classifier(|res: Result<&String, &BoxError>| match res {
            Ok(_) => Outcome::success(),
            Err(e) if e.is::<NotFound>() => Outcome::success(), // an answer, not a fault
            Err(_) => Outcome::failure(),
        })
        .layer(service_fn(move |id: u32| {
            let gone = gone.load(Ordering::SeqCst) == 1;
            async move {
                if gone {
                    Err::<String, BoxError>(Box::new(NotFound))
                } else {
                    Ok(format!("item {id}"))
                }
            }
        }));
    use tower::ServiceExt;
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), "item 7");
    deleted.store(1, Ordering::SeqCst);
    let err = svc.clone().oneshot(7).await.unwrap_err();
    assert!(err.is::<NotFound>(), "{err}");
}

/// A kept response whose `Drop` panics when it is replaced: the panic reaches the caller of
/// that store, and the cache's accounting stays whole (the response is dropped after the
/// cache's lock is released, not half-way through an update).
#[test]
fn a_response_panicking_as_it_is_dropped_leaves_the_cache_whole() {
    use std::sync::atomic::AtomicBool;

    #[derive(Clone)]
    struct Bomb(Arc<AtomicBool>);
    impl Drop for Bomb {
        fn drop(&mut self) {
            if self.0.swap(false, Ordering::SeqCst) {
                panic!("drop bug");
            }
        }
    }

    let armed = Arc::new(AtomicBool::new(false));
    let cache = StaleCache::builder(|id: &u32| Some(*id))
        .size(|_: &Bomb| 10)
        .build()
        .unwrap();
    cache.succeeded(cache.keep(&1), &mut Bomb(armed.clone()));
    assert_eq!((cache.stats().entries, cache.stats().bytes), (1, 10));
    armed.store(true, Ordering::SeqCst);
    let replaced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.succeeded(cache.keep(&1), &mut Bomb(armed.clone()));
    }));
    assert!(replaced.is_err(), "the old response's drop panicked");
    assert_eq!((cache.stats().entries, cache.stats().bytes), (1, 10));
    cache.succeeded(cache.keep(&2), &mut Bomb(armed.clone()));
    assert_eq!((cache.stats().entries, cache.stats().bytes), (2, 20));
}

/// A classifier's `end_of_body` that panics is named as such in the call's error, as the
/// breaker names it.
#[tokio::test]
async fn a_panicking_end_of_body_is_named_in_the_error() {
    use palisade::classify::{Classify, Hooks};
    use palisade::error::{ErrorKind, error_kind};

    #[derive(Clone)]
    struct EndPanics;
    impl Classify<u32> for EndPanics {
        fn classify(&self, _: Result<&u32, &BoxError>) -> Outcome {
            Outcome::success()
        }
        fn end_of_body<'a>(&self, _: &'a mut u32, _: &Outcome) -> Option<&'a mut Hooks> {
            panic!("end_of_body");
        }
    }
    let svc = palisade::fallback::FallbackLayer::new(palisade::fallback::value(0u32))
        .with_classifier(EndPanics)
        .layer(service_fn(|_: ()| async { Ok::<u32, BoxError>(1) }));
    let err = tower::ServiceExt::oneshot(svc, ()).await.unwrap_err();
    match error_kind(err.as_ref()) {
        ErrorKind::CallbackPanicked(p) => assert_eq!(p.callback(), "Classify::end_of_body"),
        other => panic!("expected CallbackPanicked, got {other:?}"),
    }
}

/// A `mark` that panics fails the call with the panic, and the cache does not count the
/// response it never served.
#[tokio::test]
async fn a_stale_response_whose_mark_panics_is_not_counted_as_served() {
    use palisade::error::{ErrorKind, error_kind};
    use tower::ServiceExt;

    let cache = StaleCache::builder(|id: &u32| Some(*id))
        .mark(|_: &mut String, _| panic!("mark"))
        .build()
        .unwrap();
    cache.succeeded(cache.keep(&7), &mut "item 7".to_owned());
    let svc = FallbackLayer::new(cache.clone()).layer(service_fn(|_: u32| async {
        Err::<String, BoxError>("down".into())
    }));
    let err = svc.oneshot(7).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::CallbackPanicked(_)),
        "{err}"
    );
    assert_eq!(cache.stats().served, 0);
}

/// Over a breaker with `typed_errors()`, the fallback's classifier judges the error the
/// breaker's judged (the dependency's own, not its `BreakerError` wrapper): a "not found" both
/// call a success is passed on, never recovered with the fallback value.
#[tokio::test]
async fn over_a_typed_breaker_the_fallback_judges_the_dependencys_own_error() {
    let classifier = |res: Result<&&str, &BoxError>| match res {
        Ok(_) => Outcome::success(),
        Err(e) if e.is::<NotFound>() => Outcome::success(), // an answer, not a fault
        Err(_) => Outcome::failure(),
    };
    let breaker = CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .with_classifier(classifier)
        .typed_errors();
    let handle = breaker.handle();
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::new(fallback::value("from the fallback")).with_classifier(classifier))
        .layer(breaker)
        .service(service_fn(|fails: bool| async move {
            let err: BoxError = if fails {
                "refused".into()
            } else {
                Box::new(NotFound)
            };
            Err::<&str, _>(err)
        }));
    let err = support::call(&mut svc, false).await.unwrap_err();
    assert!(err.is::<NotFound>(), "{err}");
    assert_eq!(handle.snapshot().failures, 0);
    // A failure both call one is recovered.
    assert_eq!(
        support::call(&mut svc, true).await.unwrap(),
        "from the fallback"
    );
    assert_eq!(handle.snapshot().failures, 1);
}

/// Bounds and a size function set near `usize::MAX`: two entries' bytes do not overflow the
/// total (a panic under the cache's lock in a debug build, a wrapped bound in release); the
/// byte bound still evicts.
#[tokio::test(start_paused = true)]
async fn a_stale_cache_sized_near_usize_max_neither_panics_nor_overflows() {
    let cache = StaleCache::builder(|id: &u32| Some(*id))
        .max_entry_bytes(usize::MAX)
        .max_bytes(usize::MAX)
        .size(|_: &String| usize::MAX / 2 + 1)
        .build()
        .unwrap();
    for id in [1, 2] {
        cache.succeeded(cache.keep(&id), &mut format!("item {id}"));
    }
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.bytes), (1, usize::MAX / 2 + 1));
    assert!(
        cache
            .recover(cache.keep(&2), Failure::Error("down".into()))
            .is_ok()
    );
}

/// A dependency's answer that its classifier calls a success: "not found".
#[derive(Debug)]
struct NotFound;

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

impl std::error::Error for NotFound {}

/// A response too large to keep drops its key's older entry, and nothing else: the only entry
/// of a one-entry cache, for another key, stays.
#[tokio::test(start_paused = true)]
async fn a_response_too_large_to_keep_drops_only_its_own_keys_entry() {
    let cache = StaleCache::builder(|id: &u32| Some(*id))
        .max_entries(1)
        .max_entry_bytes(10)
        .size(|body: &String| body.len())
        .build()
        .unwrap();
    cache.succeeded(cache.keep(&1), &mut "small".to_owned());
    cache.succeeded(cache.keep(&2), &mut "far too large".to_owned());
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.too_large), (1, 1));
    assert!(
        cache
            .recover(cache.keep(&1), Failure::Error("down".into()))
            .is_ok()
    );
}

/// Two typed breakers stacked under a fallback: their `BreakerError`s are unwrapped in turn,
/// from `call` and from `poll_ready` alike, so the caller gets the dependency's own error.
#[tokio::test]
async fn stacked_typed_breakers_errors_are_unwrapped_from_call_and_poll_ready() {
    use std::task::{Context, Poll};

    /// Fails `poll_ready` with `NotFound` when `refuses`, else fails each call with it.
    #[derive(Clone)]
    struct Dep {
        refuses: bool,
    }
    impl Service<()> for Dep {
        type Response = &'static str;
        type Error = BoxError;
        type Future = std::future::Ready<Result<&'static str, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(if self.refuses {
                Err(Box::new(NotFound))
            } else {
                Ok(())
            })
        }
        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Err(Box::new(NotFound)))
        }
    }
    let typed = || {
        CircuitBreakerLayer::builder()
            .build()
            .unwrap()
            .typed_errors()
    };
    // "Not found" is an answer: passed on, not recovered, if the fallback sees it as it is.
    let classifier = |res: Result<&&str, &BoxError>| match res {
        Err(e) if !e.is::<NotFound>() => Outcome::failure(),
        _ => Outcome::success(),
    };
    for refuses in [false, true] {
        let mut svc = ServiceBuilder::new()
            .layer(
                FallbackLayer::new(fallback::value("from the fallback"))
                    .with_classifier(classifier),
            )
            .layer(typed())
            .layer(typed())
            .service(Dep { refuses });
        let err = if refuses {
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .unwrap_err()
        } else {
            support::call(&mut svc, ()).await.unwrap_err()
        };
        assert!(err.is::<NotFound>(), "refuses: {refuses}: {err}");
    }
}
