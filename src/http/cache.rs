//! Stale-if-error for HTTP: the last good response per request, served when the dependency
//! fails.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, AUTHORIZATION, CACHE_CONTROL, COOKIE, HeaderName, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use http_body::Body;

use super::body::{CopyBudget, Tee, TeeEnd, Tracked};
use crate::error::ConfigError;
use crate::fallback::{CacheStats, Failure, Recover, Served, Stale, StaleCache};

/// What the key of a request is made from: its method, URI and headers.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use palisade::fallback::Recover;
/// use palisade::http::{HttpStaleCache, RequestHead, Tracked};
///
/// // The user's part of the key, from the request head: the tenant header; and nothing
/// // under /private/ is kept at all.
/// fn tenant(head: &RequestHead<'_>) -> Option<String> {
///     let tenant = head.headers.get("x-tenant")?.to_str().ok()?;
///     (!head.uri.contains("/private/")).then(|| tenant.to_owned())
/// }
/// let cache = HttpStaleCache::builder().user_key(tenant).build().unwrap();
/// let get = |path: &str| {
///     http::Request::get(path)
///         .header("x-tenant", "acme")
///         .body(())
///         .unwrap()
/// };
/// type Response = http::Response<Tracked<Empty<Bytes>>>;
/// assert!(Recover::<_, Response>::keep(&cache, &get("/catalog")).is_some());
/// assert!(Recover::<_, Response>::keep(&cache, &get("/private/orders")).is_none());
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI, as sent.
    pub uri: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
}

/// The key a response is kept under: method, URI, and the user's part.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use palisade::fallback::Recover;
/// use palisade::http::{CacheKey, HttpStaleCache, Tracked};
///
/// type Response = http::Response<Tracked<Empty<Bytes>>>;
/// let cache = HttpStaleCache::builder()
///     .user_key(|head| {
///         head.headers
///             .get("x-tenant")?
///             .to_str()
///             .ok()
///             .map(str::to_owned)
///     })
///     .build()
///     .unwrap();
/// let key = |tenant: &str| -> Option<CacheKey> {
///     let req = http::Request::get("http://inventory/items/7")
///         .header("x-tenant", tenant)
///         .body(())
///         .unwrap();
///     Recover::<_, Response>::keep(&cache, &req)
/// };
/// assert_eq!(key("acme"), key("acme"));
/// assert_ne!(key("acme"), key("globex")); // never served to another tenant
/// let post = http::Request::post("http://inventory/items")
///     .header("x-tenant", "acme")
///     .body(())
///     .unwrap();
/// assert_eq!(Recover::<_, Response>::keep(&cache, &post), None); // POST: not cached
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    method: Method,
    uri: String,
    user: String,
}

/// A kept response: its head and its whole body (and, through the reqwest adapter, its URL).
///
/// ```
/// # use std::sync::{Arc, atomic::{AtomicU16, Ordering::SeqCst}};
/// # use bytes::Bytes;
/// # use http_body_util::{BodyExt, Full};
/// # use palisade::http::{HttpStaleCache, Tracked};
/// # use tower::{BoxError, Layer, Service, ServiceExt};
/// # /// A client through a policy with `cache` as its fallback, of a server answering `status`
/// # /// with the request's path as the body and an `etag` header.
/// # fn client(
/// #     cache: &HttpStaleCache,
/// #     status: Arc<AtomicU16>,
/// # ) -> impl Service<
/// #     http::Request<()>,
/// #     Response = http::Response<Tracked<Full<Bytes>>>,
/// #     Error = BoxError,
/// # > {
/// #     let server = tower::service_fn(move |req: http::Request<()>| {
/// #         let res = http::Response::builder().status(status.load(SeqCst));
/// #         let res = res.header("etag", "\"v1\"");
/// #         let body = Full::new(Bytes::from(req.uri().path().to_owned()));
/// #         std::future::ready(res.body(body).map_err(std::io::Error::other))
/// #     });
/// #     let policy = palisade::policy::Policy::builder().http().fallback(cache.clone());
/// #     policy.build().unwrap().layer(server)
/// # }
/// # async fn read(res: http::Response<Tracked<Full<Bytes>>>) -> String {
/// #     String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
/// # }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::fallback::Stale;
///
/// let status = Arc::new(AtomicU16::new(200));
/// let cache = HttpStaleCache::builder().build().unwrap();
/// let mut client = client(&cache, status.clone());
/// let get = || http::Request::get("/catalog").body(()).unwrap();
///
/// let fresh = client.ready().await.unwrap().call(get()).await.unwrap();
/// assert_eq!(read(fresh).await, "/catalog"); // kept once its body has been read
///
/// status.store(503, SeqCst);
/// tokio::time::advance(Duration::from_secs(90)).await;
/// let stale = client.ready().await.unwrap().call(get()).await.unwrap();
/// // The kept response, head and body, with its age.
/// assert_eq!(stale.status(), 200);
/// assert_eq!(stale.headers()["etag"], "\"v1\"");
/// assert_eq!(stale.headers()["age"], "90");
/// assert_eq!(stale.extensions().get::<Stale>().unwrap().age, Duration::from_secs(90));
/// assert_eq!(read(stale).await, "/catalog");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CachedResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    /// The trailers the body ended with (a gRPC reply's status), replayed after it.
    trailers: Option<HeaderMap>,
    /// A reqwest response's URL, given back with it (`reqwest::Response::url`).
    #[cfg(feature = "reqwest")]
    url: Option<super::reqwest::ResponseUrl>,
}

impl CacheKey {
    /// What a key weighs in a cache, beside its entry: its method, URI and user key.
    fn size(&self) -> usize {
        self.method.as_str().len() + self.uri.len() + self.user.len()
    }
}

impl CachedResponse {
    fn size(&self) -> usize {
        let headers = header_bytes(&self.headers);
        #[cfg(feature = "reqwest")]
        let headers = headers + self.url.as_ref().map_or(0, |url| url.len());
        self.body.len() + headers
    }
}

type UserKey = dyn Fn(&RequestHead<'_>) -> Option<String> + Send + Sync;

/// What a header map weighs in a cache: its names and values.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

/// Whether a response may be served to other requests with its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// Yes.
    Shareable,
    /// No, but it says nothing against the key's older entry: it answers request headers
    /// that are not in the key (a 206 or 416 its `Range`; a 304 or 412 its `If-None-Match`,
    /// `If-Modified-Since`, `If-Match` or `If-Unmodified-Since`).
    Partial,
    /// No, and neither may the key's older entry be any more: the response sets a cookie, its
    /// server marked it `no-store` or `private`, forbids a shared cache to serve it stale
    /// (`no-cache`, `must-revalidate`, `proxy-revalidate`, `s-maxage`), or it varies on
    /// everything (`Vary: *`).
    Never,
}

/// How far `status` and `headers` let a response be shared. A `Cache-Control` or `Vary`
/// value that is not visible ASCII counts against.
fn sharing(status: StatusCode, headers: &HeaderMap) -> Sharing {
    // Whether any comma-separated element of a `name` header says one of `says` (its token
    // before any `=`, without case).
    let any_says = |name: HeaderName, says: &[&str]| {
        headers
            .get_all(name)
            .iter()
            .any(|value| match value.to_str() {
                Ok(value) => value.split(',').any(|element| {
                    let token = element.split('=').next().unwrap_or_default().trim();
                    says.iter().any(|s| token.eq_ignore_ascii_case(s))
                }),
                Err(_) => true,
            })
    };
    let never = headers.contains_key(SET_COOKIE)
        || any_says(
            CACHE_CONTROL,
            &[
                "no-store",
                "private",
                "no-cache",
                "must-revalidate",
                "proxy-revalidate",
                "s-maxage",
            ],
        )
        || any_says(VARY, &["*"]);
    if never {
        Sharing::Never
    } else if matches!(
        status,
        StatusCode::PARTIAL_CONTENT
            | StatusCode::RANGE_NOT_SATISFIABLE
            | StatusCode::NOT_MODIFIED
            | StatusCode::PRECONDITION_FAILED
    ) {
        Sharing::Partial
    } else {
        Sharing::Shareable
    }
}

/// Stale-if-error for HTTP responses (and reqwest's, through the `reqwest` policy): a
/// [`Recover`] for a [`FallbackLayer`](crate::fallback::FallbackLayer) or
/// [`PolicyBuilder::fallback`](crate::policy::PolicyBuilder::fallback).
///
/// * Keeps the last response classified as a success per key: method + URI + the part
///   [`user_key`](HttpStaleCacheBuilder::user_key) returns (**include the tenant or a hash of
///   the credentials wherever responses differ per user**, or one user may be served another's
///   response). Only GET and HEAD by default. Without a user key, a request carrying
///   `Authorization` or `Cookie` is not cached at all; that check sees the request as it
///   reaches the cache's layer, not headers a client adds below it (reqwest's
///   `default_headers` and cookie store): a cache shared by clients with different
///   credentials needs a user key.
/// * Keeps only a response it may serve to another request with the same key: not a 206 or
///   416 (it answers its request's `Range`), nor a 304 or 412 (it answers its request's
///   conditional headers: a 304 has no body to serve), which leave the key's older entry as
///   it is; and nothing with `Set-Cookie`, nothing whose `Cache-Control` says `no-store`,
///   `private`, `no-cache`, `must-revalidate`, `proxy-revalidate` or `s-maxage` (each
///   forbids a shared cache to serve it stale), nothing with `Vary: *`, whatever its status:
///   such a response also drops the key's older entry, which no longer stands for what the
///   dependency answers, and keeps out a response whose head came before its own and whose
///   body ends after it (the last 1 024 refusals are remembered, apart from the entries).
///   Other `Vary` headers are not looked at: a response that differs by a request header the
///   key leaves out (such as `Accept-Language`) needs that header in the user key.
/// * The body is copied as the caller reads it, up to
///   [`max_entry_bytes`](HttpStaleCacheBuilder::max_entry_bytes); a larger body passes
///   through uncached (and the key's entry is dropped, unless its head came later). The copies of all the bodies
///   being read at once hold at most [`max_bytes`](HttpStaleCacheBuilder::max_bytes)
///   between them; a body whose copy would go over passes through uncached (the older entry
///   stays). A response is kept only once its body has ended cleanly, with the trailers it
///   ended with (a gRPC reply's status), which are replayed after its data.
/// * When a call fails, serves the kept response if at most
///   [`max_stale`](HttpStaleCacheBuilder::max_stale) old, counted from when its head arrived
///   plus any `Age` an upstream cache gave it, with an `Age` header (whole seconds, the two
///   added) and the [`Stale`] extension carrying that age exactly (and, through the reqwest
///   adapter, its URL).
/// * Bounded in entries and bytes (an entry weighs its key, head and body); the oldest go
///   first. So at most `max_bytes` kept and `max_bytes` being copied, and besides them the
///   keys of the last 1 024 refusals.
///
/// Under a [`FallbackLayer`](crate::fallback::FallbackLayer) of your own, give the layer an
/// HTTP classifier ([`HttpClassifier`](crate::classify::http::HttpClassifier), or the gRPC
/// one) with `with_classifier`: its default classifier counts every response as a success, so
/// a 503 would be kept as the last good response and never be recovered. A [`Policy`](crate::policy::Policy) with `.http()`
/// or `.grpc()` does this for you.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use palisade::http::HttpStaleCache;
///
/// let cache = HttpStaleCache::builder()
///     .max_stale(Duration::from_secs(600))
///     .user_key(|head| {
///         // One entry per tenant; requests without a tenant are not cached.
///         head.headers.get("x-tenant")?.to_str().ok().map(str::to_owned)
///     })
///     .build()
///     .unwrap();
/// # let _ = cache;
/// ```
#[derive(Clone)]
pub struct HttpStaleCache {
    store: StaleCache<(), CachedResponse, CacheKey>,
    user: Option<Arc<UserKey>>,
    methods: Arc<[Method]>,
    /// What the bodies being copied hold at once: at most `max_bytes`.
    copying: Arc<CopyBudget>,
}

impl fmt::Debug for HttpStaleCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStaleCache")
            .field("store", &self.store)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

impl HttpStaleCache {
    /// A builder with the defaults: 5 minutes stale at most, 10 000 entries, 64 MiB, 1 MiB per
    /// response, GET and HEAD, no user key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::http::HttpStaleCache;
    ///
    /// let cache = HttpStaleCache::builder()
    ///     .max_stale(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.stats().entries, 0);
    /// ```
    pub fn builder() -> HttpStaleCacheBuilder {
        HttpStaleCacheBuilder {
            max_stale: Duration::from_secs(300),
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            user: None,
            methods: vec![Method::GET, Method::HEAD],
        }
    }

    /// Entries, bytes, and responses stored, served and too large.
    ///
    /// ```
    /// # use std::sync::{Arc, atomic::{AtomicU16, Ordering::SeqCst}};
    /// # use bytes::Bytes;
    /// # use http_body_util::{BodyExt, Full};
    /// # use palisade::http::{HttpStaleCache, Tracked};
    /// # use tower::{BoxError, Layer, Service, ServiceExt};
    /// # fn client(
    /// #     cache: &HttpStaleCache,
    /// #     status: Arc<AtomicU16>,
    /// # ) -> impl Service<
    /// #     http::Request<()>,
    /// #     Response = http::Response<Tracked<Full<Bytes>>>,
    /// #     Error = BoxError,
    /// # > {
    /// #     let server = tower::service_fn(move |req: http::Request<()>| {
    /// #         let res = http::Response::builder().status(status.load(SeqCst));
    /// #         let body = Full::new(Bytes::from(req.uri().path().to_owned()));
    /// #         std::future::ready(res.body(body).map_err(std::io::Error::other))
    /// #     });
    /// #     let policy = palisade::policy::Policy::builder().http().fallback(cache.clone());
    /// #     policy.build().unwrap().layer(server)
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let status = Arc::new(AtomicU16::new(200));
    /// let cache = HttpStaleCache::builder().build().unwrap();
    /// let mut client = client(&cache, status.clone());
    /// for path in ["/a", "/b"] {
    ///     let req = http::Request::get(path).body(()).unwrap();
    ///     let res = client.ready().await.unwrap().call(req).await.unwrap();
    ///     res.into_body().collect().await.unwrap();
    /// }
    /// status.store(503, SeqCst);
    /// let req = http::Request::get("/a").body(()).unwrap();
    /// let _ = client.ready().await.unwrap().call(req).await.unwrap();
    /// let stats = cache.stats();
    /// assert_eq!((stats.entries, stats.stored, stats.served), (2, 2, 1));
    /// # }
    /// ```
    pub fn stats(&self) -> CacheStats {
        self.store.stats()
    }

    fn key(&self, head: RequestHead<'_>) -> Option<CacheKey> {
        if !self.methods.contains(head.method) {
            return None;
        }
        let user = match &self.user {
            Some(user) => user(&head)?,
            // Credentials with no user key to keep them apart: never shared.
            None if head.headers.contains_key(AUTHORIZATION)
                || head.headers.contains_key(COOKIE) =>
            {
                return None;
            }
            None => String::new(),
        };
        Some(CacheKey {
            method: head.method.clone(),
            uri: head.uri.to_owned(),
            user,
        })
    }

    /// Keeps `response` under `key` once its body has ended cleanly, then calls `stored` with
    /// the number of entries (also when it was refused as too large; not if the body broke).
    fn watch<B: Body>(
        &self,
        key: CacheKey,
        response: &mut Response<Tracked<B>>,
        stored: impl FnOnce(usize) + Send + Sync + 'static,
    ) {
        // Its age counts from its head, however long its body takes to read; its head's
        // place decides against other responses and refusals for the key.
        let current = self.store.current();
        match sharing(response.status(), response.headers()) {
            Sharing::Shareable => {}
            Sharing::Partial => return stored(self.store.stats().entries),
            Sharing::Never => {
                self.store.forget(key, current);
                return stored(self.store.stats().entries);
            }
        }
        let cached = CachedResponse {
            status: response.status(),
            version: response.version(),
            headers: response.headers().clone(),
            body: Bytes::new(),
            trailers: None,
            #[cfg(feature = "reqwest")]
            url: response
                .extensions()
                .get::<super::reqwest::ResponseUrl>()
                .cloned(),
        };
        // (A gRPC reply's end decides, even one that has come: with no trailers, nothing
        // is kept.)
        // An entry's weight counts its key's too: a cache of long URIs or user keys stays
        // within `max_bytes`.
        let head_size = key.size() + cached.size();
        if response.body().is_drained() && !response.body().awaits_trailers() {
            let size = head_size;
            self.store.store_at(key, cached, size, current);
            stored(self.store.stats().entries);
            return;
        }
        let store = self.store.clone();
        let cap = self.store.max_entry_bytes().saturating_sub(head_size);
        let done = Box::new(move |end: TeeEnd| match end {
            TeeEnd::Whole(body, trailers) => {
                let size = head_size + body.len() + trailers.as_ref().map_or(0, header_bytes);
                let kept = CachedResponse {
                    body,
                    trailers,
                    ..cached
                };
                store.store_at(key, kept, size, current);
                stored(store.stats().entries);
            }
            TeeEnd::TooLarge => {
                store.too_large(key, current);
                stored(store.stats().entries);
            }
            // A body that broke or was dropped says nothing new: the older entry stays.
            TeeEnd::Abandoned => {}
        });
        response
            .body_mut()
            .set_tee(Tee::new(cap, self.copying.clone(), done));
    }

    fn serve<B>(&self, key: &CacheKey) -> Option<(Response<Tracked<B>>, Served)> {
        let (cached, age) = self.store.lookup(key)?;
        // The age it had when kept (an upstream cache's `Age`), plus its age here, is what
        // `max_stale` bounds; a hostile upstream value saturates.
        let upstream = cached
            .headers
            .get(AGE)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let age = age.saturating_add(Duration::from_secs(upstream));
        if age > self.store.max_stale() {
            return None;
        }
        let mut response =
            Response::new(Tracked::replay_with_trailers(cached.body, cached.trailers));
        *response.status_mut() = cached.status;
        *response.version_mut() = cached.version;
        *response.headers_mut() = cached.headers;
        #[cfg(feature = "reqwest")]
        if let Some(url) = cached.url {
            url.set(response.extensions_mut());
        }
        response
            .headers_mut()
            .insert(AGE, HeaderValue::from(age.as_secs()));
        let stale = Stale { age };
        response.extensions_mut().insert(stale);
        self.store.count_served();
        Some((response, Served::Stale(stale)))
    }
}

/// `Recover` for a request type: only `keep` (how the request's head is read) differs.
macro_rules! recover_for {
    ([$($generic:ident),*] $req:ty, |$cache:ident, $r:ident| $keep:expr) => {
        impl<$($generic,)* B: Body> Recover<$req, Response<Tracked<B>>> for HttpStaleCache {
            type Kept = Option<CacheKey>;

            fn keep(&self, $r: &$req) -> Option<CacheKey> {
                let $cache = self;
                $keep
            }

            fn recover(
                &self,
                kept: Option<CacheKey>,
                failure: Failure<Response<Tracked<B>>>,
            ) -> Result<Response<Tracked<B>>, Failure<Response<Tracked<B>>>> {
                match kept.as_ref().and_then(|key| self.serve(key)) {
                    Some((res, _)) => Ok(res),
                    None => Err(failure),
                }
            }

            fn recover_served(
                &self,
                kept: Option<CacheKey>,
                failure: Failure<Response<Tracked<B>>>,
            ) -> Result<(Response<Tracked<B>>, Served), Failure<Response<Tracked<B>>>> {
                match kept.as_ref().and_then(|key| self.serve(key)) {
                    Some(served) => Ok(served),
                    None => Err(failure),
                }
            }

            fn succeeded(&self, kept: Option<CacheKey>, response: &mut Response<Tracked<B>>) {
                if let Some(key) = kept {
                    self.watch(key, response, |_| {});
                }
            }

            fn succeeded_then<F>(
                &self,
                kept: Option<CacheKey>,
                response: &mut Response<Tracked<B>>,
                stored: F,
            ) where
                F: FnOnce(Option<usize>) + Send + Sync + 'static,
            {
                match kept {
                    // Reported when the body has ended and the response is kept.
                    Some(key) => self.watch(key, response, move |entries| stored(Some(entries))),
                    None => stored(Some(self.store.stats().entries)),
                }
            }

            fn cached_entries(&self) -> Option<usize> {
                Some(self.store.stats().entries)
            }
        }
    };
}

recover_for!([ReqB] http::Request<ReqB>, |cache, req| {
    let uri = req.uri().to_string();
    cache.key(RequestHead {
        method: req.method(),
        uri: &uri,
        headers: req.headers(),
    })
});

#[cfg(feature = "reqwest")]
recover_for!([] reqwest::Request, |cache, req| cache.key(RequestHead {
    method: req.method(),
    uri: req.url().as_str(),
    headers: req.headers(),
}));

/// Builds an [`HttpStaleCache`].
///
/// ```
/// use std::time::Duration;
/// use palisade::http::HttpStaleCache;
///
/// let cache = HttpStaleCache::builder()
///     .max_stale(Duration::from_secs(600))
///     .max_entries(1_000)
///     .max_bytes(16 << 20)
///     .max_entry_bytes(256 << 10)
///     .methods([http::Method::GET])
///     .user_key(|head| {
///         head.headers
///             .get("x-tenant")?
///             .to_str()
///             .ok()
///             .map(str::to_owned)
///     })
///     .build()
///     .unwrap();
/// # let _ = cache;
/// ```
pub struct HttpStaleCacheBuilder {
    max_stale: Duration,
    max_entries: usize,
    max_bytes: usize,
    max_entry_bytes: usize,
    user: Option<Arc<UserKey>>,
    methods: Vec<Method>,
}

impl fmt::Debug for HttpStaleCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStaleCacheBuilder")
            .field("max_stale", &self.max_stale)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

impl HttpStaleCacheBuilder {
    /// The oldest a response may be and still be served.
    ///
    /// ```
    /// # use std::sync::{Arc, atomic::{AtomicU16, Ordering::SeqCst}};
    /// # use bytes::Bytes;
    /// # use http_body_util::{BodyExt, Full};
    /// # use palisade::http::{HttpStaleCache, Tracked};
    /// # use tower::{BoxError, Layer, Service, ServiceExt};
    /// # fn client(
    /// #     cache: &HttpStaleCache,
    /// #     status: Arc<AtomicU16>,
    /// # ) -> impl Service<
    /// #     http::Request<()>,
    /// #     Response = http::Response<Tracked<Full<Bytes>>>,
    /// #     Error = BoxError,
    /// # > {
    /// #     let server = tower::service_fn(move |req: http::Request<()>| {
    /// #         let res = http::Response::builder().status(status.load(SeqCst));
    /// #         let body = Full::new(Bytes::from(req.uri().path().to_owned()));
    /// #         std::future::ready(res.body(body).map_err(std::io::Error::other))
    /// #     });
    /// #     let policy = palisade::policy::Policy::builder().http().fallback(cache.clone());
    /// #     policy.build().unwrap().layer(server)
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let status = Arc::new(AtomicU16::new(200));
    /// let cache = HttpStaleCache::builder().max_stale(Duration::from_secs(60)).build().unwrap();
    /// let mut client = client(&cache, status.clone());
    /// let get = || http::Request::get("/catalog").body(()).unwrap();
    /// let res = client.ready().await.unwrap().call(get()).await.unwrap();
    /// res.into_body().collect().await.unwrap();
    ///
    /// status.store(503, SeqCst);
    /// tokio::time::advance(Duration::from_secs(60)).await;
    /// assert_eq!(client.ready().await.unwrap().call(get()).await.unwrap().status(), 200); // stale
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// // Too old.
    /// assert_eq!(client.ready().await.unwrap().call(get()).await.unwrap().status(), 503);
    /// # }
    /// ```
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// At most this many responses are kept.
    ///
    /// ```
    /// use palisade::http::HttpStaleCache;
    ///
    /// assert!(HttpStaleCache::builder().max_entries(100).build().is_ok());
    /// assert_eq!(
    ///     HttpStaleCache::builder()
    ///         .max_entries(0)
    ///         .build()
    ///         .unwrap_err()
    ///         .field(),
    ///     "max_entries"
    /// );
    /// ```
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// At most this many bytes (keys, bodies and headers) are kept.
    ///
    /// ```
    /// use palisade::http::HttpStaleCache;
    ///
    /// assert!(HttpStaleCache::builder().max_bytes(8 << 20).build().is_ok());
    /// // At least one response of the largest size must fit.
    /// let err = HttpStaleCache::builder()
    ///     .max_entry_bytes(1 << 20)
    ///     .max_bytes(1 << 10)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "max_bytes");
    /// ```
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// A response larger than this (with its key: body, headers, method, URI and user key) is
    /// passed through uncached.
    ///
    /// ```
    /// # use std::sync::{Arc, atomic::{AtomicU16, Ordering::SeqCst}};
    /// # use bytes::Bytes;
    /// # use http_body_util::{BodyExt, Full};
    /// # use palisade::http::{HttpStaleCache, Tracked};
    /// # use tower::{BoxError, Layer, Service, ServiceExt};
    /// # fn client(
    /// #     cache: &HttpStaleCache,
    /// #     status: Arc<AtomicU16>,
    /// # ) -> impl Service<
    /// #     http::Request<()>,
    /// #     Response = http::Response<Tracked<Full<Bytes>>>,
    /// #     Error = BoxError,
    /// # > {
    /// #     let server = tower::service_fn(move |req: http::Request<()>| {
    /// #         let res = http::Response::builder().status(status.load(SeqCst));
    /// #         let body = Full::new(Bytes::from(req.uri().path().to_owned()));
    /// #         std::future::ready(res.body(body).map_err(std::io::Error::other))
    /// #     });
    /// #     let policy = palisade::policy::Policy::builder().http().fallback(cache.clone());
    /// #     policy.build().unwrap().layer(server)
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let status = Arc::new(AtomicU16::new(200));
    /// let cache = HttpStaleCache::builder().max_entry_bytes(16).build().unwrap();
    /// let mut client = client(&cache, status);
    /// for path in ["/short", "/a/path/far/longer/than/sixteen/bytes"] {
    ///     let req = http::Request::get(path).body(()).unwrap();
    ///     let res = client.ready().await.unwrap().call(req).await.unwrap();
    ///     res.into_body().collect().await.unwrap(); // read in full either way
    /// }
    /// assert_eq!((cache.stats().entries, cache.stats().too_large), (1, 1));
    /// # }
    /// ```
    pub fn max_entry_bytes(mut self, max_entry_bytes: usize) -> Self {
        self.max_entry_bytes = max_entry_bytes;
        self
    }

    /// The part of the key that tells users apart (a tenant, a hash of the credentials).
    /// `None` from it leaves that request uncached.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use palisade::fallback::Recover;
    /// use palisade::http::{HttpStaleCache, Tracked};
    ///
    /// type Response = http::Response<Tracked<Empty<Bytes>>>;
    /// // One entry per tenant; a request without a tenant is not cached at all.
    /// let cache = HttpStaleCache::builder()
    ///     .user_key(|head| {
    ///         head.headers
    ///             .get("x-tenant")?
    ///             .to_str()
    ///             .ok()
    ///             .map(str::to_owned)
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let with = http::Request::get("/orders")
    ///     .header("x-tenant", "acme")
    ///     .body(())
    ///     .unwrap();
    /// let without = http::Request::get("/orders").body(()).unwrap();
    /// assert!(Recover::<_, Response>::keep(&cache, &with).is_some());
    /// assert!(Recover::<_, Response>::keep(&cache, &without).is_none());
    /// ```
    pub fn user_key(
        mut self,
        user_key: impl Fn(&RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.user = Some(Arc::new(user_key));
        self
    }

    /// The methods whose responses are kept (default GET and HEAD). Take care with others: a
    /// response to a POST stands for one request, not for the resource.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use palisade::fallback::Recover;
    /// use palisade::http::{HttpStaleCache, Tracked};
    ///
    /// type Response = http::Response<Tracked<Empty<Bytes>>>;
    /// let cache = HttpStaleCache::builder()
    ///     .methods([http::Method::GET])
    ///     .build()
    ///     .unwrap();
    /// let head = http::Request::head("/orders").body(()).unwrap();
    /// assert!(Recover::<_, Response>::keep(&cache, &head).is_none()); // HEAD no longer cached
    /// assert!(HttpStaleCache::builder().methods([]).build().is_err());
    /// ```
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// The cache; a [`ConfigError`] names the field that is out of range.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::http::HttpStaleCache;
    ///
    /// assert!(HttpStaleCache::builder().build().is_ok());
    /// let err = HttpStaleCache::builder()
    ///     .max_stale(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "max_stale");
    /// ```
    pub fn build(self) -> Result<HttpStaleCache, ConfigError> {
        if self.methods.is_empty() {
            return Err(ConfigError::new("methods", "must not be empty", "[]"));
        }
        let store = StaleCache::<(), CachedResponse, CacheKey>::builder(|()| None)
            .max_stale(self.max_stale)
            .max_entries(self.max_entries)
            .max_bytes(self.max_bytes)
            .max_entry_bytes(self.max_entry_bytes)
            .build()?;
        Ok(HttpStaleCache {
            store,
            user: self.user,
            methods: self.methods.into(),
            copying: Arc::new(CopyBudget::new(self.max_bytes)),
        })
    }
}
