//! Timeout cost per call, against a bare `service_fn` and tower's `Timeout`, in one run.
//!
//! `cargo bench --bench timeout` prints a table of medians and ratios at the end.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use palisade::timeout::TimeoutLayer;
use tower::{Layer, service_fn};

#[global_allocator]
static ALLOC: support::Counting = support::Counting;

const ONE: &str = "timeout/1_task";
const TWO: &str = "timeout/2_tasks";

fn main() {
    let mut c = support::configure();
    let mut allocs = Vec::new();
    let bare = service_fn(|()| async { Ok::<_, Infallible>(()) });
    let second = Duration::from_secs(1);
    let names = [
        "bare",
        "tower_timeout",
        "palisade_timeout",
        "palisade_timeout_per_request",
        "palisade_timeout_max",
    ];
    support::case(&mut c, (ONE, TWO), &mut allocs, "bare", bare, ());
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "tower_timeout",
        tower::timeout::TimeoutLayer::new(second).layer(bare),
        (),
    );
    let layer = TimeoutLayer::builder().timeout(second).build().unwrap();
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "palisade_timeout",
        layer.layer(bare),
        (),
    );
    let per_request = TimeoutLayer::builder()
        .timeout(second)
        .per_request(|_: &()| None)
        .build()
        .unwrap();
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "palisade_timeout_per_request",
        per_request.layer(bare),
        (),
    );
    let none = TimeoutLayer::builder()
        .timeout(Duration::MAX)
        .build()
        .unwrap();
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "palisade_timeout_max",
        none.layer(bare),
        (),
    );
    c.final_summary();
    support::report(ONE, TWO, &names, &["bare", "tower_timeout"], &allocs);
}
