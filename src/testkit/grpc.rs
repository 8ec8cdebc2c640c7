//! The testkit's gRPC service, `palisade.testkit.Echo`, and a client for it that runs over a
//! real tonic transport.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use palisade::testkit::grpc::{EchoClient, EchoRequest};
//! use palisade::testkit::{Fault, FlakyServer, GrpcStatusIn};
//!
//! let server = FlakyServer::start().await?;
//! let channel = tonic::transport::Endpoint::from_shared(server.url())?.connect().await?;
//! let mut client = EchoClient::new(channel);
//!
//! let reply = client.say(EchoRequest::new("hello")).await?;
//! assert_eq!(reply.get_ref().message, "hello");
//!
//! server.set(Fault::grpc_status(tonic::Code::Unavailable, "overloaded", GrpcStatusIn::Trailers));
//! let status = client.say(EchoRequest::new("hello")).await.unwrap_err();
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! assert_eq!(status.message(), "overloaded");
//! # Ok(())
//! # }
//! ```
//!
//! The messages are hand-derived [`prost`] messages (no `protoc`, no build script); their
//! schema is:
//!
//! ```proto
//! syntax = "proto3";
//! package palisade.testkit;
//!
//! service Echo {
//!   rpc Say(EchoRequest) returns (EchoReply);
//! }
//! message EchoRequest { string message = 1; }
//! message EchoReply { string message = 1; }
//! ```

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use http::uri::PathAndQuery;
use tonic::client::GrpcService;

/// The gRPC service name, as it appears in the path.
///
/// ```
/// use palisade::testkit::grpc::{METHOD, SAY_PATH, SERVICE};
///
/// assert_eq!(format!("/{SERVICE}/{METHOD}"), SAY_PATH);
/// ```
pub const SERVICE: &str = "palisade.testkit.Echo";

/// The one method of [`SERVICE`].
///
/// ```
/// use palisade::testkit::grpc::{METHOD, SERVICE};
///
/// // As tonic reports the method being called, to a layer that reads it from the extensions.
/// let method = tonic::GrpcMethod::new(SERVICE, METHOD);
/// assert_eq!(method.method(), "Say");
/// ```
pub const METHOD: &str = "Say";

/// The request path of `Echo/Say`: `/palisade.testkit.Echo/Say`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use palisade::testkit::grpc::SAY_PATH;
/// use palisade::testkit::FlakyServer;
///
/// // A raw gRPC request over HTTP/2: an empty message (5 zero bytes) to the Say path.
/// let server = FlakyServer::start().await?;
/// let client = Client::builder(TokioExecutor::new())
///     .http2_only(true)
///     .build_http::<Full<Bytes>>();
/// let request = http::Request::post(format!("{}{SAY_PATH}", server.url()))
///     .header("content-type", "application/grpc")
///     .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))?;
/// let response = client.request(request).await?;
/// assert_eq!(response.headers()["content-type"], "application/grpc");
/// assert_eq!(server.stats().grpc_requests, 1);
/// # Ok(())
/// # }
/// ```
pub const SAY_PATH: &str = "/palisade.testkit.Echo/Say";

/// The request of `Echo/Say`.
///
/// ```
/// use palisade::testkit::grpc::EchoRequest;
/// use prost::Message;
///
/// let request = EchoRequest::new("hello");
/// let bytes = request.encode_to_vec();
/// assert_eq!(EchoRequest::decode(&bytes[..]).unwrap(), request);
/// ```
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EchoRequest {
    /// The text to echo.
    #[prost(string, tag = "1")]
    pub message: String,
}

impl EchoRequest {
    /// A request to echo `message`.
    ///
    /// ```
    /// use palisade::testkit::grpc::EchoRequest;
    ///
    /// assert_eq!(EchoRequest::new("hello").message, "hello");
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The reply of `Echo/Say`: the request's text (or, for a slow or reset body, filler).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use palisade::testkit::grpc::{EchoClient, EchoReply, EchoRequest};
/// use palisade::testkit::FlakyServer;
///
/// let server = FlakyServer::start().await?;
/// let channel = tonic::transport::Endpoint::from_shared(server.url())?
///     .connect()
///     .await?;
/// let reply: EchoReply = EchoClient::new(channel)
///     .say(EchoRequest::new("ping"))
///     .await?
///     .into_inner();
/// assert_eq!(reply.message, "ping");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EchoReply {
    /// The echoed text.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// A client of the testkit's `Echo` service over any gRPC transport: a tonic
/// [`Channel`](https://docs.rs/tonic/latest/tonic/transport/struct.Channel.html), or a
/// channel wrapped in tower layers (palisade's among them).
///
/// It is a thin wrapper over [`tonic::client::Grpc`], the same machinery generated clients use,
/// with the [`prost`] codec of `tonic-prost`.
///
/// # Errors
///
/// [`say`](Self::say) returns a [`tonic::Status`]. An error of the transport (or of a layer
/// around it, such as palisade's [`CircuitOpen`](crate::error::CircuitOpen)) becomes a status
/// whose [`source`](std::error::Error::source) is that error, so
/// [`error_kind`](crate::error::error_kind) still finds it.
///
/// # Clone
///
/// Clones share what the transport's clones share (a `Channel`'s clones share its connection).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::error::{error_kind, ErrorKind};
/// use palisade::policy::Policy;
/// use palisade::testkit::grpc::{EchoClient, EchoRequest};
/// use palisade::testkit::FlakyServer;
/// use tower::Layer;
///
/// let server = FlakyServer::start().await?;
/// let channel = tonic::transport::Endpoint::from_shared(server.url())?
///     .connect()
///     .await?;
/// let policy = Policy::builder()
///     .grpc()
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .build()?;
/// policy.circuit_breaker().unwrap().force_open();
/// let mut client = EchoClient::new(policy.layer(channel));
/// let status = client.say(EchoRequest::new("hello")).await.unwrap_err();
/// // The layer's error is the status's source: error_kind finds it.
/// assert!(matches!(error_kind(&status), ErrorKind::CircuitOpen(_)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EchoClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> fmt::Debug for EchoClient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoClient")
            .field("transport", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> EchoClient<T> {
    /// A client sending requests through `transport` (whose requests carry their own
    /// authority, as a tonic `Channel`'s do).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use palisade::testkit::grpc::{EchoClient, EchoRequest};
    /// use palisade::testkit::FlakyServer;
    ///
    /// let server = FlakyServer::start().await?;
    /// let channel = tonic::transport::Endpoint::from_shared(server.url())?
    ///     .connect()
    ///     .await?;
    /// let mut client = EchoClient::new(channel);
    /// assert_eq!(
    ///     client.say(EchoRequest::new("hi")).await?.get_ref().message,
    ///     "hi"
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(transport: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(transport),
        }
    }

    /// A client that sets the scheme and authority of every request from `origin`
    /// (`http://127.0.0.1:port`): needed for a bare HTTP/2 connection that does not add them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::testkit::grpc::{EchoClient, EchoRequest};
    /// use palisade::testkit::FlakyServer;
    ///
    /// // hyper's client needs absolute URIs; the origin supplies scheme and authority.
    /// let server = FlakyServer::start().await?;
    /// let http2 = Client::builder(TokioExecutor::new())
    ///     .http2_only(true)
    ///     .build_http::<tonic::body::Body>();
    /// let mut client = EchoClient::with_origin(http2, server.url().parse()?);
    /// assert_eq!(
    ///     client
    ///         .say(EchoRequest::new("over hyper"))
    ///         .await?
    ///         .get_ref()
    ///         .message,
    ///     "over hyper"
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_origin(transport: T, origin: http::Uri) -> Self {
        Self {
            inner: tonic::client::Grpc::with_origin(transport, origin),
        }
    }

    /// The gRPC client underneath.
    ///
    /// ```
    /// use palisade::testkit::grpc::EchoClient;
    ///
    /// let client = EchoClient::new(tower::service_fn(
    ///     |_: http::Request<tonic::body::Body>| async {
    ///         Err::<http::Response<tonic::body::Body>, _>(std::io::Error::other(
    ///             "no transport",
    ///         ))
    ///     },
    /// ));
    /// let _grpc: &tonic::client::Grpc<_> = client.get_ref();
    /// ```
    pub fn get_ref(&self) -> &tonic::client::Grpc<T> {
        &self.inner
    }

    /// The gRPC client underneath, mutably.
    ///
    /// ```
    /// use palisade::testkit::grpc::EchoClient;
    ///
    /// let mut client = EchoClient::new(tower::service_fn(
    ///     |_: http::Request<tonic::body::Body>| async {
    ///         Err::<http::Response<tonic::body::Body>, _>(std::io::Error::other(
    ///             "no transport",
    ///         ))
    ///     },
    /// ));
    /// // Settings of the gRPC client underneath, such as the largest reply accepted.
    /// let grpc = client.get_mut();
    /// *grpc = grpc.clone().max_decoding_message_size(1 << 20);
    /// ```
    pub fn get_mut(&mut self) -> &mut tonic::client::Grpc<T> {
        &mut self.inner
    }

    /// The gRPC client underneath, consuming the wrapper.
    ///
    /// ```
    /// use palisade::testkit::grpc::EchoClient;
    ///
    /// let client = EchoClient::new(tower::service_fn(
    ///     |_: http::Request<tonic::body::Body>| async {
    ///         Err::<http::Response<tonic::body::Body>, _>(std::io::Error::other(
    ///             "no transport",
    ///         ))
    ///     },
    /// ));
    /// let grpc: tonic::client::Grpc<_> = client.into_inner();
    /// # let _ = grpc;
    /// ```
    pub fn into_inner(self) -> tonic::client::Grpc<T> {
        self.inner
    }
}

impl<T> EchoClient<T>
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<tower::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tower::BoxError> + Send,
{
    /// Calls `Echo/Say` (unary): waits for the transport to be ready, then sends the request
    /// and decodes the reply.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use palisade::testkit::grpc::{EchoClient, EchoRequest};
    /// use palisade::testkit::{Fault, FlakyServer};
    ///
    /// let server = FlakyServer::start().await?;
    /// let channel = tonic::transport::Endpoint::from_shared(server.url())?
    ///     .connect()
    ///     .await?;
    /// let mut client = EchoClient::new(channel);
    /// // A tonic::Request carries metadata and a deadline of its own.
    /// let mut request = tonic::Request::new(EchoRequest::new("hello"));
    /// request.set_timeout(Duration::from_millis(100));
    /// server.set(Fault::hang());
    /// let status = client.say(request).await.unwrap_err();
    /// assert_eq!(status.code(), tonic::Code::Cancelled); // tonic gave up at the deadline
    ///
    /// # Ok(())
    /// # }
    /// ```
    pub async fn say(
        &mut self,
        request: impl tonic::IntoRequest<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, tonic::Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::from_error(e.into()))?;
        let mut request = request.into_request();
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new(SERVICE, METHOD));
        let codec = tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default();
        self.inner
            .unary(request, PathAndQuery::from_static(SAY_PATH), codec)
            .await
    }
}

/// One length-prefixed gRPC message (uncompressed) carrying `message`.
pub(crate) fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with enough capacity cannot fail; an error leaves the frame short.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// The start of a gRPC frame (uncompressed) carrying an `EchoReply` of `n` bytes of filler:
/// the frame's flag and length, then the message's key and length. The `n` bytes of the
/// message's text are left out, for the caller to send after it as they are made, so that a
/// reply of any size is never held in memory. A message past 4 GiB has no length a frame can
/// carry: the frame says `u32::MAX`.
pub(crate) fn filler_frame_head(n: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_u8(0);
    if n == 0 {
        // proto3 leaves an empty string out: the message is empty.
        buf.put_u32(0);
        return buf.freeze();
    }
    let text_len = prost::length_delimiter_len(n);
    let len = (1 + text_len as u64).saturating_add(n as u64);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Field 1 (`message`), length-delimited.
    buf.put_u8(0x0A);
    // The buffer grows as needed: encoding the length cannot fail.
    let _ = prost::encode_length_delimiter(n, &mut buf);
    buf.freeze()
}

/// Why a request body is not one `EchoRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadRequest {
    /// The compressed flag is set: the server supports no compression.
    Compressed,
    /// Not a well-formed message.
    Malformed,
}

/// The first message of a gRPC request body. An empty body is the default message.
pub(crate) fn decode_request(body: &[u8]) -> Result<EchoRequest, BadRequest> {
    if body.is_empty() {
        return Ok(EchoRequest::default());
    }
    let [flag, a, b, c, d, rest @ ..] = body else {
        return Err(BadRequest::Malformed);
    };
    if *flag != 0 {
        return Err(BadRequest::Compressed);
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    let message = rest.get(..len).ok_or(BadRequest::Malformed)?;
    <EchoRequest as prost::Message>::decode(message).map_err(|_| BadRequest::Malformed)
}

/// `grpc-message` encoding: percent-encode every byte outside printable ASCII, and `%`.
pub(crate) fn percent_encode(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let req = EchoRequest::new("hi");
        let bytes = frame(&req);
        assert_eq!(decode_request(&bytes), Ok(req));
        assert_eq!(decode_request(&[]), Ok(EchoRequest::default()));
        assert_eq!(decode_request(&[0, 0, 0]), Err(BadRequest::Malformed));
        assert_eq!(
            decode_request(&[1, 0, 0, 0, 0]),
            Err(BadRequest::Compressed)
        );
        assert_eq!(decode_request(&[0, 0, 0, 0, 9]), Err(BadRequest::Malformed));
    }

    #[test]
    fn a_filler_frame_head_and_its_filler_make_the_frame_of_that_reply() {
        for n in [0, 1, 5, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut whole = filler_frame_head(n).to_vec();
            whole.resize(whole.len() + n, b'x');
            let reply = EchoReply {
                message: "x".repeat(n),
            };
            assert_eq!(whole, frame(&reply), "{n} bytes of filler");
        }
        // Past what a frame can carry, its length says the most it can.
        assert_eq!(
            filler_frame_head(usize::MAX)[..6],
            [0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0A]
        );
    }

    #[test]
    fn percent_encodes_like_grpc() {
        assert_eq!(percent_encode("a b%c\n\u{e9}"), "a b%25c%0A%C3%A9");
    }
}
