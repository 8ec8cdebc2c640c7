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
pub const SERVICE: &str = "palisade.testkit.Echo";

/// The one method of [`SERVICE`].
pub const METHOD: &str = "Say";

/// The request path of `Echo/Say`: `/palisade.testkit.Echo/Say`.
pub const SAY_PATH: &str = "/palisade.testkit.Echo/Say";

/// The request of `Echo/Say`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EchoRequest {
    /// The text to echo.
    #[prost(string, tag = "1")]
    pub message: String,
}

impl EchoRequest {
    /// A request to echo `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The reply of `Echo/Say`: the request's text (or, for a slow or reset body, filler).
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
    pub fn new(transport: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(transport),
        }
    }

    /// A client that sets the scheme and authority of every request from `origin`
    /// (`http://127.0.0.1:port`): needed for a bare HTTP/2 connection that does not add them.
    pub fn with_origin(transport: T, origin: http::Uri) -> Self {
        Self {
            inner: tonic::client::Grpc::with_origin(transport, origin),
        }
    }

    /// The gRPC client underneath.
    pub fn get_ref(&self) -> &tonic::client::Grpc<T> {
        &self.inner
    }

    /// The gRPC client underneath, mutably.
    pub fn get_mut(&mut self) -> &mut tonic::client::Grpc<T> {
        &mut self.inner
    }

    /// The gRPC client underneath, consuming the wrapper.
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
    fn percent_encodes_like_grpc() {
        assert_eq!(percent_encode("a b%c\n\u{e9}"), "a b%25c%0A%C3%A9");
    }
}
