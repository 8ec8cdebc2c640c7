//! Shared bench harness: one task and two contended tasks through `ready().call()`, a counting
//! allocator, and a table of medians as ratios to a baseline measured in the same run.
#![allow(dead_code)]
// Wall-clock time is what a benchmark measures.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::{Service, ServiceExt};

mod counting;
// (The `instructions` bench keeps the system allocator: its counts are of palisade's code.)
#[allow(unused_imports)]
pub use counting::{Counting, allocs};

pub fn runtime1() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The outcome of a dependency that fails one call in 50 on each thread (a reset
/// connection, an error that allocates nothing): a healthy dependency's occasional error. A
/// breaker's window then holds failures (2 %, far below any threshold), so its closed path is
/// not the one a window of nothing but successes takes.
pub fn flaky_result() -> Result<(), std::io::Error> {
    thread_local! {
        static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let n = CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    if n.is_multiple_of(50) {
        Err(std::io::ErrorKind::ConnectionReset.into())
    } else {
        Ok(())
    }
}

/// `S` called through a clone made for each call and dropped after it (`svc.clone().oneshot`),
/// as handlers that clone a client per request call it.
#[derive(Clone)]
pub struct ClonePerCall<S>(pub S);

impl<S: Service<Req> + Clone, Req> Service<Req> for ClonePerCall<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = tower::util::Oneshot<S, Req>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.0.clone().oneshot(req)
    }
}

/// A no-op service that answers [`flaky_result`].
pub fn flaky() -> impl Service<
    (),
    Response = (),
    Error = std::io::Error,
    Future = std::future::Ready<Result<(), std::io::Error>>,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|()| std::future::ready(flaky_result()))
}

/// Drives `iters` calls through `svc`, awaiting each.
async fn drive<S, Req>(svc: &mut S, req: &Req, iters: u64)
where
    S: Service<Req>,
    Req: Clone,
{
    for _ in 0..iters {
        let ready = svc.ready().await.ok();
        if let Some(ready) = ready {
            let _ = black_box(ready.call(req.clone()).await.is_ok());
        }
    }
}

/// Allocations per call of one case: with one task, and with two tasks on two threads sharing
/// one instance (each thread counts its own).
pub type Allocs = (String, f64, f64);

/// Measures one case: one task, and two tasks on two worker threads sharing one instance
/// (reported per call per task, so 1.0x is perfect scaling). Also counts allocations per call,
/// both ways.
pub fn case<S, Req>(
    c: &mut Criterion,
    groups: (&str, &str),
    allocs_out: &mut Vec<Allocs>,
    name: &str,
    svc: S,
    req: Req,
) where
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Future: Send,
    Req: Clone + Send + Sync + 'static,
{
    let rt1 = runtime1();
    // Allocations per call, after a warm-up.
    {
        let mut s = svc.clone();
        let one_req = req.clone();
        let per_call = rt1.block_on(async move {
            drive(&mut s, &one_req, 1_000).await;
            let before = allocs();
            drive(&mut s, &one_req, 10_000).await;
            (allocs() - before) as f64 / 10_000.0
        });
        // Two threads at once, each counting its own calls' allocations.
        let counted: u64 = on_two_threads(&svc, &req, |mut s, req, barrier| {
            runtime1().block_on(async move {
                drive(&mut s, &req, 1_000).await;
                barrier.wait();
                let before = allocs();
                drive(&mut s, &req, 10_000).await;
                allocs() - before
            })
        })
        .into_iter()
        .sum();
        allocs_out.push((name.to_owned(), per_call, counted as f64 / 20_000.0));
    }
    let mut one = c.benchmark_group(groups.0);
    one.bench_function(name, |b| {
        b.to_async(&rt1).iter_custom(|iters| {
            let mut s = svc.clone();
            let req = req.clone();
            async move {
                let start = Instant::now();
                drive(&mut s, &req, iters).await;
                start.elapsed()
            }
        })
    });
    one.finish();
    let mut two = c.benchmark_group(groups.1);
    two.bench_function(name, |b| {
        b.iter_custom(|iters| {
            on_two_threads(&svc, &req, |mut s, req, barrier| {
                runtime1().block_on(async move {
                    barrier.wait();
                    let start = Instant::now();
                    drive(&mut s, &req, iters).await;
                    start.elapsed()
                })
            })
            .into_iter()
            .max()
            .unwrap_or(Duration::ZERO)
        })
    });
    two.finish();
}

/// Runs `run` on two OS threads at once, each with its own clone of `svc` and of `req`, and a
/// barrier to start the measured part together; gives both results.
fn on_two_threads<S, Req, T>(
    svc: &S,
    req: &Req,
    run: impl Fn(S, Req, &Barrier) -> T + Sync,
) -> Vec<T>
where
    S: Clone + Send,
    Req: Clone + Send,
    T: Send,
{
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (s, req, barrier, run) = (svc.clone(), req.clone(), &barrier, &run);
                scope.spawn(move || run(s, req, barrier))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

pub fn configure() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args()
}

fn median_ns(group: &str, id: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"));
    let path = dir
        .join("criterion")
        .join(group.replace('/', "_"))
        .join(id)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Prints medians, ratios to `baselines` and the contention ratio for every case.
pub fn report(one: &str, two: &str, names: &[&str], baselines: &[&str], allocs: &[Allocs]) {
    let mut head = format!(
        "\n{:<44} {:>9} {:>9} {:>8}",
        "case", "1 task ns", "2 task ns", "2/1"
    );
    for b in baselines {
        head.push_str(&format!(" {:>14}", format!("/ {b}")));
    }
    head.push_str(&format!(" {:>8} {:>8}", "allocs", "allocs 2"));
    println!("{head}");
    for name in names {
        let (Some(m1), m2) = (median_ns(one, name), median_ns(two, name)) else {
            continue;
        };
        let mut line = format!(
            "{:<44} {:>9.1} {:>9} {:>8}",
            name,
            m1,
            m2.map_or("-".into(), |m| format!("{m:.1}")),
            m2.map_or("-".into(), |m| format!("{:.2}x", m / m1)),
        );
        for b in baselines {
            let r = median_ns(one, b).map_or("-".into(), |base| format!("{:.2}x", m1 / base));
            line.push_str(&format!(" {r:>14}"));
        }
        let (a, a2) = allocs
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(("-".into(), "-".into()), |(_, a, a2)| {
                (format!("{a:.2}"), format!("{a2:.2}"))
            });
        line.push_str(&format!(" {a:>8} {a2:>8}"));
        println!("{line}");
    }
}

/// One case of an interleaved comparison: runs `calls` calls and says how long they took.
pub struct Runner<'a> {
    name: &'static str,
    run: Box<dyn FnMut(u64) -> Duration + 'a>,
}

/// A case for [`interleaved`], driven on `rt` (one task).
pub fn runner<'a, S, Req>(
    rt: &'a tokio::runtime::Runtime,
    name: &'static str,
    mut svc: S,
    req: Req,
) -> Runner<'a>
where
    S: Service<Req> + 'a,
    Req: Clone + 'a,
{
    Runner {
        name,
        run: Box::new(move |calls| {
            rt.block_on(async {
                let start = Instant::now();
                drive(&mut svc, &req, calls).await;
                start.elapsed()
            })
        }),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Ratios that drift on a shared VM cannot disturb: the baseline and every case run in turn,
/// `calls` calls each, for `rounds` rounds (forwards, then backwards, so that a slow drift
/// weighs on both sides alike); each round gives each case a ratio to the baseline of that
/// round. Prints the median time per call, the median ratio and its interquartile range.
pub fn interleaved(
    mut baseline: Runner<'_>,
    mut cases: Vec<Runner<'_>>,
    rounds: usize,
    calls: u64,
) {
    let n = cases.len() + 1;
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); n];
    let per_call = |d: Duration| d.as_nanos() as f64 / calls as f64;
    // One warm-up round, not counted.
    (baseline.run)(calls);
    for case in &mut cases {
        (case.run)(calls);
    }
    for round in 0..rounds {
        for k in 0..n {
            let j = if round % 2 == 0 { k } else { n - 1 - k };
            let d = if j == 0 {
                (baseline.run)(calls)
            } else {
                (cases[j - 1].run)(calls)
            };
            ns[j].push(per_call(d));
        }
    }
    println!(
        "\nInterleaved: {rounds} rounds of {calls} calls per case, one task; ratio to {} per round",
        baseline.name
    );
    println!(
        "{:<44} {:>9} {:>8} {:>17}",
        "case", "ns/call", "ratio", "ratio q1 - q3"
    );
    let mut base = ns[0].clone();
    base.sort_by(f64::total_cmp);
    println!("{:<44} {:>9.1}", baseline.name, quantile(&base, 0.5));
    for (i, case) in cases.iter().enumerate() {
        let mut times = ns[i + 1].clone();
        times.sort_by(f64::total_cmp);
        let mut ratios: Vec<f64> = ns[i + 1].iter().zip(&ns[0]).map(|(c, b)| c / b).collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "{:<44} {:>9.1} {:>7.2}x {:>8.2}x - {:.2}x",
            case.name,
            quantile(&times, 0.5),
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
        );
    }
}
