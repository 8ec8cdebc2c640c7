//! `cargo run --example api_gateway_partial`: the API gateway of *Microservices Patterns*
//! (ch. 8), whose `getOrderDetails` calls the order, kitchen and delivery services at once and
//! composes their answers. Each service is a testkit flaky server on `127.0.0.1`, and the
//! gateway calls each through its own `Policy::builder().http()`, so that one sick service
//! cannot take the others (or the gateway) down with it:
//!
//! * **order** is essential: no fallback; if it fails, `getOrderDetails` fails;
//! * **kitchen** (the ticket's status) falls back to the last good answer, from an
//!   `HttpStaleCache`, served stale and marked with its age;
//! * **delivery** is optional: its fallback is `None`, and the order comes back without
//!   delivery details (a partial result).
//!
//! Prints the composed result with every service up, with delivery down (it hangs: its 200 ms
//! timeout ends the call) and with kitchen down (it answers `503`). The testkit server answers
//! a healthy request with its path, which stands in for each service's data. Ends by itself in
//! about a second and a half.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
use palisade::fallback::{self, FallbackLayer, Stale};
use palisade::http::{HttpStaleCache, Tracked};
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt};

/// Each service's timeout.
const TIMEOUT: Duration = Duration::from_millis(200);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;
/// A protected HTTP client: a request in, a response with a tracked body out.
type Protected = BoxCloneSyncService<Request<Empty<Bytes>>, Response<Tracked<Incoming>>, BoxError>;

/// What the kitchen said about the order's ticket, and whether it came from the stale cache.
#[derive(Debug, Clone)]
struct Ticket {
    status: String,
    stale: Option<(Duration, String)>,
}

/// The order's delivery details.
#[derive(Debug, Clone)]
struct Delivery {
    info: String,
}

/// What `getOrderDetails` returns: the order, and what could be had of the rest.
#[derive(Debug)]
struct OrderDetails {
    order: String,
    ticket: Option<Ticket>,
    delivery: Option<Delivery>,
}

impl fmt::Display for OrderDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {:?}", self.order)?;
        match &self.ticket {
            Some(Ticket {
                status,
                stale: None,
            }) => write!(f, ", ticket {status:?}")?,
            Some(Ticket {
                status,
                stale: Some((age, header)),
            }) => write!(
                f,
                ", ticket {status:?} (stale: {} ms old, Age: {header})",
                age.as_millis()
            )?,
            None => write!(f, ", ticket unknown")?,
        }
        match &self.delivery {
            Some(delivery) => write!(f, ", delivery {:?}", delivery.info),
            None => write!(f, ", no delivery details"),
        }
    }
}

/// A breaker per service: opens at half of its last 10 calls failed, at least 5.
fn breaker() -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(10);
    config.minimum_calls = 5;
    config.open_duration = Duration::from_secs(1);
    config
}

/// One service the gateway calls: its base URL, and a client to it behind its own policy.
#[derive(Clone)]
struct Downstream {
    client: Protected,
    url: String,
}

impl Downstream {
    fn new(client: Protected, server: &FlakyServer) -> Self {
        Self {
            client,
            url: server.url(),
        }
    }

    /// GET `path`: the response with its whole body.
    async fn get(&self, path: String) -> Result<Response<Bytes>, BoxError> {
        let request = Request::get(format!("{}{path}", self.url)).body(Empty::new())?;
        let response = self.client.clone().oneshot(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

struct ApiGateway {
    order: Downstream,
    kitchen: Downstream,
    delivery: BoxCloneSyncService<u64, Option<Delivery>, BoxError>,
}

impl ApiGateway {
    fn new(
        client: &HttpClient,
        order: &FlakyServer,
        kitchen: &FlakyServer,
        delivery: &FlakyServer,
    ) -> Result<Self, BoxError> {
        // Order: essential, so no fallback.
        let order_policy = Policy::builder()
            .name("order")
            .http()
            .timeout(TIMEOUT)
            .circuit_breaker(breaker())
            .build()?;
        // Kitchen: the last good ticket status, for up to a minute.
        let tickets = HttpStaleCache::builder()
            .max_stale(Duration::from_secs(60))
            .build()?;
        let kitchen_policy = Policy::builder()
            .name("kitchen")
            .http()
            .timeout(TIMEOUT)
            .circuit_breaker(breaker())
            .fallback(tickets)
            .build()?;
        // Delivery: optional. Its policy protects the call; a fallback of `None` around it
        // turns any failure into "no delivery details".
        let delivery_policy = Policy::builder()
            .name("delivery")
            .http()
            .timeout(TIMEOUT)
            .circuit_breaker(breaker())
            .build()?;
        let delivery = Downstream::new(
            Protected::new(delivery_policy.layer(client.clone())),
            delivery,
        );
        let delivery = ServiceBuilder::new()
            .layer(FallbackLayer::new(fallback::value(None)))
            .service_fn(move |order_id: u64| {
                let delivery = delivery.clone();
                async move {
                    let response = delivery.get(format!("/deliveries/{order_id}")).await?;
                    if !response.status().is_success() {
                        return Err(BoxError::from(format!("delivery: {}", response.status())));
                    }
                    Ok(Some(Delivery {
                        info: text(response.body()),
                    }))
                }
            });
        Ok(Self {
            order: Downstream::new(Protected::new(order_policy.layer(client.clone())), order),
            kitchen: Downstream::new(
                Protected::new(kitchen_policy.layer(client.clone())),
                kitchen,
            ),
            delivery: BoxCloneSyncService::new(delivery),
        })
    }

    /// `getOrderDetails`: the three calls at once; the order is required, the rest optional.
    async fn get_order_details(&self, order_id: u64) -> Result<OrderDetails, BoxError> {
        let (order, ticket, delivery) = tokio::join!(
            self.order.get(format!("/orders/{order_id}")),
            self.kitchen.get(format!("/tickets/{order_id}")),
            self.delivery.clone().oneshot(order_id),
        );
        let order = order?;
        if !order.status().is_success() {
            return Err(format!("order service: {}", order.status()).into());
        }
        let ticket = match ticket {
            Ok(response) if response.status().is_success() => Some(Ticket {
                status: text(response.body()),
                stale: response.extensions().get::<Stale>().map(|stale| {
                    let age = response.headers().get("age");
                    let age = age.and_then(|v| v.to_str().ok()).unwrap_or("-");
                    (stale.age, age.to_owned())
                }),
            }),
            // No cached status either: the ticket is left out.
            _ => None,
        };
        Ok(OrderDetails {
            order: text(order.body()),
            ticket,
            delivery: delivery?,
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let order = FlakyServer::start().await?;
    let kitchen = FlakyServer::start().await?;
    let delivery = FlakyServer::start().await?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let gateway = ApiGateway::new(&client, &order, &kitchen, &delivery)?;

    println!("all up:");
    let started = Instant::now();
    let details = gateway.get_order_details(42).await?;
    println!(
        "  getOrderDetails(42) in {} ms: {details}",
        started.elapsed().as_millis()
    );
    assert!(details.delivery.is_some());
    assert!(details.ticket.as_ref().is_some_and(|t| t.stale.is_none()));

    println!("delivery down (it hangs):");
    delivery.set(Fault::hang());
    let started = Instant::now();
    let details = gateway.get_order_details(42).await?;
    let took = started.elapsed();
    println!(
        "  getOrderDetails(42) in {} ms: {details}",
        took.as_millis()
    );
    assert!(details.delivery.is_none(), "a partial result");
    assert!(details.ticket.as_ref().is_some_and(|t| t.stale.is_none()));
    assert!(took < TIMEOUT + Duration::from_millis(500), "{took:?}");
    delivery.set(Fault::healthy());

    // Let the cached ticket status age a little.
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!("kitchen down (it answers 503):");
    kitchen.set(Fault::status(503));
    let started = Instant::now();
    let details = gateway.get_order_details(42).await?;
    println!(
        "  getOrderDetails(42) in {} ms: {details}",
        started.elapsed().as_millis()
    );
    let ticket = details.ticket.as_ref().expect("the cached ticket status");
    let (age, _) = ticket.stale.as_ref().expect("served stale");
    assert!(*age >= Duration::from_secs(1), "{age:?}");
    assert!(details.delivery.is_some());
    assert_eq!(
        kitchen.stats().requests,
        3,
        "the kitchen was asked each time"
    );
    Ok(())
}
