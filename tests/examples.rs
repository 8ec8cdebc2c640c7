//! The examples, run as a reader would run them, so that they cannot rot: each must end by
//! itself, exit 0 and print the line that shows its point. The examples assert their own key
//! claims too (the breaker opened, the bulkhead held), so a regression fails them here.
//!
//! `cargo test` builds the examples before it runs any test and releases its lock on the target
//! directory, so the nested `cargo run` below, given the same features and profile as this
//! build, finds each example fresh and only runs it: about 6 s for the demo (in 1 s phases),
//! 1 to 3 s for each of the others, run in parallel.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The longest an example may take, building included, before its test fails instead of
/// hanging.
const LIMIT: Duration = Duration::from_secs(300);

/// The features this test was built with, for the nested `cargo run` to build the same.
fn features() -> Vec<&'static str> {
    let all = [
        ("serde", cfg!(feature = "serde")),
        ("http", cfg!(feature = "http")),
        ("grpc", cfg!(feature = "grpc")),
        ("reqwest", cfg!(feature = "reqwest")),
        ("metrics", cfg!(feature = "metrics")),
        ("tracing", cfg!(feature = "tracing")),
        ("testkit", cfg!(feature = "testkit")),
    ];
    all.into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
}

/// Runs `cargo run --quiet --example <name> -- <args>` with this build's features and profile,
/// checks that it exits 0 within [`LIMIT`], and returns what it printed.
fn run_example(name: &str, args: &[&str]) -> String {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--example", name]);
    let features = features();
    if !features.is_empty() {
        cargo.arg("--features").arg(features.join(","));
    }
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    cargo.arg("--").args(args);
    cargo.stdout(Stdio::piped()).stderr(Stdio::piped());

    let mut child = cargo.spawn().expect("cargo runs");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let tick = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cargo can be waited on") {
            break Some(status);
        }
        if waited >= LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(tick);
        waited += tick;
    };
    let stdout = stdout.join().expect("stdout read");
    let stderr = stderr.join().expect("stderr read");
    match status {
        Some(status) => assert!(
            status.success(),
            "example {name} failed ({status}):\n{stdout}\n{stderr}"
        ),
        None => panic!("example {name} still running after {LIMIT:?}:\n{stdout}\n{stderr}"),
    }
    stdout
}

/// Asserts that `stdout` has each of `lines` (as parts of its lines).
fn assert_prints(name: &str, stdout: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            stdout.contains(line),
            "example {name} should print {line:?}:\n{stdout}"
        );
    }
}

/// Whether the demo's paragraph on its hanging phase (of 1 s) shows the bare client waiting out
/// the hang and the protected one not: a bare p99 of the phase, 1.0 s, or up to 1.5 s on a
/// loaded machine (the calls end when the demo gives up on them, a little late when busy), and
/// a protected p99 in milliseconds.
fn waits_out_the_hang(hanging: &str) -> bool {
    let Some((bare, rest)) = hanging
        .strip_prefix("bare p99 ")
        .and_then(|rest| rest.split_once(" s, protected p99 "))
    else {
        return false;
    };
    let bare_waited = bare
        .parse::<f64>()
        .is_ok_and(|secs| (1.0..=1.5).contains(&secs));
    let protected = rest.split_once(". ").map(|(p99, _)| p99);
    bare_waited && protected.is_some_and(|p99| p99.ends_with(" ms"))
}

#[test]
fn the_hanging_phase_check_allows_for_a_late_bare_client_only() {
    let paragraph = |bare: &str, protected: &str| {
        format!("bare p99 {bare}, protected p99 {protected}. Bare: 8 calls got no answer.")
    };
    for bare in ["1.0 s", "1.1 s", "1.5 s"] {
        assert!(waits_out_the_hang(&paragraph(bare, "201 ms")), "{bare}");
    }
    for (bare, protected) in [
        ("0.9 s", "201 ms"),
        ("999 ms", "201 ms"),
        ("1.6 s", "201 ms"),
        ("1.0 s", "1.0 s"),
    ] {
        let paragraph = paragraph(bare, protected);
        assert!(!waits_out_the_hang(&paragraph), "{paragraph}");
    }
}

#[test]
fn demo_runs_five_short_phases_and_prints_a_plain_summary_when_piped() {
    let stdout = run_example("demo", &["--phase-secs", "1"]);
    assert!(
        !stdout.contains('\x1b'),
        "piped output has no escape codes:\n{stdout}"
    );

    let summary = stdout
        .split_once("\nSummary: ")
        .map(|(_, summary)| summary)
        .unwrap_or_else(|| panic!("a summary:\n{stdout}"));
    for phase in ["healthy", "failing", "hanging", "slow", "recovering"] {
        let line = format!("\n  {phase} phase: bare p99 ");
        assert!(
            summary.contains(&line),
            "a summary line for the {phase} phase:\n{summary}"
        );
        // A plain line block per second names the phase in force.
        assert!(
            stdout.contains(&format!(", {phase} (")),
            "a live line for the {phase} phase:\n{stdout}"
        );
    }
    // What the demo is there to show: the bare client waits out the hang, the protected one
    // does not, and the breaker opens.
    let hanging = summary
        .split_once("hanging phase: ")
        .and_then(|(_, rest)| rest.split_once("  slow phase:"))
        .map(|(hanging, _)| hanging)
        .expect("the hanging phase's paragraph");
    assert!(
        waits_out_the_hang(hanging),
        "bare waits the whole phase, protected at most about its 200 ms timeout:\n{hanging}"
    );
    assert!(
        summary.contains("the breaker opened"),
        "the breaker opens:\n{summary}"
    );
}

#[test]
fn reqwest_circuit_breaker_opens_on_the_burst_rejects_at_once_and_closes_once_healed() {
    let name = "reqwest_circuit_breaker";
    let stdout = run_example(name, &[]);
    assert_prints(
        name,
        &stdout,
        &[
            "the breaker opened after 5 failures",
            "20 calls rejected in ",
            "the server saw 0 of them",
            "breaker: HalfOpen -> Closed (ProbesSucceeded)",
            "the breaker closed; calls flow again",
        ],
    );
}

#[test]
fn hyper_policy_ends_a_hang_at_the_timeout_and_a_slow_body_at_the_deadline() {
    let name = "hyper_policy";
    let stdout = run_example(name, &[]);
    assert_prints(
        name,
        &stdout,
        &[
            "request timed out after 300ms",
            "request timed out after 800ms",
            "bulkhead permits taken while the body streams: 1",
            "the breaker counted 3 calls, 2 failed",
        ],
    );
}

#[test]
fn tonic_policy_propagates_grpc_timeout_counts_trailers_and_tells_rejections_apart() {
    let name = "tonic_policy";
    let stdout = run_example(name, &[]);
    assert_prints(
        name,
        &stdout,
        &[
            "lowered to grpc-timeout: 250000u",
            "the breaker opened after 5 UNAVAILABLE calls",
            "head-only check: 5 calls, 0 failures; the breaker stayed Closed",
            "error_kind: Inner",
            "error_kind: CircuitOpen",
        ],
    );
}

#[test]
fn api_gateway_partial_returns_the_order_without_delivery_and_a_stale_ticket() {
    let name = "api_gateway_partial";
    let stdout = run_example(name, &[]);
    let part = |heading: &str| {
        stdout
            .split_once(heading)
            .and_then(|(_, rest)| rest.lines().nth(1))
            .unwrap_or_else(|| panic!("a result under {heading:?}:\n{stdout}"))
            .to_owned()
    };
    let all_up = part("all up:");
    assert!(all_up.contains(r#"delivery "/deliveries/42""#), "{all_up}");
    let delivery_down = part("delivery down (it hangs):");
    assert!(
        delivery_down.contains(r#"order "/orders/42""#)
            && delivery_down.ends_with("no delivery details"),
        "{delivery_down}"
    );
    let kitchen_down = part("kitchen down (it answers 503):");
    assert!(
        kitchen_down.contains(r#"ticket "/tickets/42" (stale: "#),
        "{kitchen_down}"
    );
}

#[test]
fn stale_cache_serves_its_tenant_only_and_only_until_max_stale() {
    let name = "stale_cache";
    let stdout = run_example(name, &[]);
    assert_prints(
        name,
        &stdout,
        &[
            "Age: 1, Stale { age: ",
            "503 Service Unavailable \"testkit: injected 503\" (nothing kept for b)",
            "(too old)",
        ],
    );
}

#[test]
fn bulkhead_fail_fast_rejects_the_rest_at_once_then_queues_them_with_max_wait() {
    let name = "bulkhead_fail_fast";
    let stdout = run_example(name, &[]);
    assert_prints(
        name,
        &stdout,
        &[
            "4 answered (the slowest after ",
            "12 rejected with BulkheadFull",
            "16 answered, in waves: ",
            "at most 4 in flight at the server",
        ],
    );
}

#[test]
fn policy_from_toml_builds_the_policy_and_names_the_bad_field() {
    let name = "policy_from_toml";
    let stdout = run_example(name, &[]);
    assert_prints(
        name,
        &stdout,
        &[
            "the breaker opened after 10 calls",
            // Parsing names the field with its section, as build() does.
            "toml::from_str refuses it:\n    invalid configuration: \
             `circuit_breaker.failure_rate` must be a fraction in (0, 1], got 1.5",
            r#"field "circuit_breaker.failure_rate""#,
        ],
    );
}
