//! `cargo run --example policy_from_toml`: a `PolicyConfig` read from TOML (feature `serde`;
//! durations written as `"250ms"`), built into a Policy for a hyper client and used against the
//! testkit's flaky server on `127.0.0.1`, where its breaker opens as configured. Then two bad
//! configurations: one that TOML parsing refuses (the message names the dotted field, `circuit_breaker.failure_rate`, and the rule),
//! and one changed after parsing that `build()` refuses with a `ConfigError` whose `field()` is
//! `circuit_breaker.failure_rate`. Ends by itself in well under a second.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::circuit_breaker::{SlidingWindow, State};
use palisade::error::{ErrorKind, error_kind};
use palisade::policy::{Policy, PolicyConfig};
use palisade::testkit::{Fault, FlakyServer};
use tower::{BoxError, Layer, ServiceExt};

/// The configuration, as it would sit in a service's config file.
const CONFIG: &str = r#"
name = "inventory"

[timeout]
timeout = "250ms"

[bulkhead]
max_concurrent = 8

[circuit_breaker]
window = { count = 20 }
minimum_calls = 10
failure_rate = 0.5
open_duration = "5s"
"#;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    println!("the configuration:{CONFIG}");
    let config: PolicyConfig = toml::from_str(CONFIG)?;
    let breaker = config
        .circuit_breaker
        .as_ref()
        .expect("a [circuit_breaker]");
    assert_eq!(breaker.window, SlidingWindow::Count(20));
    assert_eq!(breaker.open_duration, Duration::from_secs(5));
    let timeout = config.timeout.as_ref().expect("a [timeout]").timeout;
    let max_concurrent = config
        .bulkhead
        .as_ref()
        .expect("a [bulkhead]")
        .max_concurrent;
    println!(
        "parsed: name {:?}; timeout {timeout:?}; bulkhead max_concurrent {max_concurrent}; \
         circuit_breaker window {:?}, minimum_calls {}, failure_rate {}, open_duration {:?}",
        config.name,
        breaker.window,
        breaker.minimum_calls,
        breaker.failure_rate,
        breaker.open_duration,
    );

    let policy = Policy::builder().config(config.clone()).http().build()?;
    let cb = policy.circuit_breaker().expect("a breaker");
    let bulkhead = policy.bulkhead().expect("a bulkhead");
    assert_eq!((policy.name(), bulkhead.max_concurrent()), ("inventory", 8));
    println!(
        "built: policy {:?}, bulkhead {:?} of {}, breaker {:?}",
        policy.name(),
        bulkhead.name(),
        bulkhead.max_concurrent(),
        cb.name()
    );

    // In use: a server failing every request; the breaker opens at its minimum of 10 calls.
    let server = FlakyServer::builder()
        .fault(Fault::status(503))
        .start()
        .await?;
    let client = policy.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let mut sent = 0;
    let rejected = loop {
        let request = Request::get(server.url()).body(Empty::new())?;
        match client.clone().oneshot(request).await {
            Ok(response) => {
                response.into_body().collect().await?;
                sent += 1;
            }
            Err(err) => break err,
        }
        assert!(sent <= 10, "the breaker should have opened");
    };
    assert!(matches!(
        error_kind(rejected.as_ref()),
        ErrorKind::CircuitOpen(_)
    ));
    assert_eq!((sent, cb.state()), (10, State::Open));
    println!(
        "in use: against a server failing every request, the breaker opened after {sent} \
         calls; the next: {rejected}"
    );

    println!("a bad file: failure_rate = 1.5");
    let bad = CONFIG.replace("failure_rate = 0.5", "failure_rate = 1.5");
    let err = toml::from_str::<PolicyConfig>(&bad).expect_err("refused when parsed");
    let message = err.to_string();
    println!(
        "  toml::from_str refuses it:\n    {}",
        message.trim_end().replace('\n', "\n    ")
    );
    assert!(
        message.contains("`circuit_breaker.failure_rate`"),
        "{message}"
    );

    println!("a bad value set after parsing (say, an override from the environment): 0");
    let mut overridden = config;
    if let Some(breaker) = overridden.circuit_breaker.as_mut() {
        breaker.failure_rate = 0.0;
    }
    let err = Policy::builder()
        .config(overridden)
        .http()
        .build()
        .expect_err("refused when built");
    println!("  build() refuses it: field {:?}: {err}", err.field());
    assert_eq!(err.field(), "circuit_breaker.failure_rate");
    Ok(())
}
