//! `cargo bench --bench loopback`: palisade end to end over loopback sockets.
//!
//! A hyper-util legacy client (HTTP/1.1) calls the testkit's `FlakyServer` on `127.0.0.1`,
//! bare and behind `Policy::builder().http()` (timeout, bulkhead, circuit breaker), and the
//! program prints three tables:
//!
//! 1. **Healthy server**: throughput and p50/p99 latency of a fixed number of requests made by
//!    a fixed number of concurrent tasks, bare and with the policy, through the same client, in
//!    interleaved rounds (bare, policy, policy, bare, ...), as medians of the rounds, with the
//!    ratio of the policy's throughput to the bare client's.
//! 2. **Hanging server**: the bare client waits until the bench gives up on it (an outer
//!    deadline, so that it ends); the protected one gives up at its timeout, then its open
//!    breaker rejects at once: the latency of those rejections.
//! 3. **Recovery**: the breaker trips on a failing server, the server heals, a caller keeps
//!    calling at a steady pace; the time from healing to the breaker closing, against the
//!    open duration plus the probe's round trip.
//!
//! The healthy part also reports the CPU time per request of the whole process (client and
//! server, from Linux's `/proc/self/task/*/schedstat`), which other programs on a shared
//! machine disturb less than throughput.
//!
//! * `-- --quick` (or `PALISADE_LOOPBACK_QUICK=1`): a few hundred requests instead, in a
//!   couple of seconds, so that the program is run often and does not rot.
//! * `-- --layers`: instead of the three parts, the healthy server through each part of the
//!   policy on its own (body tracking, timeout, bulkhead, breaker) and the whole policy;
//!   `--only NAME` runs one of them, to compare instruction counts under callgrind, one
//!   process per part.
//! * `-- --healthy`: part 1 alone (ignored with `--layers`).
//! * `-- --workers N`: a runtime with `N` worker threads instead of 2 (with 1, client, server
//!   and protections share one thread: no cache line moves between cores).
//!
//! Other arguments (cargo passes `--bench`) are ignored.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::http::HttpClassifier;
use palisade::error::ConfigError;
use palisade::http::{TrackLayer, UntilBodyEnd};
use palisade::policy::{NoFallback, Policy, PolicyLayer};
use palisade::testkit::{Fault, FlakyServer};
use palisade::{ErrorKind, error_kind};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tower::{BoxError, Layer, Service, ServiceExt};

/// The client both sides use: hyper-util's legacy client, HTTP/1.1, no timeout of its own.
type HyperClient = Client<HttpConnector, Empty<Bytes>>;

/// The policy's timeout per call.
const TIMEOUT: Duration = Duration::from_millis(200);
/// The protected callers' pace while the breaker recovers.
const PACE: Duration = Duration::from_millis(5);

/// How much work each part does.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// Concurrent tasks calling the healthy server.
    concurrency: usize,
    /// Requests per round against the healthy server.
    requests: usize,
    /// Requests per side before the rounds, to open connections and warm up.
    warmup: usize,
    /// Rounds per side (bare and policy each), interleaved.
    rounds: usize,
    /// Concurrent callers per client against the hanging server.
    hang_callers: usize,
    /// Calls each protected caller makes against the hanging server.
    hang_calls: usize,
    /// When the bench gives up on a call (the bare client has no timeout).
    bound: Duration,
    /// Trip, heal, recover: how many times.
    recoveries: usize,
    /// The breaker's open duration in the recovery part.
    open: Duration,
}

impl Settings {
    const FULL: Settings = Settings {
        concurrency: 16,
        requests: 5_000,
        warmup: 2_000,
        rounds: 20,
        hang_callers: 16,
        hang_calls: 200,
        bound: Duration::from_secs(10),
        recoveries: 5,
        open: Duration::from_millis(500),
    };

    const QUICK: Settings = Settings {
        concurrency: 8,
        requests: 300,
        warmup: 100,
        rounds: 2,
        hang_callers: 8,
        hang_calls: 20,
        bound: Duration::from_secs(1),
        recoveries: 1,
        open: Duration::from_millis(100),
    };
}

/// What the command line (and `PALISADE_LOOPBACK_QUICK`) asks for.
#[derive(Debug, Default)]
struct Args {
    quick: bool,
    /// Instead of the three parts: the healthy server through each layer of the policy.
    layers: bool,
    /// With `layers`: only this one (for one process per layer under callgrind).
    only: Option<String>,
    /// Part 1 alone.
    healthy: bool,
    /// The runtime's worker threads (2 unless given).
    workers: Option<usize>,
}

impl Args {
    /// Unknown arguments are ignored: cargo passes `--bench` to a bench without a harness. A
    /// `--workers` without a whole number above zero is an error.
    fn parse() -> Result<Self, BoxError> {
        let mut args = Args {
            quick: std::env::var("PALISADE_LOOPBACK_QUICK")
                .is_ok_and(|v| !v.is_empty() && v != "0"),
            ..Args::default()
        };
        let mut given = std::env::args().skip(1);
        while let Some(arg) = given.next() {
            match arg.as_str() {
                "--quick" => args.quick = true,
                "--layers" => args.layers = true,
                "--only" => args.only = given.next(),
                "--healthy" => args.healthy = true,
                "--workers" => {
                    let n = given.next().unwrap_or_default();
                    match n.parse() {
                        Ok(n) if n > 0 => args.workers = Some(n),
                        _ => return Err(format!("--workers: a number above 0, not {n:?}").into()),
                    }
                }
                _ => {}
            }
        }
        Ok(args)
    }
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse()?;
    let settings = if args.quick {
        Settings::QUICK
    } else {
        Settings::FULL
    };
    let workers = args.workers.unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "palisade {} end to end over loopback{}: {cores} cores, tokio multi-thread runtime with \
         {workers} worker(s) (client and server share it), hyper-util legacy client over HTTP/1.1",
        env!("CARGO_PKG_VERSION"),
        if args.quick { " (quick run)" } else { "" },
    );
    runtime.block_on(async {
        if args.layers {
            return layers(settings, args.only.as_deref()).await;
        }
        healthy(settings).await?;
        if args.healthy {
            return Ok(());
        }
        hanging(settings).await?;
        recovery(settings).await
    })
}

/// A fresh client: HTTP/1.1, pooled connections, no timeout of its own.
fn client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The Policy every part protects its client with: `.http()`, the timeout, the bulkhead and
/// the breaker, open for `open`.
fn policy(name: &str, open: Duration) -> Result<HttpPolicy, ConfigError> {
    Policy::builder()
        .name(name)
        .http()
        .timeout(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker(open))
        .build()
}

type HttpPolicy = PolicyLayer<NoFallback, HttpClassifier, TrackLayer, UntilBodyEnd>;

/// The breaker all parts use: the last 20 calls, open at 50 % failures of at least 10, one
/// probe, open for `open`.
fn breaker(open: Duration) -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(20);
    config.minimum_calls = 10;
    config.failure_rate = 0.5;
    config.open_duration = open;
    config.permitted_probes = 1;
    config
}

/// A bulkhead that lets every caller of the bench in (the healthy part measures its cost, not
/// its rejections).
fn bulkhead() -> BulkheadConfig {
    let mut config = BulkheadConfig::default();
    config.max_concurrent = 32;
    config
}

/// One call: the request, the response head, and the body read to its end. A response that is
/// not a 2xx is an error.
async fn call<S, B>(svc: &mut S, uri: &Uri) -> Result<(), BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let request = Request::get(uri.clone()).body(Empty::new())?;
    let response = svc
        .ready()
        .await
        .map_err(Into::into)?
        .call(request)
        .await
        .map_err(Into::into)?;
    let status = response.status();
    let mut body = pin!(response.into_body());
    while let Some(frame) = body.as_mut().frame().await {
        frame.map_err(Into::into)?;
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {status}").into())
    }
}

// ---------------------------------------------------------------------------------------------
// Durations and percentiles

/// Nearest-rank percentile of sorted nanoseconds.
fn percentile(sorted: &[u64], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Duration::from_nanos(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_duration(values: &[Duration]) -> Duration {
    let secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(median_f64(&secs))
}

/// A duration in the unit that suits it.
fn show(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// A signed difference `a - b`.
fn show_diff(a: Duration, b: Duration) -> String {
    if a >= b {
        format!("+{}", show(a - b))
    } else {
        format!("-{}", show(b - a))
    }
}

/// A whole number with thousands separators.
fn count(n: f64) -> String {
    let n = n.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Healthy server: throughput and latency, bare and with the policy

/// CPU time used so far by this process's threads (client and server alike), from Linux's
/// `/proc/self/task/*/schedstat`, in nanoseconds; `None` where that is not available. Less
/// sensitive than throughput to other programs taking the cores away.
fn cpu_time() -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        // A thread may end between the listing and the reading.
        let Ok(text) = std::fs::read_to_string(entry.ok()?.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// What one round measured.
#[derive(Debug)]
struct Round {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
    /// CPU time per request, client and server together.
    cpu: Option<Duration>,
}

/// `total` calls through clones of `svc` by `concurrency` tasks; each task takes the next call
/// from a shared counter, so the round ends when all of them are done.
async fn round<S, B>(svc: &S, uri: &Uri, total: usize, concurrency: usize) -> Round
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let cpu_before = cpu_time();
    let started = Instant::now();
    for _ in 0..concurrency {
        let (mut svc, uri, next) = (svc.clone(), uri.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(total / concurrency + 1);
            let mut errors = 0;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let start = Instant::now();
                let ok = call(&mut svc, &uri).await.is_ok();
                latencies.push(nanos(start.elapsed()));
                errors += usize::from(!ok);
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.expect("a caller panicked");
        latencies.extend(l);
        errors += e;
    }
    let took = started.elapsed();
    let cpu = cpu_before.zip(cpu_time()).map(|(before, after)| {
        Duration::from_nanos(after.saturating_sub(before) / total.max(1) as u64)
    });
    latencies.sort_unstable();
    Round {
        throughput: total as f64 / took.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        errors,
        cpu,
    }
}

/// Medians of a side's rounds.
struct Side {
    throughput: f64,
    low: f64,
    high: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
    cpu: Option<Duration>,
}

impl Side {
    fn of(rounds: &[Round]) -> Self {
        let tp: Vec<f64> = rounds.iter().map(|r| r.throughput).collect();
        let p50: Vec<Duration> = rounds.iter().map(|r| r.p50).collect();
        let p99: Vec<Duration> = rounds.iter().map(|r| r.p99).collect();
        Side {
            throughput: median_f64(&tp),
            low: tp.iter().copied().fold(f64::INFINITY, f64::min),
            high: tp.iter().copied().fold(0.0, f64::max),
            p50: median_duration(&p50),
            p99: median_duration(&p99),
            errors: rounds.iter().map(|r| r.errors).sum(),
            cpu: rounds
                .iter()
                .map(|r| r.cpu)
                .collect::<Option<Vec<_>>>()
                .map(|cpu| median_duration(&cpu)),
        }
    }
}

async fn healthy(s: Settings) -> Result<(), BoxError> {
    let server = FlakyServer::start().await?;
    let uri: Uri = format!("{}/catalog/7", server.url()).parse()?;
    let bare = client();
    let policy = policy("loopback", Duration::from_secs(30))?;
    let cb = policy.circuit_breaker().expect("a breaker");
    // The same client (one connection pool) under both.
    let protected = policy.layer(bare.clone());

    println!();
    println!(
        "1. Healthy server: {} requests per round by {} concurrent tasks, each reading the body \
         to its end; {} rounds per client, interleaved bare, policy, policy, bare, ... after {} \
         warm-up requests each",
        count(s.requests as f64),
        s.concurrency,
        s.rounds,
        count(s.warmup as f64),
    );
    round(&bare, &uri, s.warmup, s.concurrency).await;
    round(&protected, &uri, s.warmup, s.concurrency).await;

    let (mut bare_rounds, mut policy_rounds) = (Vec::new(), Vec::new());
    for i in 0..s.rounds {
        // ABBA: each side goes first in every other pair, so a drift in the machine's speed
        // falls on both alike.
        let bare_first = i % 2 == 0;
        for side in 0..2 {
            let is_bare = (side == 0) == bare_first;
            let r = if is_bare {
                round(&bare, &uri, s.requests, s.concurrency).await
            } else {
                round(&protected, &uri, s.requests, s.concurrency).await
            };
            println!(
                "   round {:>2} {:<6} {:>7} req/s  p50 {:>9}  p99 {:>9}  CPU/request {:>9}  errors {}",
                i + 1,
                if is_bare { "bare" } else { "policy" },
                count(r.throughput),
                show(r.p50),
                show(r.p99),
                r.cpu.map_or_else(|| "n/a".to_owned(), show),
                r.errors
            );
            if is_bare {
                bare_rounds.push(r);
            } else {
                policy_rounds.push(r);
            }
        }
    }
    // Each pair ran back to back, so a slow spell of the machine falls on both of its rounds:
    // the median of the pairs' ratios is the fairest figure on a shared machine.
    let pair_ratios: Vec<f64> = bare_rounds
        .iter()
        .zip(&policy_rounds)
        .map(|(b, p)| p.throughput / b.throughput)
        .collect();
    let (b, p) = (Side::of(&bare_rounds), Side::of(&policy_rounds));
    let ratio = median_f64(&pair_ratios);
    println!();
    println!(
        "| client | throughput (req/s), median | slowest - fastest round | p50 | p99 | CPU per \
         request | errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, side) in [("bare", &b), ("with the Policy", &p)] {
        println!(
            "| {name} | {} | {} - {} | {} | {} | {} | {} |",
            count(side.throughput),
            count(side.low),
            count(side.high),
            show(side.p50),
            show(side.p99),
            side.cpu.map_or_else(|| "n/a".to_owned(), show),
            side.errors
        );
    }
    println!();
    let ratios: Vec<String> = pair_ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "Policy / bare throughput: {ratio:.3}, the median of the {} pairs' ratios ({}); the \
         ratio of the medians is {:.3}. The Policy costs {:.1} % of throughput; target: at most \
         3 %: {}.",
        pair_ratios.len(),
        ratios.join(", "),
        p.throughput / b.throughput,
        (1.0 - ratio) * 100.0,
        if ratio >= 0.97 { "met" } else { "missed" },
    );
    if let (Some(bc), Some(pc)) = (b.cpu, p.cpu) {
        println!(
            "CPU per request (client and server, medians): bare {}, with the Policy {} ({}; \
             bare / Policy {:.3}).",
            show(bc),
            show(pc),
            show_diff(pc, bc),
            bc.as_secs_f64() / pc.as_secs_f64(),
        );
    }
    let snapshot = cb.snapshot();
    println!(
        "p50 / p99 with the Policy minus bare: {} / {}. The breaker is {:?}, {} failures in its \
         window, {} calls rejected.",
        show_diff(p.p50, b.p50),
        show_diff(p.p99, b.p99),
        snapshot.state,
        snapshot.failures,
        snapshot.rejected,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Hanging server: the bare client's wait against the timeout and the open breaker

/// The latencies of one kind of call, sorted.
#[derive(Default)]
struct Latencies(Vec<u64>);

impl Latencies {
    fn push(&mut self, d: Duration) {
        self.0.push(nanos(d));
    }

    fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    fn sorted(mut self) -> Self {
        self.0.sort_unstable();
        self
    }

    fn row(&self) -> String {
        format!(
            "{} | {} | {} | {}",
            count(self.0.len() as f64),
            show(percentile(&self.0, 0.50)),
            show(percentile(&self.0, 0.99)),
            show(percentile(&self.0, 1.0)),
        )
    }
}

/// What the protected callers saw of a hanging server.
#[derive(Default)]
struct Hung {
    all: Latencies,
    timed_out: Latencies,
    rejected: Latencies,
    other: Latencies,
}

/// `callers` tasks, each making `calls` calls through a clone of `svc`, each bounded by
/// `bound`; every call's latency, sorted by what ended it.
async fn hang_calls<S, B>(svc: &S, uri: &Uri, callers: usize, calls: usize, bound: Duration) -> Hung
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut tasks = JoinSet::new();
    for _ in 0..callers {
        let (mut svc, uri) = (svc.clone(), uri.clone());
        tasks.spawn(async move {
            let mut seen = Hung::default();
            for _ in 0..calls {
                let start = Instant::now();
                let result = tokio::time::timeout(bound, call(&mut svc, &uri)).await;
                let took = start.elapsed();
                seen.all.push(took);
                match result {
                    // The bench gave up: it counts as the bound itself.
                    Err(_) => seen.timed_out.push(took),
                    Ok(Ok(())) => seen.other.push(took),
                    Ok(Err(err)) => match error_kind(err.as_ref()) {
                        ErrorKind::TimedOut(_) => seen.timed_out.push(took),
                        ErrorKind::CircuitOpen(_) => seen.rejected.push(took),
                        _ => seen.other.push(took),
                    },
                }
            }
            seen
        });
    }
    let mut hung = Hung::default();
    while let Some(done) = tasks.join_next().await {
        let seen = done.expect("a caller panicked");
        hung.all.extend(seen.all);
        hung.timed_out.extend(seen.timed_out);
        hung.rejected.extend(seen.rejected);
        hung.other.extend(seen.other);
    }
    Hung {
        all: hung.all.sorted(),
        timed_out: hung.timed_out.sorted(),
        rejected: hung.rejected.sorted(),
        other: hung.other.sorted(),
    }
}

async fn hanging(s: Settings) -> Result<(), BoxError> {
    // One hanging server per client, so that each server's count is one client's requests.
    let bare_server = FlakyServer::builder().fault(Fault::hang()).start().await?;
    let protected_server = FlakyServer::builder().fault(Fault::hang()).start().await?;
    let bare_uri: Uri = format!("{}/catalog/7", bare_server.url()).parse()?;
    let protected_uri: Uri = format!("{}/catalog/7", protected_server.url()).parse()?;
    let bare = client();
    let policy = policy("loopback-hang", Duration::from_secs(30))?;
    let cb = policy.circuit_breaker().expect("a breaker");
    let protected = policy.layer(bare.clone());

    println!();
    println!(
        "2. Hanging server (it reads each request and never answers): {} concurrent callers per \
         client; each bare caller makes one call, which the bench abandons after {} (the bare \
         client has no timeout); each protected caller makes {} calls (timeout {}, breaker open \
         at 50 % failures of at least 10 calls, for 30 s); both run at once",
        s.hang_callers,
        show(s.bound),
        s.hang_calls,
        show(TIMEOUT),
    );
    let started = Instant::now();
    let (bare_seen, protected_seen) = tokio::join!(
        hang_calls(&bare, &bare_uri, s.hang_callers, 1, s.bound),
        hang_calls(
            &protected,
            &protected_uri,
            s.hang_callers,
            s.hang_calls,
            s.bound
        ),
    );
    let took = started.elapsed();

    println!();
    println!("| client: calls | count | p50 | p99 | max | requests the server got |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| bare: all (each abandoned at the {} bound) | {} | {} |",
        show(s.bound),
        bare_seen.all.row(),
        bare_server.stats().requests
    );
    println!(
        "| protected: all | {} | {} |",
        protected_seen.all.row(),
        protected_server.stats().requests
    );
    println!(
        "| protected: ended by the timeout | {} | |",
        protected_seen.timed_out.row()
    );
    println!(
        "| protected: rejected by the open breaker | {} | |",
        protected_seen.rejected.row()
    );
    if !protected_seen.other.0.is_empty() {
        println!(
            "| protected: anything else | {} | |",
            protected_seen.other.row()
        );
    }
    println!();
    println!(
        "p99: bare {} (the bound), protected {}; a protected call waited at most {}. The breaker \
         is {:?}; it rejected {} calls, each in {} at the median and {} at p99, without sending \
         them. This part took {}.",
        show(percentile(&bare_seen.all.0, 0.99)),
        show(percentile(&protected_seen.all.0, 0.99)),
        show(percentile(&protected_seen.all.0, 1.0)),
        cb.state(),
        cb.snapshot().rejected,
        show(percentile(&protected_seen.rejected.0, 0.50)),
        show(percentile(&protected_seen.rejected.0, 0.99)),
        show(took),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Recovery: from healing to the breaker closing

/// One trip, heal and recovery.
struct Recovery {
    /// What was left of the open duration when the server healed (from the rejections'
    /// `retry_at`).
    open_left: Duration,
    /// The round trip of the call that closed the breaker.
    probe: Duration,
    /// From healing to the breaker reading `Closed`.
    closed_after: Duration,
    /// Calls rejected between healing and the probe.
    rejected: usize,
    /// Of those, calls rejected although they started after the open time was over (the
    /// rejections' `retry_at`): none when the first call after it is the probe.
    late: usize,
}

/// Bounds a loop of paced calls, so that a breaker that never moves ends the bench.
async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> Result<F::Output, BoxError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("{what}: not within {limit:?}").into())
}

async fn recovery(s: Settings) -> Result<(), BoxError> {
    let server = FlakyServer::builder()
        .fault(Fault::status(503))
        .start()
        .await?;
    let uri: Uri = format!("{}/catalog/7", server.url()).parse()?;
    let policy = policy("loopback-recovery", s.open)?;
    let cb = policy.circuit_breaker().expect("a breaker");
    let mut svc = policy.layer(client());

    println!();
    println!(
        "3. Recovery: one caller, one call every {} (the body read to its end); the server \
         answers 503 until the breaker opens (open duration {}, one probe), then heals at once; \
         the time from healing until the breaker reads Closed; {} time(s)",
        show(PACE),
        show(s.open),
        s.recoveries,
    );
    let limit = s.open * 20 + Duration::from_secs(5);
    let mut ticker = tokio::time::interval(PACE);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut runs = Vec::new();
    for _ in 0..s.recoveries {
        server.set(Fault::status(503));
        within("the breaker opening", limit, async {
            while cb.state() != State::Open {
                ticker.tick().await;
                let _ = call(&mut svc, &uri).await;
            }
        })
        .await?;
        let healed = Instant::now();
        server.set(Fault::healthy());
        let run = within("the breaker closing", limit, async {
            let mut retry_at = None;
            let (mut rejected, mut late) = (0, 0);
            loop {
                ticker.tick().await;
                let start = Instant::now();
                let result = call(&mut svc, &uri).await;
                let end = Instant::now();
                if let Err(err) = &result
                    && let ErrorKind::CircuitOpen(open) = error_kind(err.as_ref())
                {
                    rejected += 1;
                    retry_at = retry_at.or(open.retry_at());
                    late += usize::from(retry_at.is_some_and(|at| start >= at));
                }
                if cb.state() == State::Closed {
                    let retry_at = retry_at.unwrap_or(healed);
                    return Recovery {
                        open_left: retry_at.saturating_duration_since(healed),
                        probe: end - start,
                        closed_after: end - healed,
                        rejected,
                        late,
                    };
                }
            }
        })
        .await?;
        runs.push(run);
    }

    println!();
    println!(
        "| run | open duration | open left at healing | probe round trip | open left + probe | \
         healing to Closed | difference | calls rejected meanwhile |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, r) in runs.iter().enumerate() {
        let expected = r.open_left + r.probe;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            show(s.open),
            show(r.open_left),
            show(r.probe),
            show(expected),
            show(r.closed_after),
            show_diff(r.closed_after, expected),
            r.rejected
        );
    }
    let med =
        |f: fn(&Recovery) -> Duration| median_duration(&runs.iter().map(f).collect::<Vec<_>>());
    let (closed, probe) = (med(|r| r.closed_after), med(|r| r.probe));
    println!();
    println!(
        "Median: healing to Closed {} against open duration + probe {} ({}). The difference is \
         the wait from the end of the open time to the next paced call (up to about {}), which \
         was the probe: calls rejected after the open time was over: {}.",
        show(closed),
        show(s.open + probe),
        show_diff(closed, s.open + probe),
        show(PACE),
        runs.iter().map(|r| r.late).sum::<usize>(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `--layers`: where the Policy's cost goes

/// The layers measured by `--layers`, in order.
const LAYERS: [&str; 6] = ["bare", "http", "timeout", "bulkhead", "breaker", "policy"];

/// The healthy server through the bare client and through each part of the policy on its own
/// (`http`: `.http()` with no layer, the body tracking alone; then each layer with it; then
/// the whole policy), in interleaved rounds; the CPU per request and the throughput of each,
/// as medians, against the bare client. `only` runs one of them, so that each can be run in
/// its own process under callgrind and their instruction counts compared.
async fn layers(s: Settings, only: Option<&str>) -> Result<(), BoxError> {
    let server = FlakyServer::start().await?;
    let uri: Uri = format!("{}/catalog/7", server.url()).parse()?;
    let bare = client();
    let base = || Policy::builder().name("loopback").http();
    let http = base().build()?.layer(bare.clone());
    let timeout = base().timeout(TIMEOUT).build()?.layer(bare.clone());
    let bulk = base().bulkhead(bulkhead()).build()?.layer(bare.clone());
    let cb = base()
        .circuit_breaker(breaker(Duration::from_secs(30)))
        .build()?
        .layer(bare.clone());
    let policy = policy("loopback", Duration::from_secs(30))?.layer(bare.clone());
    if let Some(name) = only
        && !LAYERS.contains(&name)
    {
        return Err(format!("--only: one of {LAYERS:?}, not {name:?}").into());
    }
    println!();
    println!(
        "Healthy server through each part of the policy: {} requests per round by {} \
         concurrent tasks; {} rounds each, interleaved (forwards, then backwards); {} warm-up \
         requests through the bare client",
        count(s.requests as f64),
        s.concurrency,
        s.rounds,
        count(s.warmup as f64),
    );
    round(&bare, &uri, s.warmup, s.concurrency).await;
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); LAYERS.len()];
    let mut throughput: Vec<Vec<f64>> = vec![Vec::new(); LAYERS.len()];
    for i in 0..s.rounds {
        for k in 0..LAYERS.len() {
            let j = if i % 2 == 0 { k } else { LAYERS.len() - 1 - k };
            if only.is_some_and(|name| name != LAYERS[j]) {
                continue;
            }
            let (n, c) = (s.requests, s.concurrency);
            let r = match j {
                0 => round(&bare, &uri, n, c).await,
                1 => round(&http, &uri, n, c).await,
                2 => round(&timeout, &uri, n, c).await,
                3 => round(&bulk, &uri, n, c).await,
                4 => round(&cb, &uri, n, c).await,
                _ => round(&policy, &uri, n, c).await,
            };
            cpu[j].extend(r.cpu);
            throughput[j].push(r.throughput);
        }
    }
    println!();
    println!("| client | CPU per request | vs bare | throughput (req/s) | vs bare |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let bare_cpu = median_duration(&cpu[0]);
    let bare_tp = median_f64(&throughput[0]);
    for (j, name) in LAYERS.iter().enumerate() {
        if throughput[j].is_empty() {
            continue;
        }
        let (c, tp) = (median_duration(&cpu[j]), median_f64(&throughput[j]));
        let (vs_cpu, vs_tp) = if throughput[0].is_empty() || j == 0 {
            (String::new(), String::new())
        } else {
            (show_diff(c, bare_cpu), format!("{:.3}", tp / bare_tp))
        };
        println!(
            "| {name} | {} | {vs_cpu} | {} | {vs_tp} |",
            if cpu[j].is_empty() {
                "n/a".to_owned()
            } else {
                show(c)
            },
            count(tp),
        );
    }
    Ok(())
}
