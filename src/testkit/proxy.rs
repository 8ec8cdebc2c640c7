//! A TCP proxy on `127.0.0.1` that misbehaves on demand in front of any address.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::server::wait_for;
use super::{stopped, time_for};

/// What a [`FaultProxy`] does with a connection. A mode applies to connections accepted
/// after it is [`set`](FaultProxy::set); connections already open keep the one they were
/// accepted under. A connection is counted open (in [`stats`](FaultProxy::stats), and so by
/// [`wait_for`](FaultProxy::wait_for)) only once its mode is fixed: a `set` after seeing it
/// counted leaves it under the mode before.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use palisade::testkit::{FaultProxy, FlakyServer, ProxyMode};
///
/// let server = FlakyServer::start().await?;
/// let proxy = FaultProxy::start(server.addr()).await?;
/// proxy.set(ProxyMode::Blackhole); // accepts, reads, never answers
/// let mut conn = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
/// let read =
///     tokio::time::timeout(Duration::from_millis(100), conn.read(&mut [0; 64])).await;
/// assert!(read.is_err()); // nothing came back
/// assert_eq!(server.stats().requests, 0); // and nothing reached the server
///
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyMode {
    /// Connect to the upstream and copy bytes both ways, half-closes included.
    PassThrough,
    /// Accept, then close at once with a TCP reset: the client's connect succeeds and its
    /// first read or write fails with "connection reset".
    Refuse,
    /// Accept, read and discard whatever the client sends, never connect upstream, never
    /// answer: only the client ends it (a client timeout), and the proxy closes its side
    /// when the client has closed its own.
    Blackhole,
    /// Wait `connect` before connecting to the upstream (the client's connect succeeds at
    /// once; its bytes wait in the socket), then pass through, waiting `per_chunk` before
    /// forwarding each chunk read, in either direction.
    Delay {
        /// Wait before connecting upstream.
        connect: Duration,
        /// Wait before forwarding each chunk.
        per_chunk: Duration,
    },
    /// Pass through until `bytes` bytes have come back from the upstream (the first `bytes`
    /// of them are forwarded), then reset both connections. `0` resets as soon as the
    /// upstream sends anything.
    ResetAfter {
        /// Bytes from the upstream forwarded before the reset.
        bytes: u64,
    },
    /// Pass through at `bytes_per_sec`, in each direction, in chunks of a twentieth of the rate
    /// (about twenty a second) of 1 byte to 16 KiB: below 20 bytes a second there are fewer
    /// chunks a second, above 320 KiB a second more.
    /// Zero forwards nothing: the proxy connects upstream, then reads, counts and drops what
    /// the client sends, and closes both connections when the client closes its own. Time a
    /// direction sits idle earns at most a chunk of credit: what comes after a pause still
    /// goes at the rate.
    Throttle {
        /// The rate of each direction.
        bytes_per_sec: u64,
    },
}

impl ProxyMode {
    /// [`ProxyMode::Delay`] before connecting upstream, with no delay per chunk.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::testkit::ProxyMode;
    ///
    /// let mode = ProxyMode::delay(Duration::from_millis(500));
    /// assert_eq!(
    ///     mode,
    ///     ProxyMode::Delay {
    ///         connect: Duration::from_millis(500),
    ///         per_chunk: Duration::ZERO
    ///     }
    /// );
    /// ```
    pub const fn delay(connect: Duration) -> Self {
        Self::Delay {
            connect,
            per_chunk: Duration::ZERO,
        }
    }
}

/// What the proxy has experienced, as counted when [`stats`](FaultProxy::stats) was called.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use palisade::testkit::{FaultProxy, FlakyServer};
///
/// let server = FlakyServer::start().await?;
/// let proxy = FaultProxy::start(server.addr()).await?;
/// let mut conn = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// let get = b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
/// conn.write_all(get).await?;
/// conn.read_to_end(&mut Vec::new()).await?;
/// let stats = proxy.stats();
/// assert_eq!(
///     (stats.connections_accepted, stats.bytes_from_clients),
///     (1, get.len() as u64)
/// );
/// assert!(stats.bytes_from_upstream > 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Client connections accepted since the start.
    pub connections_accepted: u64,
    /// Client connections open now (until the proxy has closed its socket).
    pub connections_open: usize,
    /// Bytes read from clients (forwarded or, when blackholed or throttled to zero, dropped).
    pub bytes_from_clients: u64,
    /// Bytes read from the upstream.
    pub bytes_from_upstream: u64,
}

struct Shared {
    upstream: SocketAddr,
    mode: Mutex<ProxyMode>,
    accepted: AtomicU64,
    open: AtomicUsize,
    from_clients: AtomicU64,
    from_upstream: AtomicU64,
    changed: Notify,
}

impl Shared {
    fn mode(&self) -> ProxyMode {
        self.mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stats(&self) -> ProxyStats {
        // Open before accepted: a connection is counted accepted before it is counted open, so
        // a snapshot never shows more open than accepted.
        let connections_open = self.open.load(Ordering::SeqCst);
        ProxyStats {
            connections_accepted: self.accepted.load(Ordering::SeqCst),
            connections_open,
            bytes_from_clients: self.from_clients.load(Ordering::SeqCst),
            bytes_from_upstream: self.from_upstream.load(Ordering::SeqCst),
        }
    }

    fn count(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A connection counted open until dropped.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::SeqCst);
        shared.changed.notify_waiters();
        Self(Arc::clone(shared))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A TCP proxy on `127.0.0.1` in front of an upstream address, whose [`ProxyMode`] can be
/// switched while it runs: pass through, refuse, blackhole, delay, reset after some bytes,
/// throttle. It sees bytes, not requests, so it works for any protocol (HTTP/1.1, HTTP/2,
/// gRPC, a database).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use palisade::testkit::{FaultProxy, FlakyServer, ProxyMode};
///
/// let server = FlakyServer::start().await?;
/// let proxy = FaultProxy::start(server.addr()).await?;
///
/// let get = b"GET /through HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
/// let mut conn = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// conn.write_all(get).await?;
/// let mut response = String::new();
/// conn.read_to_string(&mut response).await?;
/// assert!(response.starts_with("HTTP/1.1 200"));
///
/// proxy.set(ProxyMode::Refuse);
/// let mut conn = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// let _ = conn.write_all(get).await; // may succeed: the reset can arrive after it
/// let read = conn.read(&mut [0; 64]).await;
/// assert!(read.is_err() || read.is_ok_and(|n| n == 0));
/// # Ok(())
/// # }
/// ```
///
/// # Shutdown
///
/// [`shutdown`](Self::shutdown) stops accepting, closes every connection (both sides), and
/// returns once the port and every socket are closed.
///
/// Dropping the proxy only sends the signal to stop, and returns at once: its task stops
/// accepting and ends the connections when it next runs, and the port stays bound until then.
/// The connections then end with a close or a reset, whichever comes first: to them, the
/// handle going away is also a [`reset_open_connections`](Self::reset_open_connections). A
/// test that needs the port closed, the connections gone or a known ending calls
/// `shutdown().await` instead. The proxy needs a tokio runtime (with the time driver) and
/// must not outlive it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    sever: watch::Sender<u64>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.shared.mode())
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a pass-through proxy on a free port of `127.0.0.1` in front of `upstream`.
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
    /// use palisade::testkit::{FaultProxy, FlakyServer, ProxyMode};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// assert_eq!(proxy.mode(), ProxyMode::PassThrough);
    /// assert_eq!(proxy.upstream(), server.addr());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(ProxyMode::PassThrough),
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            from_clients: AtomicU64::new(0),
            from_upstream: AtomicU64::new(0),
            changed: Notify::new(),
        });
        let (shutdown, stop) = watch::channel(false);
        let (sever, severed) = watch::channel(0);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop, severed));
        Ok(Self {
            addr,
            shared,
            shutdown,
            sever,
            task: Some(task),
        })
    }

    /// The address it listens on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::{FaultProxy, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// assert!(proxy.addr().ip().is_loopback());
    /// assert_ne!(proxy.addr(), server.addr());
    /// # Ok(())
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`, for HTTP clients.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{FaultProxy, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// assert_eq!(proxy.url(), format!("http://{}", proxy.addr()));
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let response = client
    ///     .get(format!("{}/via-proxy", proxy.url()).parse()?)
    ///     .await?;
    /// assert_eq!(response.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::{FaultProxy, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// assert_eq!(proxy.upstream(), server.addr());
    /// # Ok(())
    /// # }
    /// ```
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Treats connections accepted from now on as `mode` says.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::{FaultProxy, FlakyServer, ProxyMode};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// let client = Client::builder(TokioExecutor::new())
    ///     .pool_max_idle_per_host(0) // a new connection per request: each sees the mode in force
    ///     .build_http::<Empty<Bytes>>();
    /// let uri: hyper::Uri = proxy.url().parse()?;
    /// assert!(client.get(uri.clone()).await.is_ok());
    /// proxy.set(ProxyMode::Refuse);
    /// assert!(client.get(uri).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn set(&self, mode: ProxyMode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// The mode in force.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::{FaultProxy, FlakyServer, ProxyMode};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// proxy.set(ProxyMode::Throttle {
    ///     bytes_per_sec: 1024,
    /// });
    /// assert_eq!(
    ///     proxy.mode(),
    ///     ProxyMode::Throttle {
    ///         bytes_per_sec: 1024
    ///     }
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn mode(&self) -> ProxyMode {
        self.shared.mode()
    }

    /// Resets every connection open now (both sides, with a TCP reset), as a crashed
    /// dependency or a dropped network path would. A pooled client connection then fails
    /// on its next use.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tokio::io::AsyncReadExt;
    /// use palisade::testkit::{FaultProxy, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// let mut conn = tokio::net::TcpStream::connect(proxy.addr()).await?;
    /// proxy
    ///     .wait_for(Duration::from_secs(5), |s| s.connections_open == 1)
    ///     .await
    ///     .unwrap();
    /// proxy.reset_open_connections(); // as a crashed dependency would
    /// let read = conn.read(&mut [0; 16]).await;
    /// assert!(read.is_err() || read.is_ok_and(|n| n == 0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset_open_connections(&self) {
        self.sever
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// The counters now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use palisade::testkit::{FaultProxy, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// let _conn = tokio::net::TcpStream::connect(proxy.addr()).await?;
    /// proxy
    ///     .wait_for(Duration::from_secs(5), |s| s.connections_open == 1)
    ///     .await
    ///     .unwrap();
    /// assert_eq!(proxy.stats().connections_accepted, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
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
    /// use palisade::testkit::{FaultProxy, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// let conn = tokio::net::TcpStream::connect(proxy.addr()).await?;
    /// let open = proxy
    ///     .wait_for(Duration::from_secs(5), |s| s.connections_open == 1)
    ///     .await;
    /// assert!(open.is_ok());
    /// drop(conn);
    /// let closed = proxy
    ///     .wait_for(Duration::from_secs(5), |s| s.connections_open == 0)
    ///     .await;
    /// assert_eq!(closed.unwrap().connections_accepted, 1);
    /// // A condition that never comes true: the last counters seen, as an error.
    /// let never = proxy
    ///     .wait_for(Duration::from_millis(50), |s| s.connections_accepted == 99)
    ///     .await;
    /// assert_eq!(never.unwrap_err().connections_accepted, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for(
        &self,
        timeout: Duration,
        until: impl FnMut(&ProxyStats) -> bool,
    ) -> Result<ProxyStats, ProxyStats> {
        wait_for(&self.shared.changed, || self.shared.stats(), timeout, until).await
    }

    /// Stops accepting and closes every connection (both sides), and returns once the port and
    /// every socket are closed: the way to stop the proxy at a known point, where dropping it
    /// only sends the signal.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::{FaultProxy, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let proxy = FaultProxy::start(server.addr()).await?;
    /// let addr = proxy.addr();
    /// proxy.shutdown().await; // every connection is closed when it returns
    /// assert!(tokio::net::TcpStream::connect(addr).await.is_err());
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

impl Drop for FaultProxy {
    /// Sends the signal to stop, and no more: the task stops when it next runs (see
    /// [`FaultProxy::shutdown`]).
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    severed: watch::Receiver<u64>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    // The mode and the generation are read before the connection is counted
                    // open: someone who has seen it counted (`wait_for`) and then sets another
                    // mode leaves it under this one, and a reset they ask for applies to it,
                    // even if it comes before the connection's task first runs.
                    let mode = shared.mode();
                    let generation = *severed.borrow();
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let open = Open::new(&shared);
                    connections.spawn(serve(client, mode, open, generation, severed.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Abort every connection and wait until each task is gone, its sockets closed with it.
    connections.shutdown().await;
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Close normally (each side has been shut down or has gone away).
    Close,
    /// Close with a TCP reset.
    Reset,
}

/// Serves a connection until it ends, or until the reset generation moves on from `generation`.
async fn serve(
    mut client: TcpStream,
    mode: ProxyMode,
    open: Open,
    generation: u64,
    mut severed: watch::Receiver<u64>,
) {
    let shared = Arc::clone(&open.0);
    let _ = client.set_nodelay(true);
    // Both sockets live here, outside the future a reset drops, so that both can be reset.
    let mut upstream = None;
    let end = tokio::select! {
        end = run(&mut client, &mut upstream, mode, &shared) => end,
        () = async { let _ = severed.wait_for(|g| *g != generation).await; } => End::Reset,
    };
    if end == End::Reset {
        let _ = client.set_zero_linger();
        if let Some(upstream) = &upstream {
            let _ = upstream.set_zero_linger();
        }
    }
    drop(upstream);
    drop(client);
    drop(open);
}

/// Serves a connection as `mode` says, connecting to the upstream into `upstream`.
async fn run(
    client: &mut TcpStream,
    upstream: &mut Option<TcpStream>,
    mode: ProxyMode,
    shared: &Shared,
) -> End {
    let (per_chunk, reset_after, throttle) = match mode {
        ProxyMode::Refuse => return End::Reset,
        ProxyMode::Blackhole => return swallow(client, shared).await,
        ProxyMode::Delay { connect, per_chunk } => {
            tokio::time::sleep(connect).await;
            (per_chunk, None, None)
        }
        ProxyMode::PassThrough => (Duration::ZERO, None, None),
        ProxyMode::ResetAfter { bytes } => (Duration::ZERO, Some(bytes), None),
        ProxyMode::Throttle { bytes_per_sec } => (Duration::ZERO, None, Some(bytes_per_sec)),
    };
    let Ok(connected) = TcpStream::connect(shared.upstream).await else {
        // As a refused connection would look through a real proxy.
        return End::Reset;
    };
    let upstream = upstream.insert(connected);
    let _ = upstream.set_nodelay(true);
    let throttle = match throttle {
        // Nothing goes either way, and the connection ends when the client closes it.
        Some(0) => return swallow(client, shared).await,
        rate => rate.and_then(NonZeroU64::new),
    };
    {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let to_upstream = pipe(
            &mut client_read,
            &mut upstream_write,
            Pipe {
                per_chunk,
                limit: None,
                throttle,
                shared,
                counter: &shared.from_clients,
            },
        );
        let to_client = pipe(
            &mut upstream_read,
            &mut client_write,
            Pipe {
                per_chunk,
                limit: reset_after,
                throttle,
                shared,
                counter: &shared.from_upstream,
            },
        );
        tokio::pin!(to_upstream, to_client);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            if up_done && down_done {
                break End::Close;
            }
            let piped = tokio::select! {
                piped = &mut to_upstream, if !up_done => { up_done = true; piped }
                piped = &mut to_client, if !down_done => { down_done = true; piped }
            };
            if !matches!(piped, Ok(Piped::Eof)) {
                break End::Reset;
            }
        }
    }
}

/// Reads and counts what the client sends, forwarding nothing, until it closes (or resets)
/// the connection: then ours closes too.
async fn swallow(client: &mut TcpStream, shared: &Shared) -> End {
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = client.read(&mut buf).await {
        shared.count(&shared.from_clients, n);
    }
    End::Close
}

/// How one direction is copied.
struct Pipe<'a> {
    per_chunk: Duration,
    limit: Option<u64>,
    throttle: Option<NonZeroU64>,
    shared: &'a Shared,
    counter: &'a AtomicU64,
}

/// How a direction ended.
enum Piped {
    /// The reader reached its end; the writer has been shut down.
    Eof,
    /// The limit of bytes was forwarded.
    Limit,
}

async fn pipe<R, W>(reader: &mut R, writer: &mut W, pipe: Pipe<'_>) -> io::Result<Piped>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let chunk = match pipe.throttle {
        Some(bytes_per_sec) => usize::try_from(bytes_per_sec.get() / 20)
            .unwrap_or(usize::MAX)
            .clamp(1, 16 * 1024),
        None => 16 * 1024,
    };
    let mut buf = vec![0; chunk];
    let mut sent: u64 = 0;
    // The throttle's schedule: `paced` bytes due by `since + time_for(paced)`.
    let (mut since, mut paced) = (Instant::now(), 0_u64);
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            let _ = writer.shutdown().await;
            return Ok(Piped::Eof);
        }
        pipe.shared.count(pipe.counter, n);
        let forward = match pipe.limit {
            Some(limit) => n.min(usize::try_from(limit.saturating_sub(sent)).unwrap_or(usize::MAX)),
            None => n,
        };
        if !pipe.per_chunk.is_zero() {
            tokio::time::sleep(pipe.per_chunk).await;
        }
        if let Some(bytes_per_sec) = pipe.throttle.map(NonZeroU64::get) {
            // More than a chunk behind schedule means the direction sat idle (a slow
            // upstream, a pooled connection): start the schedule again, so that idle time
            // earns no credit and what follows still goes at the rate. A timer firing a little
            // late is no reason to: that much is caught up.
            let now = Instant::now();
            let behind_from = paced.saturating_add(chunk as u64);
            if now > since + time_for(behind_from, bytes_per_sec) {
                (since, paced) = (now, 0);
            }
            paced = paced.saturating_add(forward as u64);
            tokio::time::sleep_until(since + time_for(paced, bytes_per_sec)).await;
        }
        writer.write_all(&buf[..forward]).await?;
        sent = sent.saturating_add(forward as u64);
        if pipe.limit.is_some_and(|limit| sent >= limit) {
            writer.flush().await?;
            return Ok(Piped::Limit);
        }
    }
}
