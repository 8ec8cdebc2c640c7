//! `cargo run --example demo`: one flaky HTTP server, two clients calling it side by side, one
//! bare and one behind palisade's recommended [`Policy`], through five phases (healthy,
//! failing, hanging, slow, recovering). A live view refreshes every second; a summary says
//! what protected the caller in each phase; `--plot run.svg` draws the run. Ends by itself in
//! about 20 s with the defaults (`--help` for the settings).
//!
//! * The server is the testkit's [`FlakyServer`] on `127.0.0.1`; its fault is switched at each
//!   phase, so both clients meet the same trouble.
//! * The bare client is a hyper-util legacy client with no timeout. The demo gives up on a
//!   call only when it has waited a whole phase: it is then counted as *abandoned*, with the
//!   time it waited.
//! * The protected client is the same kind of client behind `Policy::builder().http()`:
//!   fallback, circuit breaker, bulkhead and timeout. Its fallback serves the last good
//!   response from an [`HttpStaleCache`] (catalog pages) or, where there is none (personal
//!   recommendations, never cached), a default answer.
//! * Each client has the same number of callers, each calling in a loop with a short pause;
//!   half the calls read a catalog page, half a user's recommendations.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{self, CircuitBreakerConfig, SlidingWindow, State};
use palisade::error::{ErrorKind, error_kind};
use palisade::events::Event;
use palisade::fallback::{Failure, FailureKind, Recover, Served};
use palisade::http::{HttpStaleCache, Tracked};
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

const HELP: &str = "\
cargo run --example demo [-- OPTIONS]

One flaky HTTP server on 127.0.0.1, two clients calling it side by side: a bare hyper client,
and the same client behind palisade's Policy (fallback -> circuit breaker -> bulkhead ->
timeout). Five phases: healthy, failing, hanging, slow, recovering. A live view every second,
then a summary of what protected the caller in each phase.

OPTIONS
  --phase-secs S      length of each phase, in seconds (default 4; the run lasts 5 phases)
  --timeout-ms MS     the policy's timeout per call (default 200)
  --max-concurrent N  the policy's bulkhead: calls in flight at once (default 6)
  --failure-rate R    the breaker opens when this share of its last 20 calls failed
                      (default 0.5; at least 10 calls in its window)
  --open-ms MS        how long the breaker stays open before probing (default 1000)
  --callers N         concurrent callers per client, each calling in a loop (default 8)
  --error-rate R      share of requests the server fails in the failing phase (default 0.8)
  --plot FILE.svg     write a chart of the run: latency and outcomes over time, with the
                      breaker's state as bands
  -h, --help          print this help
";

/// The pause between two calls of one caller: 15 to 35 ms, drawn for each call so that the
/// callers do not fall into step (an open breaker answers them all at once).
const PAUSE: (u64, u64) = (15, 35);
/// The breaker's window: the last 20 calls, at least 10 of them before a rate can trip it.
const WINDOW: u32 = 20;
const MINIMUM_CALLS: u32 = 10;
/// Catalog pages the callers read (each is cached once it has been read whole).
const CATALOG_PAGES: usize = 10;

#[derive(Debug, Clone)]
struct Settings {
    phase: Duration,
    timeout: Duration,
    max_concurrent: usize,
    failure_rate: f64,
    open: Duration,
    callers: usize,
    error_rate: f64,
    plot: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            phase: Duration::from_secs(4),
            timeout: Duration::from_millis(200),
            max_concurrent: 6,
            failure_rate: 0.5,
            open: Duration::from_millis(1000),
            callers: 8,
            error_rate: 0.8,
            plot: None,
        }
    }
}

/// `Ok(None)` when `--help` was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Settings>, String> {
    fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
        value
            .parse()
            .map_err(|_| format!("{flag}: `{value}` is not a valid number"))
    }
    fn positive_ms(flag: &str, value: &str) -> Result<Duration, String> {
        match number::<u64>(flag, value)? {
            0 => Err(format!("{flag}: must be at least 1")),
            ms => Ok(Duration::from_millis(ms)),
        }
    }
    let mut s = Settings::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let known = [
            "--phase-secs",
            "--timeout-ms",
            "--max-concurrent",
            "--failure-rate",
            "--open-ms",
            "--callers",
            "--error-rate",
            "--plot",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown option `{flag}`"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("{flag}: needs a value")),
        };
        match flag.as_str() {
            "--phase-secs" => {
                let secs: f64 = number(&flag, &value)?;
                if !(0.5..=600.0).contains(&secs) {
                    return Err(format!("{flag}: must be between 0.5 and 600"));
                }
                s.phase = Duration::from_secs_f64(secs);
            }
            "--timeout-ms" => s.timeout = positive_ms(&flag, &value)?,
            "--max-concurrent" => {
                s.max_concurrent = number(&flag, &value)?;
                if s.max_concurrent == 0 {
                    return Err(format!("{flag}: must be at least 1"));
                }
            }
            "--failure-rate" => {
                s.failure_rate = number(&flag, &value)?;
                if !(s.failure_rate > 0.0 && s.failure_rate <= 1.0) {
                    return Err(format!("{flag}: must be in (0, 1]"));
                }
            }
            "--open-ms" => s.open = positive_ms(&flag, &value)?,
            "--callers" => {
                s.callers = number(&flag, &value)?;
                if !(1..=256).contains(&s.callers) {
                    return Err(format!("{flag}: must be between 1 and 256"));
                }
            }
            "--error-rate" => {
                s.error_rate = number(&flag, &value)?;
                if !(0.0..=1.0).contains(&s.error_rate) {
                    return Err(format!("{flag}: must be in [0, 1]"));
                }
            }
            _ => s.plot = Some(PathBuf::from(value)),
        }
    }
    Ok(Some(s))
}

struct Phase {
    name: &'static str,
    what: String,
    fault: Fault,
}

fn phases(s: &Settings) -> Vec<Phase> {
    let quick = (Duration::from_millis(1), Duration::from_millis(5));
    vec![
        Phase {
            name: "healthy",
            what: "the server answers every request in 1-5 ms".to_owned(),
            fault: Fault::healthy().latency_between(quick.0, quick.1),
        },
        Phase {
            name: "failing",
            what: format!(
                "an error burst: {:.0} % of requests get a 503, in 1-5 ms",
                s.error_rate * 100.0
            ),
            fault: Fault::error_rate(503, s.error_rate).latency_between(quick.0, quick.1),
        },
        Phase {
            name: "hanging",
            what: "the server accepts requests and never answers".to_owned(),
            fault: Fault::hang(),
        },
        Phase {
            name: "slow",
            what: "the server answers every request, in 50-500 ms".to_owned(),
            fault: Fault::healthy()
                .latency_between(Duration::from_millis(50), Duration::from_millis(500)),
        },
        Phase {
            name: "recovering",
            what: "the server is healthy again and answers in 1-5 ms".to_owned(),
            fault: Fault::healthy().latency_between(quick.0, quick.1),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// The protected client's fallback: the stale cache, else a default answer.

/// Put on every response the fallback made: which failure it answered, and how.
#[derive(Debug, Clone, Copy)]
struct Recovered {
    kind: FailureKind,
    stale: bool,
}

/// The last good response for the same request (catalog pages), else a default answer
/// (recommendations, which are per user and never cached).
#[derive(Debug, Clone)]
struct StaleOrDefault {
    cache: HttpStaleCache,
}

impl StaleOrDefault {
    fn new() -> Result<Self, BoxError> {
        let cache = HttpStaleCache::builder()
            // Only the catalog is the same for everyone; a request without a user key is not
            // cached.
            .user_key(|head| (!head.uri.contains("/recommendations")).then(String::new))
            .build()?;
        Ok(Self { cache })
    }
}

type Res<B> = Response<Tracked<B>>;

impl<ReqB, B: Body> Recover<Request<ReqB>, Res<B>> for StaleOrDefault {
    type Kept = <HttpStaleCache as Recover<Request<ReqB>, Res<B>>>::Kept;

    fn keep(&self, req: &Request<ReqB>) -> Self::Kept {
        Recover::<Request<ReqB>, Res<B>>::keep(&self.cache, req)
    }

    fn recover(
        &self,
        kept: Self::Kept,
        failure: Failure<Res<B>>,
    ) -> Result<Res<B>, Failure<Res<B>>> {
        Recover::<Request<ReqB>, Res<B>>::recover_served(self, kept, failure).map(|(res, _)| res)
    }

    fn recover_served(
        &self,
        kept: Self::Kept,
        failure: Failure<Res<B>>,
    ) -> Result<(Res<B>, Served), Failure<Res<B>>> {
        let kind = failure.kind();
        let (mut res, served) =
            match Recover::<Request<ReqB>, Res<B>>::recover_served(&self.cache, kept, failure) {
                Ok(stale) => stale,
                Err(_) => (
                    Response::new(Tracked::replay(Bytes::from_static(b"[]"))),
                    Served::Fresh,
                ),
            };
        let stale = served.age().is_some();
        res.extensions_mut().insert(Recovered { kind, stale });
        Ok((res, served))
    }

    fn succeeded(&self, kept: Self::Kept, response: &mut Res<B>) {
        Recover::<Request<ReqB>, Res<B>>::succeeded(&self.cache, kept, response);
    }

    fn cached_entries(&self) -> Option<usize> {
        Recover::<Request<ReqB>, Res<B>>::cached_entries(&self.cache)
    }
}

// ---------------------------------------------------------------------------------------------
// What happened to each call.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The server answered with a success, read to its end.
    Succeeded,
    /// The server answered with a failure (a 503), or the connection failed.
    Failed,
    /// The policy's timeout gave up on it.
    TimedOut,
    /// The open breaker answered at once, without sending it.
    RejectedByBreaker,
    /// The full bulkhead answered at once, without sending it.
    RejectedByBulkhead,
    /// No answer within a whole phase: the demo gave up waiting.
    Abandoned,
}

const OUTCOMES: [Outcome; 6] = [
    Outcome::Succeeded,
    Outcome::Failed,
    Outcome::TimedOut,
    Outcome::RejectedByBreaker,
    Outcome::RejectedByBulkhead,
    Outcome::Abandoned,
];

impl Outcome {
    fn of_error(err: &BoxError) -> Self {
        match error_kind(err.as_ref()) {
            ErrorKind::CircuitOpen(_) => Outcome::RejectedByBreaker,
            ErrorKind::BulkheadFull(_) => Outcome::RejectedByBulkhead,
            ErrorKind::TimedOut(_) => Outcome::TimedOut,
            _ => Outcome::Failed,
        }
    }

    fn of_kind(kind: FailureKind) -> Self {
        match kind {
            FailureKind::CircuitOpen => Outcome::RejectedByBreaker,
            FailureKind::BulkheadFull => Outcome::RejectedByBulkhead,
            FailureKind::TimedOut => Outcome::TimedOut,
            FailureKind::InnerError | FailureKind::FailureResponse => Outcome::Failed,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed out",
            Outcome::RejectedByBreaker => "rejected by breaker",
            Outcome::RejectedByBulkhead => "rejected by bulkhead",
            Outcome::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Call {
    /// The phase in force when it started.
    phase: usize,
    start: Duration,
    end: Duration,
    outcome: Outcome,
    /// Answered by the fallback: `Some(true)` stale, `Some(false)` fresh.
    fallback: Option<bool>,
}

impl Call {
    fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// Sends one request and reads the response to its end; says what happened.
async fn send<S, B>(svc: &mut S, req: Request<Empty<Bytes>>) -> (Outcome, Option<bool>)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
{
    let res = match svc.ready().await {
        Ok(svc) => svc.call(req).await,
        Err(e) => Err(e),
    };
    let res = match res {
        Ok(res) => res,
        Err(e) => return (Outcome::of_error(&e.into()), None),
    };
    let recovered = res.extensions().get::<Recovered>().copied();
    let success = res.status().is_success();
    // Reading the body to its end is what settles the call for the policy (outcome, permit)
    // and lets the stale cache keep it.
    let read = res.into_body().collect().await;
    match recovered {
        Some(r) => (Outcome::of_kind(r.kind), Some(r.stale)),
        None if success && read.is_ok() => (Outcome::Succeeded, None),
        None => (Outcome::Failed, None),
    }
}

// ---------------------------------------------------------------------------------------------
// Counting.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The run's clock and its phases: which one is in force, and when each began.
struct Timeline {
    t0: Instant,
    phase_len: Duration,
    phases: usize,
    current: watch::Sender<usize>,
    began: Mutex<Vec<Duration>>,
}

impl Timeline {
    fn new(phase_len: Duration, phases: usize) -> Self {
        Self {
            t0: Instant::now(),
            phase_len,
            phases,
            current: watch::Sender::new(0),
            began: Mutex::new(vec![Duration::ZERO]),
        }
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn current(&self) -> usize {
        *self.current.borrow()
    }

    /// When phase `i` is due to end.
    fn due_end(&self, i: usize) -> Instant {
        self.t0 + self.phase_len * (i as u32 + 1)
    }

    /// The end of the run.
    fn stop(&self) -> Instant {
        self.due_end(self.phases - 1)
    }

    /// Phase `i` is in force from now on (its fault has just been set).
    fn begin(&self, i: usize) {
        lock(&self.began).push(self.now());
        self.current.send_replace(i);
    }

    /// When phase `i` began, and when the next one did (`None` while it has not).
    fn bounds(&self, i: usize) -> (Duration, Option<Duration>) {
        let began = lock(&self.began);
        (began[i], began.get(i + 1).copied())
    }

    fn contains(&self, i: usize, at: Duration) -> bool {
        let (from, to) = self.bounds(i);
        at >= from && to.is_none_or(|to| at < to)
    }
}

/// Every call of one client, the requests it sent to the server, and the calls waiting now.
struct Recorder {
    timeline: Arc<Timeline>,
    calls: Mutex<Vec<Call>>,
    sent: Mutex<Vec<usize>>,
    waiting: Mutex<Vec<Option<Duration>>>,
}

impl Recorder {
    fn new(timeline: &Arc<Timeline>, callers: usize) -> Self {
        Self {
            timeline: Arc::clone(timeline),
            calls: Mutex::new(Vec::new()),
            sent: Mutex::new(vec![0; timeline.phases]),
            waiting: Mutex::new(vec![None; callers]),
        }
    }

    fn now(&self) -> Duration {
        self.timeline.now()
    }

    /// A request went to the server, in the phase in force.
    fn sent(&self) {
        let phase = self.timeline.current();
        lock(&self.sent)[phase] += 1;
    }

    fn begin(&self, caller: usize) -> Duration {
        let now = self.now();
        lock(&self.waiting)[caller] = Some(now);
        now
    }

    fn end(&self, caller: usize, call: Call) {
        lock(&self.waiting)[caller] = None;
        lock(&self.calls).push(call);
    }

    /// Counts of the calls made in phase `phase`.
    fn stats(&self, phase: usize) -> Stats {
        let mut stats = Stats::default();
        let mut latencies = Vec::new();
        for call in lock(&self.calls).iter().filter(|c| c.phase == phase) {
            stats.calls += 1;
            stats.by_outcome[OUTCOMES
                .iter()
                .position(|o| *o == call.outcome)
                .unwrap_or(0)] += 1;
            match call.fallback {
                Some(true) => stats.stale += 1,
                Some(false) => stats.fresh += 1,
                None => {}
            }
            latencies.push(call.latency());
        }
        latencies.sort_unstable();
        stats.p50 = percentile(&latencies, 0.50);
        stats.p99 = percentile(&latencies, 0.99);
        stats.sent = lock(&self.sent)[phase];
        stats
    }

    /// Calls waiting now, and how long the oldest has waited.
    fn waiting(&self) -> (usize, Option<Duration>) {
        let now = self.now();
        let waiting = lock(&self.waiting);
        let starts = waiting.iter().flatten();
        let oldest = starts.clone().min().map(|s| now.saturating_sub(*s));
        (starts.count(), oldest)
    }

    fn all_calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    calls: usize,
    by_outcome: [usize; OUTCOMES.len()],
    stale: usize,
    fresh: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
    sent: usize,
}

impl Stats {
    fn count(&self, outcome: Outcome) -> usize {
        self.by_outcome[OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0)]
    }

    fn fallbacks(&self) -> usize {
        self.stale + self.fresh
    }
}

/// The `q` quantile of sorted values (nearest rank).
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The breaker's transitions, as its listener heard them.
#[derive(Debug, Clone, Copy)]
struct Change {
    at: Duration,
    from: State,
    to: State,
    calls: u32,
    failures: u32,
}

fn state_at(changes: &[Change], at: Duration) -> State {
    changes
        .iter()
        .take_while(|c| c.at <= at)
        .last()
        .map_or(State::Closed, |c| c.to)
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half-open",
        State::ForcedOpen => "forced open",
        State::Disabled => "disabled",
        _ => "metrics only",
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting.

fn fmt_duration(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".to_owned();
    };
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn times(n: usize) -> String {
    match n {
        1 => "once".to_owned(),
        2 => "twice".to_owned(),
        n => format!("{n} times"),
    }
}

/// Wraps `text` at `width` columns, every line after the first indented by `indent`.
fn wrap(text: &str, width: usize, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out
}

struct View<'a> {
    settings: &'a Settings,
    phases: &'a [Phase],
    bare: &'a Recorder,
    protected: &'a Recorder,
    breaker: &'a circuit_breaker::Handle,
    changes: &'a Mutex<Vec<Change>>,
    timeline: &'a Timeline,
}

impl View<'_> {
    fn total(&self) -> Duration {
        self.settings.phase * self.phases.len() as u32
    }

    fn breaker_line(&self) -> String {
        let opened = lock(self.changes)
            .iter()
            .filter(|c| c.to == State::Open)
            .count();
        let state = state_name(self.breaker.state());
        match opened {
            0 => state.to_owned(),
            n => format!("{state} (opened {})", times(n)),
        }
    }

    /// What the breaker did in phase `i`, in order: "the breaker opened ..., then ...".
    fn breaker_story(&self, i: usize, changes: &[Change]) -> Option<String> {
        let (from, _) = self.timeline.bounds(i);
        let calls = self.protected.all_calls();
        let mut parts = Vec::new();
        if i > 0 && matches!(state_at(changes, from), State::Open | State::HalfOpen) {
            parts.push("was open from the previous phase".to_owned());
        }
        let mut failed_probes = 0;
        let flush = |n: &mut usize, parts: &mut Vec<String>| {
            if *n > 0 {
                parts.push(format!("reopened {} when its probes failed", times(*n)));
                *n = 0;
            }
        };
        let mut since = from;
        for c in changes.iter().filter(|c| self.timeline.contains(i, c.at)) {
            match (c.from, c.to) {
                (State::HalfOpen, State::Open) => failed_probes += 1,
                (_, State::Open) => {
                    flush(&mut failed_probes, &mut parts);
                    let before = calls
                        .iter()
                        .filter(|k| k.phase == i && k.end > since && k.end <= c.at)
                        .count();
                    parts.push(format!(
                        "opened {} into the phase, after {} ({} of its last {} had failed)",
                        fmt_duration(Some(c.at.saturating_sub(from))),
                        plural(before, "call", "calls"),
                        c.failures,
                        c.calls,
                    ));
                }
                (_, State::Closed) => {
                    flush(&mut failed_probes, &mut parts);
                    parts.push(format!(
                        "closed {} into the phase, once its probes succeeded",
                        fmt_duration(Some(c.at.saturating_sub(from)))
                    ));
                    since = c.at;
                }
                _ => {}
            }
        }
        flush(&mut failed_probes, &mut parts);
        (!parts.is_empty()).then(|| format!("the breaker {}", parts.join(", then ")))
    }

    /// The table shown on a terminal, redrawn in place.
    fn table(&self, phase: usize, now: Duration) -> Vec<String> {
        let (b, p) = (self.bare.stats(phase), self.protected.stats(phase));
        let current = &self.phases[phase];
        let mut lines = vec![
            format!(
                "palisade demo   {:>4.1} s of {:.0} s   phase {} of {}: {}",
                now.as_secs_f64(),
                self.total().as_secs_f64(),
                phase + 1,
                self.phases.len(),
                current.name
            ),
            format!("  {}", current.what),
            String::new(),
            format!(
                "{:<34}{:>14}{:>26}",
                "this phase so far", "bare", "protected"
            ),
        ];
        let row =
            |label: &str, bare: String, prot: String| format!("{label:<34}{bare:>14}{prot:>26}");
        let dash = || "-".to_owned();
        lines.push(row("  calls", b.calls.to_string(), p.calls.to_string()));
        for outcome in OUTCOMES {
            let (bv, pv) = (b.count(outcome), p.count(outcome));
            let bare_has = matches!(
                outcome,
                Outcome::Succeeded | Outcome::Failed | Outcome::Abandoned
            );
            let prot_has = outcome != Outcome::Abandoned || pv > 0;
            lines.push(row(
                &format!("    {}", outcome.label()),
                if bare_has { bv.to_string() } else { dash() },
                if prot_has { pv.to_string() } else { dash() },
            ));
        }
        lines.push(row(
            "  answered by the fallback: stale",
            dash(),
            p.stale.to_string(),
        ));
        lines.push(row(
            "  answered by the fallback: fresh",
            dash(),
            p.fresh.to_string(),
        ));
        lines.push(row(
            "  latency p50",
            fmt_duration(b.p50),
            fmt_duration(p.p50),
        ));
        lines.push(row(
            "  latency p99",
            fmt_duration(b.p99),
            fmt_duration(p.p99),
        ));
        lines.push(row(
            "  requests sent to the server",
            b.sent.to_string(),
            p.sent.to_string(),
        ));
        let waiting = |(n, oldest): (usize, Option<Duration>)| match oldest {
            Some(oldest) => format!("{n} ({})", fmt_duration(Some(oldest))),
            None => "0".to_owned(),
        };
        lines.push(row(
            "calls waiting now (the longest)",
            waiting(self.bare.waiting()),
            waiting(self.protected.waiting()),
        ));
        lines.push(row("breaker", dash(), self.breaker_line()));
        lines
    }

    /// The lines printed each second when stdout is not a terminal.
    fn plain(&self, phase: usize, now: Duration) -> Vec<String> {
        let waiting = |rec: &Recorder| match rec.waiting() {
            (n, Some(oldest)) => format!("{n} (longest {})", fmt_duration(Some(oldest))),
            (n, None) => n.to_string(),
        };
        let (b, p) = (self.bare.stats(phase), self.protected.stats(phase));
        let bare = format!(
            "  bare       calls {} (ok {}, failed {}, abandoned {}); p50 {}, p99 {}; sent {}; \
             waiting {}",
            b.calls,
            b.count(Outcome::Succeeded),
            b.count(Outcome::Failed),
            b.count(Outcome::Abandoned),
            fmt_duration(b.p50),
            fmt_duration(b.p99),
            b.sent,
            waiting(self.bare),
        );
        let protected = format!(
            "  protected  calls {} (ok {}, failed {}, timed out {}, rejected by breaker {}, by \
             bulkhead {}); fallbacks {} stale, {} fresh; p50 {}, p99 {}; sent {}; waiting {}; \
             breaker {}",
            p.calls,
            p.count(Outcome::Succeeded),
            p.count(Outcome::Failed),
            p.count(Outcome::TimedOut),
            p.count(Outcome::RejectedByBreaker),
            p.count(Outcome::RejectedByBulkhead),
            p.stale,
            p.fresh,
            fmt_duration(p.p50),
            fmt_duration(p.p99),
            p.sent,
            waiting(self.protected),
            self.breaker_line(),
        );
        vec![
            format!(
                "[{:>4.1} s] phase {} of {}, {} ({}); this phase so far:",
                now.as_secs_f64(),
                phase + 1,
                self.phases.len(),
                self.phases[phase].name,
                self.phases[phase].what,
            ),
            bare,
            protected,
        ]
    }

    /// One paragraph per phase: what protected the caller.
    fn summary(&self) -> String {
        let s = self.settings;
        let changes = lock(self.changes).clone();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}",
            wrap(
                &format!(
                    "Summary: what protected the caller, phase by phase ({:.1} s each; {} \
                     callers per client; protected by a {} timeout, a bulkhead of {}, a \
                     breaker opening at {:.0} % failures of its last {WINDOW} calls for {}, \
                     and a fallback):",
                    s.phase.as_secs_f64(),
                    s.callers,
                    fmt_duration(Some(s.timeout)),
                    s.max_concurrent,
                    s.failure_rate * 100.0,
                    fmt_duration(Some(s.open)),
                ),
                96,
                "",
                "",
            )
        );
        for (i, phase) in self.phases.iter().enumerate() {
            let (b, p) = (self.bare.stats(i), self.protected.stats(i));
            let mut text = format!(
                "{} phase: bare p99 {}, protected p99 {}.",
                phase.name,
                fmt_duration(b.p99),
                fmt_duration(p.p99)
            );
            // The bare client.
            let (failed, abandoned) = (b.count(Outcome::Failed), b.count(Outcome::Abandoned));
            if abandoned > 0 {
                let _ = write!(
                    text,
                    " Bare: {} got no answer and waited {}, until the demo gave up (the bare \
                     client has no timeout)",
                    plural(abandoned, "call", "calls"),
                    fmt_duration(Some(s.phase)),
                );
                if failed > 0 {
                    let _ = write!(text, "; {failed} failed");
                }
                text.push('.');
            } else if failed > 0 {
                let _ = write!(
                    text,
                    " Bare: {failed} of {} failed.",
                    plural(b.calls, "call", "calls")
                );
            }
            // The protected client.
            let mut did: Vec<String> = self.breaker_story(i, &changes).into_iter().collect();
            let rejected = p.count(Outcome::RejectedByBreaker);
            if rejected > 0 {
                did.push(format!(
                    "while open it answered {} at once, without sending them",
                    plural(rejected, "call", "calls")
                ));
            }
            let timed_out = p.count(Outcome::TimedOut);
            if timed_out > 0 {
                did.push(format!(
                    "the timeout gave up on {} after {}",
                    plural(timed_out, "call", "calls"),
                    fmt_duration(Some(s.timeout))
                ));
            }
            let full = p.count(Outcome::RejectedByBulkhead);
            if full > 0 {
                did.push(format!(
                    "the bulkhead turned away {} beyond {} in flight",
                    plural(full, "call", "calls"),
                    s.max_concurrent
                ));
            }
            match (p.stale, p.fresh) {
                (0, 0) => {}
                (stale, 0) => did.push(format!(
                    "the fallback answered {} from the stale cache",
                    plural(stale, "call", "calls")
                )),
                (0, fresh) => did.push(format!(
                    "the fallback answered {} with a default",
                    plural(fresh, "call", "calls")
                )),
                (stale, fresh) => did.push(format!(
                    "the fallback answered {} from the stale cache and {fresh} with a default",
                    plural(stale, "call", "calls")
                )),
            }
            let reached = p.calls - p.count(Outcome::Succeeded) - p.fallbacks();
            if did.is_empty() && reached == 0 {
                let _ = write!(
                    text,
                    " Protected: nothing to protect against; {} of {} succeeded.",
                    p.count(Outcome::Succeeded),
                    plural(p.calls, "call", "calls")
                );
            } else {
                if reached == 0 {
                    did.push("no error reached the caller".to_owned());
                } else {
                    did.push(format!(
                        "{} still reached the caller",
                        plural(reached, "error", "errors")
                    ));
                }
                let _ = write!(text, " Protected: {}.", did.join("; "));
            }
            if b.sent != p.sent {
                let _ = write!(
                    text,
                    " The server got {} from the bare client and {} from the protected one.",
                    plural(b.sent, "request", "requests"),
                    p.sent
                );
            }
            let _ = writeln!(out, "{}", wrap(&text, 96, "  ", "      "));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The chart.

/// What the chart shows per time bin of one client.
#[derive(Debug, Clone, Default)]
struct Bin {
    latencies: Vec<Duration>,
    outcomes: [usize; OUTCOMES.len()],
    fallbacks: usize,
}

fn bins(calls: &[Call], width: f64, n: usize) -> Vec<Bin> {
    let mut bins = vec![Bin::default(); n];
    for call in calls {
        let i = ((call.end.as_secs_f64() / width) as usize).min(n - 1);
        let bin = &mut bins[i];
        bin.latencies.push(call.latency());
        bin.outcomes[OUTCOMES
            .iter()
            .position(|o| *o == call.outcome)
            .unwrap_or(0)] += 1;
        bin.fallbacks += usize::from(call.fallback.is_some());
    }
    for bin in &mut bins {
        bin.latencies.sort_unstable();
    }
    bins
}

fn outcome_color(outcome: Outcome) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match outcome {
        Outcome::Succeeded => RGBColor(46, 160, 67),
        Outcome::Failed => RGBColor(214, 39, 40),
        Outcome::TimedOut => RGBColor(255, 127, 14),
        Outcome::RejectedByBreaker => RGBColor(148, 103, 189),
        Outcome::RejectedByBulkhead => RGBColor(31, 119, 180),
        Outcome::Abandoned => RGBColor(70, 70, 70),
    }
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line(plotters::style::RGBColor, u32),
    Dashed(plotters::style::RGBColor),
    Area(plotters::style::RGBColor),
    Band(plotters::style::RGBAColor),
}

/// Draws a legend, one entry a line, in its own area right of a chart.
fn legend<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, Mark)],
) -> Result<(), BoxError>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    for (k, (label, mark)) in entries.iter().enumerate() {
        let y = 48 + 20 * k as i32;
        match *mark {
            Mark::Line(color, width) => {
                area.draw(&PathElement::new(
                    vec![(8, y), (32, y)],
                    color.stroke_width(width),
                ))?;
            }
            Mark::Dashed(color) => {
                for x in [8, 20] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 7, y)],
                        color.stroke_width(2),
                    ))?;
                }
            }
            Mark::Area(color) => {
                area.draw(&Rectangle::new([(12, y - 6), (28, y + 6)], color.filled()))?;
            }
            Mark::Band(color) => {
                area.draw(&Rectangle::new([(12, y - 6), (28, y + 6)], color.filled()))?;
            }
        }
        area.draw(&Text::new(label.clone(), (40, y - 7), ("sans-serif", 14)))?;
    }
    Ok(())
}

fn plot(
    path: &std::path::Path,
    view: &View<'_>,
    bare: &[Call],
    protected: &[Call],
) -> Result<(), BoxError> {
    use plotters::prelude::*;

    let end = bare
        .iter()
        .chain(protected)
        .map(|c| c.end.as_secs_f64())
        .fold(view.total().as_secs_f64(), f64::max);
    let width = (view.settings.phase.as_secs_f64() / 8.0).clamp(0.1, 1.0);
    let n = (end / width).ceil().max(1.0) as usize;
    let x_end = n as f64 * width;
    let clients = [
        ("bare", bins(bare, width, n)),
        ("protected", bins(protected, width, n)),
    ];
    let colors = [RGBColor(214, 39, 40), RGBColor(31, 119, 180)];
    let open_band = RGBColor(214, 39, 40).mix(0.13);
    let half_open_band = RGBColor(255, 187, 0).mix(0.25);

    // The breaker's open and half-open spans.
    let changes = lock(view.changes).clone();
    let mut bands = Vec::new();
    for (k, c) in changes.iter().enumerate() {
        let until = changes
            .get(k + 1)
            .map_or(x_end, |next| next.at.as_secs_f64());
        let color = match c.to {
            State::Open | State::ForcedOpen => open_band,
            State::HalfOpen => half_open_band,
            _ => continue,
        };
        bands.push((c.at.as_secs_f64(), until, color));
    }
    let phase_starts: Vec<(f64, &str)> = view
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (view.timeline.bounds(i).0.as_secs_f64(), p.name))
        .collect();
    let band_entries = [
        ("breaker open".to_owned(), Mark::Band(open_band)),
        ("breaker half-open".to_owned(), Mark::Band(half_open_band)),
    ];

    let root = SVGBackend::new(path, (1250, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "palisade demo: a bare client and a protected one against one flaky server",
        ("sans-serif", 22),
    )?;
    let panels: Vec<_> = root
        .split_evenly((3, 1))
        .iter()
        .map(|panel| panel.split_horizontally(1250 - 210))
        .collect();

    // Latency.
    let max_ms = clients
        .iter()
        .flat_map(|(_, bins)| bins.iter().filter_map(|b| b.latencies.last()))
        .map(|d| d.as_secs_f64() * 1000.0)
        .fold(10.0, f64::max)
        * 12.0;
    let min_ms = 0.1;
    let mut chart = ChartBuilder::on(&panels[0].0)
        .caption(
            format!("latency of the calls that ended in each {width:.1} s (ms, log scale)"),
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_end, (min_ms..max_ms).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .light_line_style(WHITE)
        .draw()?;
    for (from, to, color) in &bands {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(*from, min_ms), (*to, max_ms)],
            color.filled(),
        )))?;
    }
    for (x, name) in &phase_starts {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*x, min_ms), (*x, max_ms)],
            BLACK.mix(0.35),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            name.to_string(),
            (*x + width * 0.3, max_ms / 2.2),
            ("sans-serif", 14),
        )))?;
    }
    let mut entries = Vec::new();
    for ((name, bins), color) in clients.iter().zip(colors) {
        for (q, stroke) in [(0.99, 3), (0.50, 1)] {
            let points: Vec<Option<(f64, f64)>> = bins
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let v = percentile(&b.latencies, q)?;
                    Some((
                        (i as f64 + 0.5) * width,
                        (v.as_secs_f64() * 1000.0).max(min_ms),
                    ))
                })
                .collect();
            let style = color.stroke_width(stroke);
            // One line per run of bins with answers: no line across a time without any.
            for run in points.split(Option::is_none) {
                chart.draw_series(LineSeries::new(run.iter().flatten().copied(), style))?;
            }
            chart.draw_series(
                points
                    .iter()
                    .flatten()
                    .map(|p| Circle::new(*p, stroke + 1, color.filled())),
            )?;
            entries.push((
                format!("{name} p{:.0}", q * 100.0),
                Mark::Line(color, stroke),
            ));
        }
    }
    // How long the bare client's oldest call had been waiting, sampled at each bin's end: the
    // hang, which no answer shows until the demo gives up.
    let waits: Vec<(f64, f64)> = (1..=n)
        .filter_map(|i| {
            let t = Duration::from_secs_f64(i as f64 * width);
            let oldest = bare
                .iter()
                .filter(|c| c.start <= t && t < c.end)
                .map(|c| t - c.start)
                .max()?;
            let ms = oldest.as_secs_f64() * 1000.0;
            (ms >= 50.0).then_some((i as f64 * width, ms))
        })
        .collect();
    if !waits.is_empty() {
        chart.draw_series(DashedLineSeries::new(
            waits,
            6,
            4,
            colors[0].stroke_width(2),
        ))?;
        entries.push((
            "bare: oldest call waiting".to_owned(),
            Mark::Dashed(colors[0]),
        ));
    }
    entries.extend(band_entries.iter().cloned());
    legend(&panels[0].1, &entries)?;

    // Outcomes per second, stacked, one panel per client.
    let max_rate = clients
        .iter()
        .flat_map(|(_, bins)| bins.iter().map(|b| b.outcomes.iter().sum::<usize>()))
        .max()
        .unwrap_or(1) as f64
        / width
        * 1.15;
    for (k, (name, bins)) in clients.iter().enumerate() {
        let (area, side) = &panels[k + 1];
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{name} client: calls per second by outcome (stacked)"),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_end, 0.0..max_rate.max(1.0))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("calls/s")
            .light_line_style(WHITE)
            .draw()?;
        if k == 1 {
            for (from, to, color) in &bands {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(*from, 0.0), (*to, max_rate)],
                    color.filled(),
                )))?;
            }
        }
        for (x, _) in &phase_starts {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(*x, 0.0), (*x, max_rate)],
                BLACK.mix(0.35),
            )))?;
        }
        let mut entries = Vec::new();
        // Draw the tallest stack first, each smaller one over it.
        for top in (0..OUTCOMES.len()).rev() {
            let outcome = OUTCOMES[top];
            if bins.iter().all(|b| b.outcomes[top] == 0) {
                continue;
            }
            let points: Vec<(f64, f64)> = bins
                .iter()
                .enumerate()
                .flat_map(|(i, b)| {
                    let rate = b.outcomes[..=top].iter().sum::<usize>() as f64 / width;
                    [(i as f64 * width, rate), ((i + 1) as f64 * width, rate)]
                })
                .collect();
            let color = outcome_color(outcome);
            chart.draw_series(AreaSeries::new(points, 0.0, color.mix(0.75)).border_style(color))?;
            entries.push((outcome.label().to_owned(), Mark::Area(color)));
        }
        // Listed in stacking order, bottom first.
        entries.reverse();
        // Where the bare client got no answer at all, say why the panel is empty.
        if k == 0 {
            for (i, (x, _)) in phase_starts.iter().enumerate() {
                let abandoned = view.bare.stats(i).count(Outcome::Abandoned);
                if abandoned > 0 {
                    chart.draw_series(std::iter::once(Text::new(
                        format!("{abandoned} calls waiting, no answer"),
                        (*x + width, max_rate * 0.5),
                        ("sans-serif", 14),
                    )))?;
                }
            }
        }
        if bins.iter().any(|b| b.fallbacks > 0) {
            let points: Vec<(f64, f64)> = bins
                .iter()
                .enumerate()
                .flat_map(|(i, b)| {
                    let rate = b.fallbacks as f64 / width;
                    [(i as f64 * width, rate), ((i + 1) as f64 * width, rate)]
                })
                .collect();
            chart.draw_series(LineSeries::new(points, BLACK.stroke_width(2)))?;
            entries.push(("answered by the fallback".to_owned(), Mark::Line(BLACK, 2)));
        }
        if k == 1 {
            entries.extend(band_entries.iter().cloned());
        }
        legend(side, &entries)?;
    }
    root.present()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run.

/// No call starts this close to the end of a phase: it could reach the server after the next
/// phase's fault is set, and be counted in the wrong phase.
const HOLD: Duration = Duration::from_millis(5);

/// One caller: calls in a loop until the run ends, recording each call; gives up on a call
/// that has waited a whole phase.
async fn caller<S, B>(mut svc: S, rec: Arc<Recorder>, base: String, prefix: &'static str, id: usize)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
{
    let timeline = Arc::clone(&rec.timeline);
    let callers = lock(&rec.waiting).len();
    let mut phases = timeline.current.subscribe();
    // Spread the callers over one pause so they do not all call at once.
    tokio::time::sleep(Duration::from_millis(PAUSE.1 * id as u64 / callers as u64)).await;
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ id as u64;
    let mut n = 0;
    while Instant::now() < timeline.stop() {
        let phase = *phases.borrow_and_update();
        if phase + 1 < timeline.phases && Instant::now() + HOLD >= timeline.due_end(phase) {
            let _ = phases.wait_for(|p| *p > phase).await;
            continue;
        }
        let uri = if n % 2 == 0 {
            format!("{base}/{prefix}/catalog/{}", (id + n / 2) % CATALOG_PAGES)
        } else {
            format!("{base}/{prefix}/recommendations?user={id}")
        };
        let req = Request::get(uri)
            .body(Empty::new())
            .expect("a valid request");
        let start = rec.begin(id);
        let call = tokio::time::timeout(timeline.phase_len, send(&mut svc, req));
        let (outcome, fallback) = call.await.unwrap_or((Outcome::Abandoned, None));
        let end = rec.now();
        rec.end(
            id,
            Call {
                phase,
                start,
                end,
                outcome,
                fallback,
            },
        );
        n += 1;
        // xorshift64: a different pause each time, the same sequence on every run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let pause = PAUSE.0 + rng % (PAUSE.1 - PAUSE.0 + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn spawn_callers<S, B>(
    svc: S,
    rec: &Arc<Recorder>,
    base: &str,
    prefix: &'static str,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
    for id in 0..lock(&rec.waiting).len() {
        let rec = Arc::clone(rec);
        tasks.push(tokio::spawn(caller(
            svc.clone(),
            rec,
            base.to_owned(),
            prefix,
            id,
        )));
    }
}

async fn run(s: Settings) -> Result<(), BoxError> {
    let phases = phases(&s);
    let server = FlakyServer::builder()
        .fault(phases[0].fault.clone())
        .start()
        .await?;
    let base = server.url();

    let changes = Arc::new(Mutex::new(Vec::<Change>::new()));
    let timeline = Arc::new(Timeline::new(s.phase, phases.len()));
    let mut breaker = CircuitBreakerConfig::default();
    breaker.window = SlidingWindow::Count(WINDOW);
    breaker.minimum_calls = MINIMUM_CALLS;
    breaker.failure_rate = s.failure_rate;
    breaker.open_duration = s.open;
    breaker.permitted_probes = 3;
    let mut bulkhead = BulkheadConfig::default();
    bulkhead.max_concurrent = s.max_concurrent;
    let (heard, clock) = (Arc::clone(&changes), Arc::clone(&timeline));
    let policy = Policy::builder()
        .name("catalog")
        .http()
        .timeout(s.timeout)
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .fallback(StaleOrDefault::new()?)
        .listener(move |event: &Event<'_>| {
            if let Event::StateTransition { transition, .. } = event {
                lock(&heard).push(Change {
                    at: clock.now(),
                    from: transition.from,
                    to: transition.to,
                    calls: transition.window.calls,
                    failures: transition.window.failures,
                });
            }
        })
        .build()?;
    let handle = policy.circuit_breaker().expect("the policy has a breaker");

    let bare_rec = Arc::new(Recorder::new(&timeline, s.callers));
    let protected_rec = Arc::new(Recorder::new(&timeline, s.callers));
    let mut tasks = Vec::new();

    // Two clients of the same kind, each with its own connection pool.
    let bare = {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let rec = Arc::clone(&bare_rec);
        client.map_request(move |req| {
            rec.sent();
            req
        })
    };
    let protected = {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let rec = Arc::clone(&protected_rec);
        policy.layer(client.map_request(move |req| {
            rec.sent();
            req
        }))
    };
    spawn_callers(bare, &bare_rec, &base, "bare", &mut tasks);
    spawn_callers(protected, &protected_rec, &base, "protected", &mut tasks);

    let view = View {
        settings: &s,
        phases: &phases,
        bare: &bare_rec,
        protected: &protected_rec,
        breaker: &handle,
        changes: &changes,
        timeline: &timeline,
    };
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let mut drawn = 0;
    let mut phase = 0;
    let mut next_tick = timeline.t0 + Duration::from_secs(1);
    loop {
        let phase_end = timeline.due_end(phase);
        if next_tick <= phase_end {
            tokio::time::sleep_until(next_tick).await;
            next_tick += Duration::from_secs(1);
            let now = timeline.now();
            if terminal {
                let lines = view.table(phase, now);
                let mut frame = String::new();
                if drawn > 0 {
                    let _ = write!(frame, "\x1b[{drawn}A");
                }
                for line in &lines {
                    let _ = writeln!(frame, "\x1b[2K{line}");
                }
                drawn = lines.len();
                out.write_all(frame.as_bytes())?;
            } else {
                for line in view.plain(phase, now) {
                    writeln!(out, "{line}")?;
                }
            }
            out.flush()?;
        } else {
            tokio::time::sleep_until(phase_end).await;
            phase += 1;
            if phase == phases.len() {
                break;
            }
            server.set(phases[phase].fault.clone());
            timeline.begin(phase);
        }
    }
    for task in tasks {
        task.await?;
    }
    writeln!(out)?;
    write!(out, "{}", view.summary())?;
    if let Some(path) = &s.plot {
        plot(
            path,
            &view,
            &bare_rec.all_calls(),
            &protected_rec.all_calls(),
        )?;
        writeln!(out, "\nChart written to {}", path.display())?;
    }
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(Some(settings)) => settings,
        Ok(None) => {
            print!("{HELP}");
            return;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(settings).await {
        // Piped into `head` or a pager that quit: nothing more to say.
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return;
        }
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
