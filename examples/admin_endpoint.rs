//! `cargo run --example admin_endpoint --features serde`: a tiny admin endpoint that lists every
//! circuit breaker, bulkhead and stale cache of a service, with state and figures, as JSON.
//!
//! Two policies register in a [`Registry`]; a minimal HTTP/1.1 server on a loopback port answers
//! `GET /admin/resilience` with the registry's snapshot. The example then fetches it once
//! itself, prints the response, and exits.

use std::time::Duration;

use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
use palisade::fallback::StaleCache;
use palisade::observe::Registry;
use palisade::policy::Policy;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tower::{BoxError, Layer, ServiceExt, service_fn};

/// Answers one request on `stream`: the registry's snapshot for `GET /admin/resilience`,
/// 404 for anything else.
async fn serve(stream: TcpStream, registry: Registry) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await?;
    // Skip the headers.
    let mut line = String::new();
    while stream.read_line(&mut line).await? > 2 {
        line.clear();
    }
    let (status, body) = if request_line.starts_with("GET /admin/resilience ") {
        let json =
            serde_json::to_string_pretty(&registry.snapshot()).map_err(std::io::Error::other)?;
        ("200 OK", json)
    } else {
        ("404 Not Found", "{\"error\":\"not found\"}".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(response.as_bytes()).await?;
    stream.get_mut().shutdown().await
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let registry = Registry::new();

    // "inventory": the whole stack, with a stale cache; "pricing": a breaker alone.
    let mut breaker = CircuitBreakerConfig::default();
    breaker.window = SlidingWindow::Count(10);
    breaker.minimum_calls = 4;
    breaker.open_duration = Duration::from_secs(30);
    let cache = StaleCache::builder(|item: &u32| Some(*item))
        .size(|s: &String| s.len())
        .build()?;
    let inventory = Policy::builder()
        .name("inventory")
        .timeout(Duration::from_millis(200))
        .bulkhead(BulkheadConfig::default())
        .circuit_breaker(breaker.clone())
        .fallback(cache)
        .build()?;
    let pricing = Policy::builder()
        .name("pricing")
        .circuit_breaker(breaker)
        .build()?;
    registry.register(&inventory).register(&pricing);
    if let Some(cache) = inventory.fallback() {
        registry.register_stale_cache("inventory", cache);
    }

    // Some traffic: inventory is healthy, pricing is down (its breaker opens).
    let healthy = service_fn(|item: u32| async move { Ok::<_, BoxError>(format!("item {item}")) });
    let down = service_fn(|_: u32| async { Err::<String, _>(BoxError::from("pricing is down")) });
    let inventory_client = inventory.layer(healthy);
    let pricing_client = pricing.layer(down);
    for item in 0..6 {
        let _ = inventory_client.clone().oneshot(item).await;
        let _ = pricing_client.clone().oneshot(item).await;
    }

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn({
        let registry = registry.clone();
        async move {
            let (stream, _) = listener.accept().await?;
            serve(stream, registry).await
        }
    });

    let mut client = TcpStream::connect(addr).await?;
    client
        .write_all(
            b"GET /admin/resilience HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut response)).await??;
    server.await??;
    println!("GET http://{addr}/admin/resilience\n\n{response}");
    Ok(())
}
