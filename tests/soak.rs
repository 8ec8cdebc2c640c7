//! The soak test: many concurrent callers through one `Policy` (HTTP: timeout, whole-response
//! deadline, queueing bulkhead, breaker, stale-if-error cache) with a real hyper client,
//! against the testkit's flaky server behind its fault proxy, on loopback, for about 30 s
//! (`PALISADE_SOAK_SECS`), while a seeded random schedule (`PALISADE_SOAK_SEED`) alternates
//! healthy spells with error bursts (503 with `Retry-After`), hangs (the proxy blackholes),
//! resets mid-body (the proxy cuts responses), slow bodies (the proxy throttles) and refused
//! connections, resetting the proxy's open connections as each fault starts. Callers drop one
//! body in twenty unread.
//!
//! At the end it checks exact invariants, never timings (the only clock in an assertion is a
//! call's bound, 5 s past its deadline, which only a call that never ends reaches):
//!
//! * every call ended (none outlived its bound), as exactly one of success, failure, rejection,
//!   fallback or abandoned (the caller dropped a body unread): lost 0;
//! * the breaker recorded every call that was not rejected or abandoned exactly once, with the
//!   outcome the caller saw, and the fallback's and the rejections' events match the callers'
//!   counts;
//! * every call that got a permit reached the client exactly once, none twice (palisade never
//!   re-sends), and at most `max_concurrent` were in flight at the client (bodies kept past
//!   their deadline still counted apart, though the client's body is now dropped at the
//!   deadline) and at the server;
//! * at rest, every permit is back, no probe slot is taken, and the breaker closes once the
//!   dependency is healthy; on Linux, open files and memory are back near where they started.
//!
//! The seed and the figures are written to stderr even when the harness captures output (see
//! RELIABILITY.md). Run alone: `cargo test --all-features --test soak -- --nocapture`.
#![cfg(all(feature = "http", feature = "testkit"))]

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::OutcomeKind;
use palisade::classify::http::HttpClassifier;
use palisade::error_kind;
use palisade::events::{Event, Rejection};
use palisade::fallback::{FailureKind, Stale};
use palisade::http::{HttpStaleCache, Tracked};
use palisade::policy::Policy;
use palisade::testkit::{Fault, FaultProxy, FlakyServer, ProxyMode, Reply};
#[cfg(target_os = "linux")]
use support::rss_kib;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

/// The head's timeout.
const TIMEOUT: Duration = Duration::from_millis(300);
/// The whole response's deadline, head and body.
const DEADLINE: Duration = Duration::from_millis(800);
/// How long a call may wait for a permit.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// The bulkhead's limit.
const MAX: usize = 8;
/// Concurrent callers.
const CALLERS: u64 = 24;
/// Distinct paths (and so stale-cache entries).
const PATHS: u64 = 8;
/// A call ends by `MAX_WAIT + DEADLINE`; past this much more it counts as lost.
const LATE: Duration = Duration::from_secs(5);
/// One caller's call in this many drops the body of a fresh response unread.
const ABANDON_ONE_IN: u64 = 20;
/// How long the schedule ends healthy, for the breaker to close.
const HEALTHY_TAIL: Duration = Duration::from_secs(2);
/// The padding of the paths sent while the proxy resets responses part-way (the server echoes
/// the path as the body).
const LONG_PATH: usize = 3_000;
/// The bound on waiting for sockets to close and the breaker to heal at the end.
const SETTLE: Duration = Duration::from_secs(10);

/// SplitMix64: a small seeded sequence for the schedule and the callers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The client boundary: what reaches the hyper client, counted from `call` until the response
// body ends or is dropped.

#[derive(Debug, Default)]
struct Boundary {
    calls: AtomicU64,
    /// When each call in flight at the client was made, by id.
    live: Mutex<HashMap<u64, Instant>>,
    /// The most calls in flight at once that were still within their deadline.
    max_in_flight: AtomicUsize,
    /// The most calls in flight at once, counting bodies kept past their deadline.
    max_with_expired: AtomicUsize,
    /// Every id that reached the client: a bit per id (ids are dense, from one counter), so
    /// that this ledger grows by an eighth of a byte per call and the RSS check below measures
    /// palisade rather than the test.
    ids: Mutex<IdSet>,
    resent: AtomicU64,
}

/// A set of dense ids, one bit each.
#[derive(Debug, Default)]
struct IdSet(Vec<u64>);

impl IdSet {
    /// Adds `id`; `false` if it was already there.
    fn insert(&mut self, id: u64) -> bool {
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

impl Boundary {
    fn in_flight(&self) -> usize {
        self.live.lock().unwrap().len()
    }
}

/// One call in flight at the client.
///
/// A call whose whole-response deadline has passed holds no permit (the policy ended it with
/// `Elapsed`), but its client body lives on until the caller drops the policy's body: the known
/// gap "a body past its deadline outlives its permit" (RELIABILITY.md). Such calls are counted
/// apart, so that the bound checked is the one the bulkhead keeps.
struct Held {
    boundary: Arc<Boundary>,
    id: u64,
}

impl Held {
    fn new(boundary: &Arc<Boundary>, id: u64) -> Self {
        let now = Instant::now();
        // Within its deadline for sure: made less than DEADLINE - 1 ms ago (the policy's clock
        // for the deadline started a moment before this one).
        let fresh_since = now.checked_sub(DEADLINE - Duration::from_millis(1));
        let mut live = boundary.live.lock().unwrap();
        live.insert(id, now);
        let fresh = live
            .values()
            .filter(|&&at| fresh_since.is_none_or(|since| at > since))
            .count();
        boundary.max_in_flight.fetch_max(fresh, Ordering::SeqCst);
        boundary
            .max_with_expired
            .fetch_max(live.len(), Ordering::SeqCst);
        Self {
            boundary: boundary.clone(),
            id,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.boundary.live.lock().unwrap().remove(&self.id);
    }
}

/// The client's body, letting go of its `Held` as it returns its last frame (before the
/// layers above settle and give the permit back) or when dropped.
struct Counted {
    body: Incoming,
    held: Option<Held>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(frame) = &polled
            && (!matches!(frame, Some(Ok(_))) || self.body.is_end_stream())
        {
            self.held = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

type HyperClient = Client<HttpConnector, Empty<Bytes>>;

/// The hyper client, counting what reaches it.
#[derive(Clone)]
struct Counting {
    client: HyperClient,
    boundary: Arc<Boundary>,
}

type ClientFuture =
    Pin<Box<dyn Future<Output = Result<Response<Counted>, BoxError>> + Send + 'static>>;

impl Service<Request<Empty<Bytes>>> for Counting {
    type Response = Response<Counted>;
    type Error = BoxError;
    type Future = ClientFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Empty<Bytes>>) -> ClientFuture {
        let boundary = &self.boundary;
        boundary.calls.fetch_add(1, Ordering::SeqCst);
        let id = req.headers()["x-call-id"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if !boundary.ids.lock().unwrap().insert(id) {
            boundary.resent.fetch_add(1, Ordering::SeqCst);
        }
        let held = Held::new(boundary, id);
        let response = self.client.request(req);
        Box::pin(async move {
            let res = response.await?;
            Ok(res.map(|body| Counted {
                body,
                held: Some(held),
            }))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// What the policy told its listener.

#[derive(Debug, Default)]
struct Told {
    success: AtomicU64,
    failure: AtomicU64,
    ignored: AtomicU64,
    rejected_circuit: AtomicU64,
    rejected_bulkhead: AtomicU64,
    /// Fallbacks served, by `FailureKind as usize`.
    fallbacks: [AtomicU64; 5],
    permits: AtomicU64,
    timeouts: AtomicU64,
}

impl Told {
    fn listener(self: &Arc<Self>) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
        let told = self.clone();
        move |event| {
            let counter = match event {
                Event::CallRecorded { outcome, .. } => match outcome.kind() {
                    OutcomeKind::Success => &told.success,
                    OutcomeKind::Failure => &told.failure,
                    OutcomeKind::Ignored => &told.ignored,
                },
                Event::Rejected {
                    reason: Rejection::Circuit(_),
                    ..
                } => &told.rejected_circuit,
                Event::Rejected {
                    reason: Rejection::BulkheadFull,
                    ..
                } => &told.rejected_bulkhead,
                Event::FallbackServed { kind, .. } => &told.fallbacks[*kind as usize],
                Event::BulkheadAcquired { .. } => &told.permits,
                Event::TimedOut { .. } => &told.timeouts,
                _ => return,
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    fn fallbacks(&self, kinds: &[FailureKind]) -> u64 {
        kinds
            .iter()
            .map(|&k| Told::get(&self.fallbacks[k as usize]))
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// What the callers saw.

/// How one call ended, as its caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A fresh answer that is not a failure, its body read to the end.
    Success,
    /// An error (not a rejection), a failure status, or a body that broke.
    Failure,
    /// Rejected by the breaker or the bulkhead, and not recovered.
    Rejected,
    /// A stale response from the cache.
    Fallback,
    /// A fresh answer that is not a failure, whose body the caller dropped unread.
    Abandoned,
}

#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    success: AtomicU64,
    failure: AtomicU64,
    rejected: AtomicU64,
    fallback: AtomicU64,
    abandoned: AtomicU64,
    lost: AtomicU64,
    slowest_ms: AtomicU64,
}

impl Tally {
    fn add(&self, seen: Seen) {
        let counter = match seen {
            Seen::Success => &self.success,
            Seen::Failure => &self.failure,
            Seen::Rejected => &self.rejected,
            Seen::Fallback => &self.fallback,
            Seen::Abandoned => &self.abandoned,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

type Res = Response<Tracked<Counted>>;

async fn drain(body: Tracked<Counted>) -> Result<(), BoxError> {
    let mut body = body;
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// One GET through the policy, read (or abandoned) as the caller chose.
async fn one_call<S>(svc: &mut S, url: &str, id: u64, abandon: bool) -> Seen
where
    S: Service<Request<Empty<Bytes>>, Response = Res, Error = BoxError>,
{
    let request = Request::get(url)
        .header("x-call-id", id)
        .body(Empty::new())
        .unwrap();
    let result = match svc.ready().await {
        Ok(svc) => svc.call(request).await,
        Err(err) => Err(err),
    };
    let response = match result {
        Ok(response) => response,
        Err(err) if error_kind(err.as_ref()).is_rejection() => return Seen::Rejected,
        Err(_) => return Seen::Failure,
    };
    if response.extensions().get::<Stale>().is_some() {
        let _ = drain(response.into_body()).await;
        return Seen::Fallback;
    }
    if HttpClassifier::default().is_failure(response.status()) {
        // Recorded at the head; the body is read (or not) for the permit's sake only.
        if !abandon {
            let _ = drain(response.into_body()).await;
        }
        return Seen::Failure;
    }
    if abandon && !response.body().is_end_stream() {
        return Seen::Abandoned;
    }
    match drain(response.into_body()).await {
        Ok(()) => Seen::Success,
        Err(_) => Seen::Failure,
    }
}

// ---------------------------------------------------------------------------------------------
// The fault schedule.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Healthy,
    ErrorBurst,
    Hang,
    Reset,
    SlowBody,
    Refuse,
}

const KINDS: [Kind; 6] = [
    Kind::Healthy,
    Kind::ErrorBurst,
    Kind::Hang,
    Kind::Reset,
    Kind::SlowBody,
    Kind::Refuse,
];

/// Switches the server and the proxy to `kind`. Switching to a fault also resets the proxy's
/// open connections, cutting the calls on them and making pooled connections meet the new
/// mode; switching back to healthy lets the faulty connections linger in the pool, to fail the
/// calls that still use them.
///
/// The server itself never holds a request longer than one poll, or 1 ms for the slow body,
/// whose connection is throttled: so it never works on a request its client has already given
/// up, and what it counts in flight is what the client has in flight.
fn inject(kind: Kind, server: &FlakyServer, proxy: &FaultProxy, seed: u64) {
    let (fault, mode) = match kind {
        Kind::Healthy => (Fault::healthy(), ProxyMode::PassThrough),
        Kind::ErrorBurst => (
            Fault::retry_after(503, "1")
                .sometimes(0.2, Reply::Healthy)
                .seed(seed),
            ProxyMode::PassThrough,
        ),
        Kind::Hang => (Fault::healthy(), ProxyMode::Blackhole),
        // The response (callers send long paths now, and the server echoes them) is cut after
        // its head and part of its body.
        Kind::Reset => (
            Fault::healthy(),
            ProxyMode::ResetAfter {
                bytes: LONG_PATH as u64 / 2,
            },
        ),
        // Written by the server at once, trickled by the proxy past the deadline.
        Kind::SlowBody => (
            Fault::slow_body(4_000, 1_000_000_000),
            ProxyMode::Throttle {
                bytes_per_sec: 2_000,
            },
        ),
        Kind::Refuse => (Fault::healthy(), ProxyMode::Refuse),
    };
    server.set(fault);
    proxy.set(mode);
    if kind != Kind::Healthy {
        proxy.reset_open_connections();
    }
}

// ---------------------------------------------------------------------------------------------
// Open files and memory (Linux).

#[cfg(target_os = "linux")]
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Writes to stderr even under the test harness's capture (which takes only `print!`s).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_conserves_every_call_and_returns_every_permit() {
    let secs = env_u64("PALISADE_SOAK_SECS").unwrap_or(30).max(1);
    let seed = env_u64("PALISADE_SOAK_SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    report(&format!(
        "soak: seed {seed} ({secs} s; PALISADE_SOAK_SEED={seed} repeats the schedule)"
    ));

    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let boundary = Arc::new(Boundary::default());
    let client = Counting {
        client: Client::builder(TokioExecutor::new()).build_http(),
        boundary: boundary.clone(),
    };
    let told = Arc::new(Told::default());
    let cache = HttpStaleCache::builder()
        .max_stale(Duration::from_secs(3))
        .max_entries(PATHS as usize)
        .build()
        .unwrap();
    let mut breaker = CircuitBreakerConfig::default();
    breaker.window = SlidingWindow::Count(20);
    breaker.minimum_calls = 10;
    breaker.failure_rate = 0.5;
    breaker.open_duration = Duration::from_millis(300);
    breaker.permitted_probes = 2;
    breaker.max_half_open_wait = Duration::from_secs(2);
    breaker.max_pushback = Duration::from_secs(1);
    let mut bulkhead = BulkheadConfig::default();
    bulkhead.max_concurrent = MAX;
    bulkhead.max_wait = Some(MAX_WAIT);
    bulkhead.max_queued = Some(MAX);
    let policy = Policy::builder()
        .name("soak")
        .http()
        .timeout(TIMEOUT)
        .response_deadline(DEADLINE)
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .fallback(cache.clone())
        .listener(told.listener())
        .build()
        .unwrap();
    let (permits, cb) = (
        policy.bulkhead().unwrap(),
        policy.circuit_breaker().unwrap(),
    );
    let svc = policy.layer(client);
    #[cfg(target_os = "linux")]
    let files_at_start = open_files();
    #[cfg(target_os = "linux")]
    let rss_at_start = rss_kib();

    // The callers.
    let tally = Arc::new(Tally::default());
    let mode = Arc::new(AtomicU8::new(Kind::Healthy as u8));
    let next_id = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let url = proxy.url();
    let callers: Vec<_> = (0..CALLERS)
        .map(|n| {
            let (mut svc, tally, next_id, url, mode) = (
                svc.clone(),
                tally.clone(),
                next_id.clone(),
                url.clone(),
                mode.clone(),
            );
            let mut rng = Rng(seed ^ (n + 1).wrapping_mul(0xA076_1D64_78BD_642F));
            tokio::spawn(async move {
                while Instant::now() < end {
                    let id = next_id.fetch_add(1, Ordering::SeqCst);
                    let mut url = format!("{url}/item/{}", rng.below(PATHS));
                    if mode.load(Ordering::SeqCst) == Kind::Reset as u8 {
                        url.push('/');
                        url.extend(std::iter::repeat_n('x', LONG_PATH));
                    }
                    let abandon = rng.below(ABANDON_ONE_IN) == 0;
                    tally.sent.fetch_add(1, Ordering::SeqCst);
                    let began = Instant::now();
                    let call = one_call(&mut svc, &url, id, abandon);
                    let seen = tokio::time::timeout(MAX_WAIT + DEADLINE + LATE, call).await;
                    let took = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tally.slowest_ms.fetch_max(took, Ordering::SeqCst);
                    match seen {
                        Ok(seen) => tally.add(seen),
                        Err(_) => {
                            tally.lost.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // A rejection answers at once, without ever suspending: a caller retrying
                    // in a tight loop would never yield its worker thread (and starve the
                    // timers of the calls in flight). Back off a moment, as real callers do.
                    if matches!(seen, Ok(Seen::Rejected | Seen::Fallback)) {
                        tokio::time::sleep(Duration::from_millis(1 + rng.below(4))).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    drop(svc);

    // The schedule: rounds of every fault in a random order, each after a healthy spell (so
    // that the breaker closes and the cache fills between faults), then a healthy tail.
    let mut rng = Rng(seed);
    let mut injected: Vec<(Kind, u64, Duration)> =
        KINDS.iter().map(|&k| (k, 0, Duration::ZERO)).collect();
    #[cfg(target_os = "linux")]
    let mut rss_warm = None;
    let faults_until = end.checked_sub(HEALTHY_TAIL).unwrap_or(start);
    let mut round: Vec<Kind> = Vec::new();
    let mut healthy_next = true;
    while Instant::now() < faults_until {
        let kind = if healthy_next {
            Kind::Healthy
        } else {
            if round.is_empty() {
                round = KINDS[1..].to_vec();
            }
            round.remove(rng.below(round.len() as u64) as usize)
        };
        healthy_next = !healthy_next;
        let length = Duration::from_millis(300 + rng.below(1_200));
        inject(kind, &server, &proxy, rng.next());
        mode.store(kind as u8, Ordering::SeqCst);
        let entry = injected.iter_mut().find(|(k, _, _)| *k == kind).unwrap();
        entry.1 += 1;
        entry.2 += length;
        tokio::time::sleep_until((Instant::now() + length).min(faults_until)).await;
        #[cfg(target_os = "linux")]
        if rss_warm.is_none() && start.elapsed() >= Duration::from_secs(secs) / 3 {
            rss_warm = Some(rss_kib());
        }
    }
    inject(Kind::Healthy, &server, &proxy, rng.next());
    mode.store(Kind::Healthy as u8, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }

    // The breaker heals: it is closed, or closes at the next calls now that all is healthy.
    let mut svc = policy.layer(Counting {
        client: Client::builder(TokioExecutor::new()).build_http(),
        boundary: boundary.clone(),
    });
    let healing = tokio::time::timeout(SETTLE, async {
        let mut extra = 0;
        while cb.state() != State::Closed {
            let id = next_id.fetch_add(1, Ordering::SeqCst);
            tally.sent.fetch_add(1, Ordering::SeqCst);
            let seen = one_call(&mut svc, &format!("{url}/healing"), id, false).await;
            tally.add(seen);
            extra += 1;
            if seen != Seen::Success {
                // Open: wait exactly what the breaker says is left; half-open with its probe
                // slots taken: let the probes finish.
                let left = cb
                    .snapshot()
                    .retry_after
                    .unwrap_or(Duration::from_millis(10));
                tokio::time::sleep(left.max(Duration::from_millis(1))).await;
            }
        }
        extra
    })
    .await;
    drop(svc);
    let healing_calls = healing.expect("the breaker closes once the dependency is healthy");

    // Sockets close once the clients are gone.
    let server_stats = server
        .wait_for(SETTLE, |s| s.in_flight == 0 && s.connections_open == 0)
        .await
        .expect("the server's connections all closed");
    proxy
        .wait_for(SETTLE, |s| s.connections_open == 0)
        .await
        .expect("the proxy's connections all closed");

    let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
    let sent = get(&tally.sent);
    let (success, failure, rejected, fallback, abandoned, lost) = (
        get(&tally.success),
        get(&tally.failure),
        get(&tally.rejected),
        get(&tally.fallback),
        get(&tally.abandoned),
        get(&tally.lost),
    );
    let faults = injected
        .iter()
        .map(|(k, n, d)| format!("{k:?} {n} ({} ms)", d.as_millis()))
        .collect::<Vec<_>>()
        .join(", ");
    report(&format!(
        "soak: calls {sent}: successes {success}, failures {failure}, rejections {rejected}, \
         fallbacks {fallback}, abandoned {abandoned}, lost {lost}; slowest {} ms; \
         {healing_calls} calls to heal",
        get(&tally.slowest_ms)
    ));
    report(&format!(
        "soak: faults injected: {faults}; server requests {}, connections {}; proxy connections {}",
        server_stats.requests,
        server_stats.connections_accepted,
        proxy.stats().connections_accepted
    ));
    report(&format!(
        "soak: breaker recorded {} successes, {} failures, {} ignored, rejected {}; bulkhead \
         rejected {}, {} permits; {} timeouts; {} fallbacks (circuit_open {}, bulkhead_full {}, \
         timed_out {}, inner_error {}, failure_response {}); client calls {}, resent {}, max in \
         flight {} (server {}; {} counting bodies past their deadline); cache {:?}",
        Told::get(&told.success),
        Told::get(&told.failure),
        Told::get(&told.ignored),
        Told::get(&told.rejected_circuit),
        Told::get(&told.rejected_bulkhead),
        Told::get(&told.permits),
        Told::get(&told.timeouts),
        told.fallbacks(&[
            FailureKind::CircuitOpen,
            FailureKind::BulkheadFull,
            FailureKind::TimedOut,
            FailureKind::InnerError,
            FailureKind::FailureResponse
        ]),
        Told::get(&told.fallbacks[FailureKind::CircuitOpen as usize]),
        Told::get(&told.fallbacks[FailureKind::BulkheadFull as usize]),
        Told::get(&told.fallbacks[FailureKind::TimedOut as usize]),
        Told::get(&told.fallbacks[FailureKind::InnerError as usize]),
        Told::get(&told.fallbacks[FailureKind::FailureResponse as usize]),
        get(&boundary.calls),
        get(&boundary.resent),
        boundary.max_in_flight.load(Ordering::SeqCst),
        server_stats.max_in_flight,
        boundary.max_with_expired.load(Ordering::SeqCst),
        cache.stats(),
    ));

    // Nothing lost: every call ended, as exactly one thing.
    assert_eq!(lost, 0, "calls that never ended");
    assert_eq!(sent, success + failure + rejected + fallback + abandoned);
    // Exactly once: the breaker recorded every call it admitted, except the abandoned ones
    // (ignored), with the caller's verdict; the rejections and fallbacks are the callers'.
    let (recorded_success, recorded_failure, recorded_ignored) = (
        Told::get(&told.success),
        Told::get(&told.failure),
        Told::get(&told.ignored),
    );
    let (rejected_circuit, rejected_bulkhead) = (
        Told::get(&told.rejected_circuit),
        Told::get(&told.rejected_bulkhead),
    );
    assert_eq!(
        recorded_success + recorded_failure + recorded_ignored + rejected_circuit,
        sent - abandoned,
        "each call recorded once, or rejected by the breaker"
    );
    assert_eq!(recorded_success, success, "successes");
    assert_eq!(
        recorded_failure,
        failure
            + told.fallbacks(&[
                FailureKind::TimedOut,
                FailureKind::InnerError,
                FailureKind::FailureResponse
            ]),
        "failures: seen, or recovered"
    );
    assert_eq!(
        recorded_ignored, rejected_bulkhead,
        "the breaker ignores a full bulkhead, and nothing else here"
    );
    assert_eq!(
        rejected_circuit + rejected_bulkhead,
        rejected + told.fallbacks(&[FailureKind::CircuitOpen, FailureKind::BulkheadFull]),
        "rejections: seen, or recovered"
    );
    assert_eq!(
        fallback,
        told.fallbacks(&[
            FailureKind::CircuitOpen,
            FailureKind::BulkheadFull,
            FailureKind::TimedOut,
            FailureKind::InnerError,
            FailureKind::FailureResponse
        ]),
        "fallbacks, each counted once"
    );
    // Never re-sent: every permit taken led to one client call, each with its own request.
    assert_eq!(
        get(&boundary.resent),
        0,
        "a request went to the client twice"
    );
    assert_eq!(get(&boundary.calls), Told::get(&told.permits));
    assert_eq!(
        get(&boundary.calls),
        sent - rejected_circuit - rejected_bulkhead,
        "every call not rejected reached the client once"
    );
    assert!(server_stats.requests <= get(&boundary.calls));
    // Admission bounds, at the client and at the server.
    assert!(boundary.max_in_flight.load(Ordering::SeqCst) <= MAX);
    assert!(
        server_stats.max_in_flight <= MAX,
        "the server saw {} in flight",
        server_stats.max_in_flight
    );
    // At rest.
    assert_eq!(boundary.in_flight(), 0);
    assert_eq!(permits.available(), MAX);
    assert_eq!(permits.queued(), 0);
    assert_eq!(cb.snapshot().probes_in_flight, 0);
    assert!(cache.stats().entries <= PATHS as usize);

    #[cfg(target_os = "linux")]
    {
        let files_at_end = open_files();
        let rss_at_end = rss_kib();
        let rss_warm = rss_warm.unwrap_or(rss_at_start);
        report(&format!(
            "soak: open files {files_at_start} -> {files_at_end}; RSS {rss_at_start} KiB, {rss_warm} KiB a third in, {rss_at_end} KiB at the end"
        ));
        assert!(
            files_at_end <= files_at_start + 2,
            "open files {files_at_start} -> {files_at_end}"
        );
        // The test's own ledger of ids grows by a bit per call; anything beyond it and a few
        // MiB of allocator slack is memory kept per call.
        let ledger_kib = get(&boundary.calls) / 8 / 1024;
        assert!(
            rss_at_end <= rss_warm + 4 * 1024 + ledger_kib,
            "RSS grew from {rss_warm} KiB (a third in) to {rss_at_end} KiB over {} calls",
            get(&boundary.calls)
        );
    }
}
