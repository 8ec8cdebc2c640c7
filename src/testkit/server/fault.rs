use std::time::Duration;

use crate::testkit::rng;

/// Where a gRPC status goes in the response.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use palisade::testkit::grpc::{EchoClient, EchoRequest};
/// use palisade::testkit::{Fault, FlakyServer, GrpcStatusIn};
///
/// let server = FlakyServer::start().await?;
/// let channel = tonic::transport::Endpoint::from_shared(server.url())?
///     .connect()
///     .await?;
/// let mut client = EchoClient::new(channel);
/// for placement in [GrpcStatusIn::TrailersOnly, GrpcStatusIn::Trailers] {
///     server.set(Fault::grpc_status(
///         tonic::Code::NotFound,
///         "no such item",
///         placement,
///     ));
///     let status = client.say(EchoRequest::new("item 7")).await.unwrap_err();
///     assert_eq!(status.code(), tonic::Code::NotFound); // the same to the client, either way
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcStatusIn {
    /// In the response head, with no body and no trailers (a "trailers-only" response, as
    /// servers send when they fail before any message).
    TrailersOnly,
    /// In the trailers, after a `200` head and one reply message. Over HTTP/1.1 the body is
    /// chunked and the head names the trailers (`Trailer: grpc-status, ...`), and the request
    /// must say it takes them (`TE: trailers`, as gRPC clients do): without it, hyper sends no
    /// trailers, and the body ends with no status.
    Trailers,
}

/// What the server answers to one request (after any latency of its [`Fault`]).
///
/// Each reply is defined for HTTP and for gRPC requests (content type `application/grpc...`);
/// the differences are listed per variant.
///
/// A `HEAD` request gets the head of its reply and no body over HTTP/1.1, where hyper leaves
/// the body out: [`ResetAfter`](Self::ResetAfter) and [`SlowBody`](Self::SlowBody) (at any
/// rate, zero included) answer it at once (after the fault's latency) and cleanly, with no
/// reset. Over HTTP/2 hyper sends the body all the same, whatever the reply, and a client
/// takes it for a protocol error (hyper's client resets the stream).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use palisade::testkit::{Fault, FlakyServer, Reply};
///
/// let server = FlakyServer::builder()
///     .fault(Fault::reply(Reply::Status(418)))
///     .start()
///     .await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
/// assert_eq!(client.get(server.url().parse()?).await?.status(), 418);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// HTTP: `200 OK`, `text/plain`, the request's path as the body. gRPC: the
    /// `palisade.testkit.Echo/Say` reply echoing the request (`grpc-status: 0` in the
    /// trailers); another method is `UNIMPLEMENTED`, a malformed or compressed request
    /// `INTERNAL` or `UNIMPLEMENTED`, trailers-only.
    Healthy,
    /// This HTTP status with a short `text/plain` body. gRPC requests get the same status
    /// with no body and no `grpc-status`, as a proxy in front of a gRPC server may answer;
    /// clients map it to a gRPC code (`503`, `429`, `502`, `504` to `UNAVAILABLE`). A code
    /// that is no status (outside `100..=999`) or only an informational one (`1xx`, which
    /// cannot end a response: hyper would send a bare `101`, or over HTTP/2 an interim head)
    /// is sent as `500`.
    Status(u16),
    /// This HTTP status (typically `503` or `429`; a code that cannot end a response is sent
    /// as `500`, as for [`Status`](Self::Status)) with a `Retry-After` header of this value,
    /// sent as given so that tests can send hostile values; bytes a header cannot hold
    /// (control characters) are left out.
    RetryAfter {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` value, verbatim.
        value: String,
    },
    /// Read the request, never answer. The request stays in flight until the client goes
    /// away (or the server shuts down).
    Hang,
    /// Send a `200` head and this many bytes of the body (for gRPC, the first bytes of a reply
    /// message), then abort the connection with a TCP reset so the client sees an error, not
    /// a clean end. Every request on that connection (HTTP/2 multiplexes several) fails.
    ResetAfter {
        /// Bytes of body sent before the reset (any number: they are made as they are sent).
        bytes: usize,
    },
    /// A `200` whose body of `bytes` bytes (HTTP: `content-length` set; gRPC: one reply
    /// message of about that size, then `grpc-status: 0`) is sent at `bytes_per_sec`, in
    /// chunks of a twentieth of the rate (about twenty a second) of 1 byte to 64 KiB: below 20
    /// bytes a second there are fewer chunks a second, above 1.25 MiB a second more. The body
    /// ends no sooner than `bytes / bytes_per_sec` seconds after its first byte is due. A rate
    /// of zero sends the head and never the body.
    ///
    /// The body is made as it is sent, so any size works: `usize::MAX` is a body that does not
    /// end. Past `i64::MAX` bytes, more than clients can read as a length,
    /// there is no `content-length` (HTTP/1.1 sends the body chunked); past 4 GiB, more than a
    /// gRPC message can hold, the message's length says the most it can.
    SlowBody {
        /// Size of the body.
        bytes: usize,
        /// Rate at which it is sent.
        bytes_per_sec: u64,
    },
    /// A gRPC status (HTTP `200`, `application/grpc`), with an optional
    /// `grpc-retry-pushback-ms` beside it, for HTTP requests too.
    GrpcStatus {
        /// The status code (`grpc-status`).
        code: tonic::Code,
        /// The status message (`grpc-message`, percent-encoded as gRPC requires; left out
        /// when empty).
        message: String,
        /// In the head (trailers-only) or in the trailers after one reply message.
        placement: GrpcStatusIn,
        /// A `grpc-retry-pushback-ms` value sent beside the status, verbatim (bytes a header
        /// cannot hold are left out).
        pushback_ms: Option<String>,
    },
    /// A gRPC reply (`200`, `application/grpc`, one message) whose body ends with no trailers
    /// and so no `grpc-status`: a broken server or a proxy that dropped the trailers.
    GrpcNoStatus,
}

/// What the [`FlakyServer`](super::FlakyServer) does with each request: an optional latency
/// before the response head, a [`Reply`], and optionally another reply at a given rate.
///
/// Random choices (which requests get the occasional reply, how long a random latency is)
/// come from a SplitMix64 sequence started from [`seed`](Self::seed) each time the fault
/// is [`set`](super::FlakyServer::set): requests made one after another see the same
/// sequence on every run. Each request draws two numbers, whatever the fault, so the
/// latency of one request never shifts the choices of the next.
///
/// ```
/// use std::time::Duration;
/// use palisade::testkit::{Fault, Reply};
///
/// // 30 % of requests get a 503, each after 10 to 50 ms; the rest a healthy 200.
/// let flaky = Fault::error_rate(503, 0.3)
///     .latency_between(Duration::from_millis(10), Duration::from_millis(50))
///     .seed(42);
/// // Healthy, but one request in ten hangs.
/// let hangs = Fault::healthy().sometimes(0.1, Reply::Hang);
/// # let _ = (flaky, hangs);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub(crate) reply: Reply,
    pub(crate) latency: (Duration, Duration),
    pub(crate) sometimes: Option<(f64, Reply)>,
    pub(crate) seed: u64,
}

/// The seed of a fault that is given none.
const DEFAULT_SEED: u64 = 0x5EED_F1A4;

impl Default for Fault {
    fn default() -> Self {
        Self::healthy()
    }
}

impl Fault {
    /// Always answer with `reply`, at once.
    ///
    /// ```
    /// use palisade::testkit::{Fault, Reply};
    ///
    /// let fault = Fault::reply(Reply::ResetAfter { bytes: 10 });
    /// assert_eq!(fault, Fault::reset_after(10));
    /// assert_eq!(fault.usual_reply(), &Reply::ResetAfter { bytes: 10 });
    /// ```
    pub fn reply(reply: Reply) -> Self {
        Self {
            reply,
            latency: (Duration::ZERO, Duration::ZERO),
            sometimes: None,
            seed: DEFAULT_SEED,
        }
    }

    /// Healthy: `200` (HTTP) or an OK reply (gRPC), at once. See [`Reply::Healthy`].
    ///
    /// ```
    /// use palisade::testkit::{Fault, Reply};
    ///
    /// assert_eq!(Fault::healthy().usual_reply(), &Reply::Healthy);
    /// assert_eq!(Fault::default(), Fault::healthy());
    /// ```
    pub fn healthy() -> Self {
        Self::reply(Reply::Healthy)
    }

    /// Always this HTTP status. See [`Reply::Status`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::status(502))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// assert_eq!(client.get(server.url().parse()?).await?.status(), 502);
    /// # Ok(())
    /// # }
    /// ```
    pub fn status(status: u16) -> Self {
        Self::reply(Reply::Status(status))
    }

    /// This HTTP status with probability `rate`, healthy otherwise (`rate` at or above 1:
    /// always; at or below 0, or NaN: never).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::error_rate(503, 0.5))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let mut failed = 0;
    /// for _ in 0..100 {
    ///     if client.get(server.url().parse()?).await?.status() == 503 {
    ///         failed += 1;
    ///     }
    /// }
    /// assert!((30..=70).contains(&failed), "{failed} of 100");
    /// # Ok(())
    /// # }
    /// ```
    pub fn error_rate(status: u16, rate: f64) -> Self {
        Self::healthy().sometimes(rate, Reply::Status(status))
    }

    /// Read each request and never answer. See [`Reply::Hang`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::builder().fault(Fault::hang()).start().await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let call = tokio::time::timeout(
    ///     Duration::from_millis(100),
    ///     client.get(server.url().parse()?),
    /// )
    /// .await;
    /// assert!(call.is_err()); // no answer
    /// assert_eq!(server.stats().requests, 1); // though the request arrived
    ///
    /// # Ok(())
    /// # }
    /// ```
    pub fn hang() -> Self {
        Self::reply(Reply::Hang)
    }

    /// Send a `200` head and `bytes` bytes of body, then reset the connection. See
    /// [`Reply::ResetAfter`]. The reset throws away what the kernel has not delivered yet: with
    /// more than a socket buffer's worth (tens of KiB on loopback) and a client that does not
    /// read, fewer than `bytes` may arrive.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::reset_after(16))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let response = client.get(server.url().parse()?).await?;
    /// assert_eq!(response.status(), 200); // a good head...
    /// assert!(response.into_body().collect().await.is_err()); // ...and a broken body
    ///
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset_after(bytes: usize) -> Self {
        Self::reply(Reply::ResetAfter { bytes })
    }

    /// A `200` whose body of `bytes` bytes is sent at `bytes_per_sec`. See
    /// [`Reply::SlowBody`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// // 2000 bytes at 10 000 bytes a second: about 200 ms.
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::slow_body(2000, 10_000))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let start = std::time::Instant::now();
    /// let body = client
    ///     .get(server.url().parse()?)
    ///     .await?
    ///     .into_body()
    ///     .collect()
    ///     .await?
    ///     .to_bytes();
    /// assert_eq!(body.len(), 2000);
    /// assert!(start.elapsed() >= Duration::from_millis(190));
    /// # Ok(())
    /// # }
    /// ```
    pub fn slow_body(bytes: usize, bytes_per_sec: u64) -> Self {
        Self::reply(Reply::SlowBody {
            bytes,
            bytes_per_sec,
        })
    }

    /// This status (`503`, `429`...) with `Retry-After: value`, verbatim. See
    /// [`Reply::RetryAfter`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::classify::http::HttpClassifier;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::retry_after(429, "30"))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let response = client.get(server.url().parse()?).await?;
    /// let outcome =
    ///     HttpClassifier::default().classify_head(response.status(), response.headers());
    /// assert_eq!(outcome.pushback(), Some(Duration::from_secs(30)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn retry_after(status: u16, value: impl Into<String>) -> Self {
        Self::reply(Reply::RetryAfter {
            status,
            value: value.into(),
        })
    }

    /// This gRPC status, in the head or in the trailers. See [`Reply::GrpcStatus`]; add a
    /// `grpc-retry-pushback-ms` with [`pushback_ms`](Self::pushback_ms).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::grpc::{EchoClient, EchoRequest};
    /// use palisade::testkit::{Fault, FlakyServer, GrpcStatusIn};
    ///
    /// let fault = Fault::grpc_status(
    ///     tonic::Code::ResourceExhausted,
    ///     "quota",
    ///     GrpcStatusIn::TrailersOnly,
    /// );
    /// let server = FlakyServer::builder().fault(fault).start().await?;
    /// let channel = tonic::transport::Endpoint::from_shared(server.url())?
    ///     .connect()
    ///     .await?;
    /// let status = EchoClient::new(channel)
    ///     .say(EchoRequest::new("hi"))
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(
    ///     (status.code(), status.message()),
    ///     (tonic::Code::ResourceExhausted, "quota")
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn grpc_status(
        code: tonic::Code,
        message: impl Into<String>,
        placement: GrpcStatusIn,
    ) -> Self {
        Self::reply(Reply::GrpcStatus {
            code,
            message: message.into(),
            placement,
            pushback_ms: None,
        })
    }

    /// A gRPC reply whose body ends without a `grpc-status`. See [`Reply::GrpcNoStatus`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::policy::Policy;
    /// use palisade::testkit::grpc::{EchoClient, EchoRequest};
    /// use palisade::testkit::{Fault, FlakyServer};
    /// use tower::Layer;
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::grpc_no_status())
    ///     .start()
    ///     .await?;
    /// let channel = tonic::transport::Endpoint::from_shared(server.url())?
    ///     .connect()
    ///     .await?;
    /// let policy = Policy::builder()
    ///     .grpc()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()?;
    /// let breaker = policy.circuit_breaker().unwrap();
    /// let mut client = EchoClient::new(policy.layer(channel));
    /// let reply = client.say(EchoRequest::new("hi")).await;
    /// // Whatever the client makes of it, the breaker counts a failure: a body that ends with
    /// // no status is never a silent success.
    /// # let _ = reply;
    /// assert_eq!(breaker.snapshot().failures, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn grpc_no_status() -> Self {
        Self::reply(Reply::GrpcNoStatus)
    }

    /// The same fault, answering `reply` instead with probability `rate` (at or above 1:
    /// always; at or below 0, or NaN: never). Replaces an earlier `sometimes` or
    /// `error_rate`.
    ///
    /// ```
    /// use palisade::testkit::{Fault, Reply};
    ///
    /// let fault = Fault::healthy().sometimes(0.1, Reply::Hang);
    /// assert_eq!(fault.occasional_reply(), Some((0.1, &Reply::Hang)));
    /// // A later `sometimes` (or `error_rate`) replaces it.
    /// let fault = fault.sometimes(0.2, Reply::Status(500));
    /// assert_eq!(fault.occasional_reply(), Some((0.2, &Reply::Status(500))));
    /// ```
    #[must_use]
    pub fn sometimes(mut self, rate: f64, reply: Reply) -> Self {
        self.sometimes = Some((rate, reply));
        self
    }

    /// The same fault, each response head delayed by `latency`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::healthy().latency(Duration::from_millis(100)))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let start = std::time::Instant::now();
    /// assert_eq!(client.get(server.url().parse()?).await?.status(), 200);
    /// assert!(start.elapsed() >= Duration::from_millis(100));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = (latency, latency);
        self
    }

    /// The same fault, each response head delayed by a latency drawn uniformly from
    /// `min..=max` (`min` if `max` is smaller).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::testkit::Fault;
    ///
    /// let ms = Duration::from_millis;
    /// assert_eq!(
    ///     Fault::healthy()
    ///         .latency_between(ms(10), ms(50))
    ///         .latency_range(),
    ///     (ms(10), ms(50))
    /// );
    /// assert_eq!(
    ///     Fault::healthy()
    ///         .latency_between(ms(50), ms(10))
    ///         .latency_range(),
    ///     (ms(50), ms(50))
    /// );
    /// ```
    #[must_use]
    pub fn latency_between(mut self, min: Duration, max: Duration) -> Self {
        self.latency = (min, max.max(min));
        self
    }

    /// The same fault, with `grpc-retry-pushback-ms: value` (verbatim) beside every gRPC status
    /// it sends (its [`Reply::GrpcStatus`] replies, the usual and the occasional one). It sets
    /// the replies the fault has when it is called: call it after `sometimes(..)`, whose reply
    /// keeps its own `pushback_ms` otherwise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::grpc::{EchoClient, EchoRequest};
    /// use palisade::testkit::{Fault, FlakyServer, GrpcStatusIn};
    ///
    /// let fault =
    ///     Fault::grpc_status(tonic::Code::Unavailable, "busy", GrpcStatusIn::Trailers)
    ///         .pushback_ms("2500");
    /// let server = FlakyServer::builder().fault(fault).start().await?;
    /// let channel = tonic::transport::Endpoint::from_shared(server.url())?
    ///     .connect()
    ///     .await?;
    /// let status = EchoClient::new(channel)
    ///     .say(EchoRequest::new("hi"))
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(
    ///     status.metadata().get("grpc-retry-pushback-ms").unwrap(),
    ///     "2500"
    /// );
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn pushback_ms(mut self, value: impl Into<String>) -> Self {
        let value = value.into();
        for reply in [
            Some(&mut self.reply),
            self.sometimes.as_mut().map(|(_, r)| r),
        ]
        .into_iter()
        .flatten()
        {
            if let Reply::GrpcStatus { pushback_ms, .. } = reply {
                *pushback_ms = Some(value.clone());
            }
        }
        self
    }

    /// The same fault, its random choices drawn from a sequence started at `seed`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let mut statuses = Vec::new();
    /// for _ in 0..2 {
    ///     server.set(Fault::error_rate(503, 0.5).seed(7)); // the sequence starts again at `set`
    ///     let mut run = Vec::new();
    ///     for _ in 0..10 {
    ///         run.push(client.get(server.url().parse()?).await?.status().as_u16());
    ///     }
    ///     statuses.push(run);
    /// }
    /// assert_eq!(statuses[0], statuses[1]); // the same replies, in the same order
    ///     
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The usual reply.
    ///
    /// ```
    /// use palisade::testkit::{Fault, Reply};
    ///
    /// assert_eq!(Fault::error_rate(503, 0.3).usual_reply(), &Reply::Healthy);
    /// assert_eq!(Fault::hang().usual_reply(), &Reply::Hang);
    /// ```
    pub fn usual_reply(&self) -> &Reply {
        &self.reply
    }

    /// The occasional reply and its rate, if any.
    ///
    /// ```
    /// use palisade::testkit::{Fault, Reply};
    ///
    /// assert_eq!(
    ///     Fault::error_rate(503, 0.3).occasional_reply(),
    ///     Some((0.3, &Reply::Status(503)))
    /// );
    /// assert_eq!(Fault::healthy().occasional_reply(), None);
    /// ```
    pub fn occasional_reply(&self) -> Option<(f64, &Reply)> {
        self.sometimes.as_ref().map(|(rate, reply)| (*rate, reply))
    }

    /// The latency range (`(d, d)` for a fixed latency).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::testkit::Fault;
    ///
    /// let fault = Fault::healthy().latency(Duration::from_millis(20));
    /// assert_eq!(
    ///     fault.latency_range(),
    ///     (Duration::from_millis(20), Duration::from_millis(20))
    /// );
    /// ```
    pub fn latency_range(&self) -> (Duration, Duration) {
        self.latency
    }

    /// The reply for a request whose draw for the reply is `r`.
    pub(crate) fn pick(&self, r: u64) -> &Reply {
        match &self.sometimes {
            Some((rate, reply)) if rng::chance(r, *rate) => reply,
            _ => &self.reply,
        }
    }

    /// The latency for a request whose draw for the latency is `r`.
    pub(crate) fn latency_for(&self, r: u64) -> Duration {
        rng::between(r, self.latency.0, self.latency.1)
    }
}
