//! The flaky server: HTTP/1.1, HTTP/2 and gRPC on one loopback port, with a switchable fault.

mod body;
mod conn;
mod fault;
mod handler;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use fault::{Fault, GrpcStatusIn, Reply};

use crate::testkit::rng::{Draw, SharedRng};
use crate::testkit::stopped;
use conn::{ConnCtl, ConnIo};

/// How long open connections get to finish their responses after the server is dropped,
/// before they are reset.
const GRACE: Duration = Duration::from_secs(1);

/// What the server has experienced, as counted when [`stats`](FlakyServer::stats) was called.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use palisade::testkit::FlakyServer;
///
/// let server = FlakyServer::start().await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
/// for _ in 0..3 {
///     client.get(server.url().parse()?).await?;
/// }
/// let stats = server.stats();
/// assert_eq!(
///     (stats.requests, stats.http_requests, stats.grpc_requests),
///     (3, 3, 0)
/// );
/// assert_eq!(stats.connections_accepted, 1); // the client kept its connection
///
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Requests received, HTTP and gRPC.
    pub requests: u64,
    /// Requests that were not gRPC.
    pub http_requests: u64,
    /// gRPC requests (content type `application/grpc...`).
    pub grpc_requests: u64,
    /// Requests in flight now: received, and their response not yet fully sent (a slowly
    /// streamed body counts until its last byte) nor abandoned with their connection or
    /// stream.
    pub in_flight: usize,
    /// The most requests in flight at once since the start (or the last
    /// [`reset_max_in_flight`](FlakyServer::reset_max_in_flight)).
    pub max_in_flight: usize,
    /// TCP connections accepted since the start.
    pub connections_accepted: u64,
    /// TCP connections open now (until the server has closed its socket).
    pub connections_open: usize,
}

/// State shared by the accept loop, the connections and the handle.
pub(crate) struct Shared {
    fault: Mutex<Arc<Fault>>,
    rng: SharedRng,
    /// Every counter, under one lock: a snapshot (and what `wait_for` returns) is never torn
    /// between two of them (`in_flight` past `max_in_flight`, say).
    counts: Mutex<ServerStats>,
    /// Set once the grace after shutdown has run out: whatever closes from then on is reset.
    past_grace: AtomicBool,
    changed: Notify,
}

impl Shared {
    fn new(fault: Fault) -> Self {
        Self {
            rng: SharedRng::new(fault.seed),
            fault: Mutex::new(Arc::new(fault)),
            counts: Mutex::new(ServerStats::default()),
            past_grace: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    /// The fault for a new request and the two random numbers it draws, taken together so
    /// that a request never pairs one fault with the sequence of another.
    fn begin(&self) -> (Arc<Fault>, Draw) {
        let fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        (Arc::clone(&fault), self.rng.next_pair())
    }

    fn set(&self, fault: Fault) {
        let mut current = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        self.rng.reseed(fault.seed);
        *current = Arc::new(fault);
    }

    fn fault(&self) -> Fault {
        Fault::clone(&self.fault.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn stats(&self) -> ServerStats {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the counters with `change`, then wakes whoever waits on them.
    fn count(&self, change: impl FnOnce(&mut ServerStats)) {
        change(&mut self.counts.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_waiters();
    }

    fn connection_accepted(&self) {
        self.count(|c| c.connections_accepted += 1);
    }

    pub(crate) fn connection_opened(&self) {
        self.count(|c| c.connections_open += 1);
    }

    /// Whether a connection closing now closes with a reset, its server past the grace of
    /// shutdown.
    pub(crate) fn past_grace(&self) -> bool {
        self.past_grace.load(Ordering::SeqCst)
    }

    pub(crate) fn connection_closed(&self) {
        self.count(|c| c.connections_open = c.connections_open.saturating_sub(1));
    }
}

/// One request in flight, counted until dropped (the response body holds it until its last
/// frame).
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

impl InFlight {
    pub(crate) fn enter(shared: &Arc<Shared>, grpc: bool) -> Self {
        shared.count(|c| {
            c.requests += 1;
            if grpc {
                c.grpc_requests += 1;
            } else {
                c.http_requests += 1;
            }
            c.in_flight += 1;
            c.max_in_flight = c.max_in_flight.max(c.in_flight);
        });
        Self {
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared
            .count(|c| c.in_flight = c.in_flight.saturating_sub(1));
    }
}

/// A test server on `127.0.0.1` that misbehaves on demand: HTTP/1.1, HTTP/2 (cleartext, prior
/// knowledge) and gRPC on one port, answering every request as its current [`Fault`] says.
///
/// One server, one port: hyper-util's automatic connection builder tells HTTP/1.1 from HTTP/2
/// by the connection preface, and a request whose content type is `application/grpc...` is
/// answered as gRPC (the `palisade.testkit.Echo/Say` method of [`grpc`](crate::testkit::grpc)),
/// so a tonic `Channel` and a hyper client can share it. Any path works for HTTP.
///
/// A request's body is read to its end before the fault's latency and answer, and dropped as
/// it comes: an HTTP upload of any size costs the server no memory, a gRPC request at most its
/// message up to 4 MiB (kept for its echo; a larger one is answered `INTERNAL`, malformed).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use http_body_util::{BodyExt, Empty};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use palisade::testkit::{Fault, FlakyServer};
///
/// let server = FlakyServer::start().await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
/// let uri: hyper::Uri = format!("{}/inventory", server.url()).parse()?;
///
/// let response = client.get(uri.clone()).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.into_body().collect().await?.to_bytes(), "/inventory");
///
/// server.set(Fault::retry_after(503, "120"));
/// let response = client.get(uri.clone()).await?;
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "120");
///
/// // A client timeout against a hanging server: the server sees the request, then sees the
/// // connection closed.
/// server.set(Fault::hang());
/// let call = tokio::time::timeout(Duration::from_millis(100), client.get(uri)).await;
/// assert!(call.is_err());
/// let stats = server
///     .wait_for(Duration::from_secs(5), |s| s.in_flight == 0 && s.connections_open == 0)
///     .await
///     .expect("the dropped request closed its connection");
/// assert_eq!(stats.requests, 3);
/// # Ok(())
/// # }
/// ```
///
/// # Faults
///
/// [`set`](Self::set) changes the fault for requests that arrive after it; requests already
/// being answered finish under the fault they started with. A request is counted (in
/// [`stats`](Self::stats), and so by [`wait_for`](Self::wait_for)) only once its fault is
/// fixed: a `set` after seeing it counted leaves it under the fault before. Random choices
/// are seeded ([`Fault::seed`]), so a sequence of requests made one after another sees the
/// same replies on every run.
///
/// # Counters
///
/// [`stats`](Self::stats) tells what the server experienced: requests (HTTP and gRPC), in
/// flight now and at most, connections accepted and open. [`wait_for`](Self::wait_for) waits
/// until they satisfy a condition, woken by every change rather than polling.
///
/// # Shutdown
///
/// [`shutdown`](Self::shutdown) stops accepting, asks open connections to finish (HTTP/2
/// `GOAWAY`, HTTP/1.1 closes after the current response) and resets hanging requests;
/// whatever is still open a second later is reset. It returns once the port and every
/// connection's socket are closed. One thing may outlast it: hyper answers each HTTP/2 stream
/// in a task of its own, which may still be queued when `shutdown` returns. It holds no
/// socket, ends when it next runs, its connection gone, and until then
/// [`in_flight`](ServerStats::in_flight) counts its request.
///
/// Dropping the server only sends the signal to stop, and returns at once: its task does all
/// of the above when it next runs, in the background, and the port stays bound until then. A
/// test that needs the port closed or the connections gone calls `shutdown().await` instead.
/// The server needs a tokio runtime (with the time driver) and must not outlive it.
pub struct FlakyServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for FlakyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlakyServer")
            .field("addr", &self.addr)
            .field("fault", &self.shared.fault())
            .field("stats", &self.shared.stats())
            .finish()
    }
}

/// Starts a [`FlakyServer`] on a chosen port or with a first fault.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use palisade::testkit::{Fault, FlakyServer};
///
/// let server = FlakyServer::builder()
///     .fault(Fault::status(503))
///     .start()
///     .await?;
/// assert_eq!(server.fault(), Fault::status(503));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FlakyServerBuilder {
    port: u16,
    fault: Fault,
}

impl FlakyServerBuilder {
    /// The port on `127.0.0.1` (default 0: any free port).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::FlakyServer;
    ///
    /// // Take a free port, let it go, and ask for it by number.
    /// let port = std::net::TcpListener::bind("127.0.0.1:0")?
    ///     .local_addr()?
    ///     .port();
    /// let server = FlakyServer::builder().port(port).start().await?;
    /// assert_eq!(server.addr().port(), port);
    /// # Ok(())
    /// # }
    /// ```
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The fault from the first request on (default [`Fault::healthy`]).
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
    /// // Failing from the very first request.
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::status(500))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// assert_eq!(client.get(server.url().parse()?).await?.status(), 500);
    /// # Ok(())
    /// # }
    /// ```
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// Binds `127.0.0.1:port` and starts serving in a background task.
    ///
    /// # Errors
    ///
    /// The port could not be bound.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::FlakyServer;
    ///
    /// let server = FlakyServer::builder().start().await?;
    /// assert!(server.addr().ip().is_loopback());
    /// // A port already taken cannot be bound.
    /// assert!(
    ///     FlakyServer::builder()
    ///         .port(server.addr().port())
    ///         .start()
    ///         .await
    ///         .is_err()
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self) -> io::Result<FlakyServer> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], self.port))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(self.fault));
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop));
        Ok(FlakyServer {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }
}

impl FlakyServer {
    /// Starts a healthy server on `127.0.0.1`, on a free port.
    ///
    /// # Errors
    ///
    /// No port could be bound.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// assert_eq!(server.fault(), Fault::healthy());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// A builder, to choose the port or the first fault.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::builder().fault(Fault::hang()).start().await?;
    /// assert_eq!(server.fault(), Fault::hang());
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> FlakyServerBuilder {
        FlakyServerBuilder::default()
    }

    /// The address it listens on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::FlakyServer;
    ///
    /// let server = FlakyServer::start().await?;
    /// let _conn = tokio::net::TcpStream::connect(server.addr()).await?; // any TCP client
    /// assert!(server.addr().ip().is_loopback());
    /// # Ok(())
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:port`, with no trailing slash.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::FlakyServer;
    ///
    /// let server = FlakyServer::start().await?;
    /// assert_eq!(
    ///     server.url(),
    ///     format!("http://127.0.0.1:{}", server.addr().port())
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers requests that arrive from now on as `fault` says, and starts its random
    /// sequence again from its seed.
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
    /// server.set(Fault::status(503));
    /// assert_eq!(client.get(server.url().parse()?).await?.status(), 503);
    /// server.set(Fault::healthy()); // recovered
    /// assert_eq!(client.get(server.url().parse()?).await?.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set(&self, fault: Fault) {
        self.shared.set(fault);
    }

    /// The fault in force.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// server.set(Fault::error_rate(503, 0.2));
    /// assert_eq!(server.fault(), Fault::error_rate(503, 0.2));
    /// # Ok(())
    /// # }
    /// ```
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// The counters now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::FlakyServer;
    ///
    /// let server = FlakyServer::start().await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// client.get(server.url().parse()?).await?;
    /// assert_eq!(server.stats().requests, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// Starts counting the maximum in flight again from the requests in flight now.
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
    ///     .fault(Fault::healthy().latency(Duration::from_millis(50)))
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let uri: hyper::Uri = server.url().parse()?;
    /// let (a, b) = tokio::join!(client.get(uri.clone()), client.get(uri.clone()));
    /// (a?, b?);
    /// assert_eq!(server.stats().max_in_flight, 2);
    /// server.reset_max_in_flight(); // a new phase of the test starts counting afresh
    /// assert_eq!(server.stats().max_in_flight, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset_max_in_flight(&self) {
        self.shared.count(|c| c.max_in_flight = c.in_flight);
    }

    /// Waits until the counters satisfy `until`, for at most `timeout` (tokio time). Woken by
    /// every change to them, so it neither polls nor sleeps.
    ///
    /// # Errors
    ///
    /// The last counters seen, if `until` was still false when the time ran out.
    ///
    /// # Example
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
    /// let call = tokio::spawn(client.get(server.url().parse()?));
    /// let stats = server
    ///     .wait_for(Duration::from_secs(5), |s| s.in_flight == 1)
    ///     .await
    ///     .unwrap();
    /// assert_eq!(stats.requests, 1); // the request has arrived, and hangs
    /// call.abort();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for(
        &self,
        timeout: Duration,
        until: impl FnMut(&ServerStats) -> bool,
    ) -> Result<ServerStats, ServerStats> {
        wait_for(&self.shared.changed, || self.shared.stats(), timeout, until).await
    }

    /// Stops the server as the type's docs say under Shutdown, and returns once the port and
    /// every connection's socket are closed: the way to stop it at a known point, where
    /// dropping it only sends the signal.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::FlakyServer;
    ///
    /// let server = FlakyServer::start().await?;
    /// let addr = server.addr();
    /// server.shutdown().await;
    /// assert!(tokio::net::TcpStream::connect(addr).await.is_err()); // no longer listening
    ///
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FlakyServer {
    /// Sends the signal to stop, and no more: the task stops when it next runs (see
    /// [`FlakyServer::shutdown`]).
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Waits until `read()` satisfies `until`, re-checking whenever `changed` is notified.
pub(crate) async fn wait_for<T>(
    changed: &Notify,
    read: impl Fn() -> T,
    timeout: Duration,
    mut until: impl FnMut(&T) -> bool,
) -> Result<T, T> {
    let deadline = crate::sync::timer_deadline(tokio::time::Instant::now(), timeout)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = read();
        if until(&now) {
            return Ok(now);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let now = read();
            return if until(&now) { Ok(now) } else { Err(now) };
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let for_connections = stop.clone();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connection_accepted();
                    // Counted open here, not when its task first runs: a wait for "no
                    // connection open" must not pass between the two.
                    let _ = stream.set_nodelay(true);
                    let ctl = Arc::new(ConnCtl::default());
                    let io = ConnIo::new(stream, Arc::clone(&ctl), Arc::clone(&shared));
                    let stop = for_connections.clone();
                    connections.spawn(serve_connection(io, ctl, Arc::clone(&shared), stop));
                }
                // Out of file descriptors, or a connection that failed before it was accepted:
                // try again shortly rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(GRACE, drain).await;
    // Reset the connections still open, and wait until each task is gone, its socket closed.
    shared.past_grace.store(true, Ordering::SeqCst);
    connections.shutdown().await;
}

async fn serve_connection(
    io: ConnIo,
    ctl: Arc<ConnCtl>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(io);
    let service = {
        let (ctl, stop) = (Arc::clone(&ctl), stop.clone());
        hyper::service::service_fn(move |request| {
            handler::handle(Arc::clone(&shared), Arc::clone(&ctl), stop.clone(), request)
        })
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            () = ctl.killed() => break,
            () = stopped(&mut stop), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
