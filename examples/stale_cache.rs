//! `cargo run --example stale_cache`: `HttpStaleCache` (stale-if-error) on its own, as the
//! fallback of a hyper client behind `Policy::builder().http()`, against the testkit's flaky
//! server on `127.0.0.1`. One URL, two tenants (the `x-tenant` header is the cache key's user
//! part), a `max_stale` of 2 s:
//!
//! 1. the server is up: tenant `a`'s response is kept;
//! 2. the server goes down (`503`): tenant `a` gets the kept response, stale, with an `Age`
//!    header and the `Stale` extension carrying its exact age;
//! 3. tenant `b` asks for the same URL: nothing was kept for `b`, so the `503` goes through;
//! 4. past `max_stale`, tenant `a` is not served the old response either.
//!
//! Ends by itself in about two and a half seconds.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::fallback::Stale;
use palisade::http::HttpStaleCache;
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer};
use tokio::time::{Instant, sleep_until};
use tower::{BoxError, Layer, ServiceExt};

/// The oldest a kept response may be and still be served.
const MAX_STALE: Duration = Duration::from_secs(2);

/// What the caller saw of one call.
struct Answer {
    status: StatusCode,
    age_header: Option<String>,
    stale: Option<Stale>,
    body: Bytes,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        write!(f, "{} {:?}", self.status, body.trim_end())?;
        if let Some(age) = &self.age_header {
            write!(f, ", Age: {age}")?;
        }
        if let Some(stale) = self.stale {
            write!(f, ", Stale {{ age: {} ms }}", stale.age.as_millis())?;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FlakyServer::start().await?;
    let cache = HttpStaleCache::builder()
        .max_stale(MAX_STALE)
        // One entry per tenant: a response is only ever served to the tenant it was made for.
        // A request without the header is not cached at all.
        .user_key(|head| Some(head.headers.get("x-tenant")?.to_str().ok()?.to_owned()))
        .build()?;
    let policy = Policy::builder()
        .name("catalog")
        .http()
        .timeout(Duration::from_millis(500))
        .fallback(cache.clone())
        .build()?;
    let client = policy.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let url = format!("{}/catalog/7", server.url());
    let call = |tenant: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let request = Request::get(url)
                .header("x-tenant", tenant)
                .body(Empty::new())?;
            let response = client.oneshot(request).await?;
            let status = response.status();
            let age_header = response
                .headers()
                .get("age")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let stale = response.extensions().get::<Stale>().copied();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>(Answer {
                status,
                age_header,
                stale,
                body,
            })
        }
    };

    println!("server up: tenant a reads {url}");
    let fresh = call("a").await?;
    let kept_at = Instant::now();
    println!("  tenant a: {fresh} (fresh)");
    assert_eq!(fresh.status, 200);
    assert!(fresh.stale.is_none());
    assert_eq!(cache.stats().entries, 1);
    println!("  the cache keeps it: {} entry", cache.stats().entries);

    println!("server down: every request gets a 503");
    server.set(Fault::status(503));
    sleep_until(kept_at + Duration::from_millis(1_100)).await;
    let stale = call("a").await?;
    println!("  tenant a: {stale}");
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, fresh.body);
    assert_eq!(stale.age_header.as_deref(), Some("1"));
    let age = stale.stale.expect("marked stale").age;
    assert!(
        age >= Duration::from_millis(1_100) && age < MAX_STALE,
        "{age:?}"
    );

    let other = call("b").await?;
    println!("  tenant b, same URL: {other} (nothing kept for b)");
    assert_eq!(other.status, 503);
    assert!(other.stale.is_none());

    sleep_until(kept_at + MAX_STALE + Duration::from_millis(100)).await;
    let expired = call("a").await?;
    println!(
        "  tenant a, {} ms after it was kept (max_stale {} ms): {expired} (too old)",
        kept_at.elapsed().as_millis(),
        MAX_STALE.as_millis()
    );
    assert_eq!(expired.status, 503);
    assert!(expired.stale.is_none());

    let stats = cache.stats();
    assert_eq!((stats.stored, stats.served), (1, 1));
    println!(
        "the cache stored {} response and served it stale {} time; the server saw {} requests",
        stats.stored,
        stats.served,
        server.stats().requests
    );
    Ok(())
}
