//! The README's main command, `cargo run --example demo`, run in short phases so that it cannot
//! rot: it must end by itself, exit 0 and print its summary, in plain text when piped.
//!
//! `cargo test` builds the examples before it runs any test and releases its lock on the target
//! directory, so the nested `cargo run` below, given the same features and profile as this
//! build, finds the demo fresh and only runs it (about 6 s).

use std::process::Command;

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

#[test]
fn demo_runs_five_short_phases_and_prints_a_plain_summary_when_piped() {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--example", "demo"]);
    let features = features();
    if !features.is_empty() {
        cargo.arg("--features").arg(features.join(","));
    }
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    cargo.args(["--", "--phase-secs", "1"]);

    let output = cargo.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
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
    let protected_p99 = hanging
        .strip_prefix("bare p99 1.0 s, protected p99 ")
        .and_then(|rest| rest.split_once(". "))
        .map(|(p99, _)| p99);
    assert!(
        protected_p99.is_some_and(|p99| p99.ends_with(" ms")),
        "bare waits the whole phase, protected at most about its 200 ms timeout:\n{hanging}"
    );
    assert!(
        summary.contains("the breaker opened"),
        "the breaker opens:\n{summary}"
    );
}
