//! One request: count it, wait out the fault's latency, answer its reply.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, TRAILER};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;

use super::body::{End, ResponseBody};
use super::conn::ConnCtl;
use super::fault::{GrpcStatusIn, Reply};
use super::{InFlight, Shared};
use crate::testkit::grpc::{self, BadRequest, EchoReply};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// Whether a request is gRPC, by its content type.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A header value holding `value` without the bytes no header can hold.
fn lenient_header(value: &str) -> HeaderValue {
    let bytes: Vec<u8> = value
        .bytes()
        .filter(|&b| b == b'\t' || (0x20..0x7F).contains(&b) || b >= 0x80)
        .collect();
    HeaderValue::from_bytes(&bytes).unwrap_or(HeaderValue::from_static(""))
}

/// The status of an injected error: `code`, or `500` for a code that is no status or only an
/// informational one (`1xx`), which cannot end a response: hyper would send a `101` bare
/// over HTTP/1.1 and any other `1xx` as `500`, and over HTTP/2 an interim head.
fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code)
        .ok()
        .filter(|status| !status.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn response(
    status: StatusCode,
    content_type: HeaderValue,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

/// The headers carrying a gRPC status.
fn grpc_status_headers(code: tonic::Code, message: &str, pushback_ms: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(GRPC_STATUS, HeaderValue::from(i32::from(code)));
    if !message.is_empty() {
        headers.insert(GRPC_MESSAGE, lenient_header(&grpc::percent_encode(message)));
    }
    if let Some(pushback) = pushback_ms {
        headers.insert(GRPC_PUSHBACK, lenient_header(pushback));
    }
    headers
}

/// A trailers-only gRPC response.
fn grpc_trailers_only(
    code: tonic::Code,
    message: &str,
    pushback_ms: Option<&str>,
    guard: InFlight,
) -> Response<ResponseBody> {
    let mut response = response(StatusCode::OK, GRPC, ResponseBody::empty(guard));
    response
        .headers_mut()
        .extend(grpc_status_headers(code, message, pushback_ms));
    response
}

/// A gRPC response: `200`, one message (its frame `data`, then `filler` bytes of filler when
/// the message is filler), then the status in the trailers (or no trailers at all). Over
/// HTTP/1.1 the trailers are named in a `Trailer` header, without which hyper sends none
/// (HTTP/2 needs no such header, and gRPC servers send none).
fn grpc_reply(
    data: Bytes,
    filler: usize,
    trailers: Option<HeaderMap>,
    version: Version,
    guard: InFlight,
) -> Response<ResponseBody> {
    let declared = match &trailers {
        Some(trailers) if version < Version::HTTP_2 => {
            let names: Vec<&str> = trailers.keys().map(HeaderName::as_str).collect();
            HeaderValue::from_str(&names.join(", ")).ok()
        }
        _ => None,
    };
    let end = match trailers {
        Some(trailers) => End::Trailers(Some(trailers)),
        None => End::Clean,
    };
    let body = ResponseBody::with_filler(data, filler, end, guard);
    let mut response = response(StatusCode::OK, GRPC, body);
    if let Some(declared) = declared {
        response.headers_mut().insert(TRAILER, declared);
    }
    response
}

/// An HTTP error status: a short text body, or for gRPC requests no body at all, so that a
/// gRPC client maps the HTTP status to a code (`503` to `UNAVAILABLE`) instead of failing to
/// decode the text as a message.
fn error_status(code: u16, grpc: bool, guard: InFlight) -> Response<ResponseBody> {
    let body = if grpc {
        Bytes::new()
    } else {
        Bytes::from(format!("testkit: injected {code}\n"))
    };
    response(
        status_code(code),
        TEXT,
        ResponseBody::new(body, End::Clean, guard),
    )
}

fn ok_trailers() -> HeaderMap {
    grpc_status_headers(tonic::Code::Ok, "", None)
}

/// The most of a gRPC request's body kept: its frame's 5-byte prefix and a message up to
/// tonic's default limit on a message it decodes (4 MiB). The rest is read and dropped, as an
/// HTTP request's whole body is: a request of any size, or one that never ends, costs the
/// server at most this for its body (a larger message is answered as malformed).
const MAX_GRPC_REQUEST: usize = 5 + (4 << 20);

/// Reads a request's body to its end: a gRPC request's first `MAX_GRPC_REQUEST` bytes (its
/// message, for the echo), nothing of any other. A body that fails to arrive means the client
/// went away: what was read so far is all there is (nothing sent will arrive either).
async fn read_request(mut body: Incoming, grpc: bool) -> Bytes {
    let mut kept = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let (true, Ok(data)) = (grpc, frame.into_data()) {
            let room = MAX_GRPC_REQUEST.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Bytes::from(kept)
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    mut shutdown: watch::Receiver<bool>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let grpc = is_grpc(request.headers());
    // The fault is fixed before the request is counted: whoever has seen it counted
    // (`wait_for`) and then sets another fault still has it answered under this one.
    let (fault, draw) = shared.begin();
    let guard = InFlight::enter(&shared, grpc);

    let (parts, body) = request.into_parts();
    let version = parts.version;
    let body = read_request(body, grpc).await;

    let latency = fault.latency_for(draw.first);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let path = parts.uri.path();
    let echo = || {
        grpc::frame(&EchoReply {
            message: grpc::decode_request(&body)
                .map(|r| r.message)
                .unwrap_or_default(),
        })
    };
    let content_type = if grpc { GRPC } else { TEXT };
    let response = match fault.pick(draw.second) {
        Reply::Healthy if grpc => {
            if path != grpc::SAY_PATH {
                grpc_trailers_only(tonic::Code::Unimplemented, "unknown method", None, guard)
            } else {
                match grpc::decode_request(&body) {
                    Ok(req) => {
                        let reply = EchoReply {
                            message: req.message,
                        };
                        grpc_reply(grpc::frame(&reply), 0, Some(ok_trailers()), version, guard)
                    }
                    Err(BadRequest::Compressed) => grpc_trailers_only(
                        tonic::Code::Unimplemented,
                        "compression is not supported",
                        None,
                        guard,
                    ),
                    Err(BadRequest::Malformed) => {
                        grpc_trailers_only(tonic::Code::Internal, "malformed request", None, guard)
                    }
                }
            }
        }
        Reply::Healthy => {
            let body = Bytes::copy_from_slice(path.as_bytes());
            response(
                StatusCode::OK,
                TEXT,
                ResponseBody::new(body, End::Clean, guard),
            )
        }
        Reply::Status(code) => error_status(*code, grpc, guard),
        Reply::RetryAfter { status, value } => {
            let mut response = error_status(*status, grpc, guard);
            response
                .headers_mut()
                .insert(RETRY_AFTER, lenient_header(value));
            response
        }
        Reply::Hang => {
            // Until the client goes away (hyper drops this future with the connection or the
            // stream) or the server shuts down (then the connection is reset).
            crate::testkit::stopped(&mut shutdown).await;
            ctl.kill();
            return std::future::pending().await;
        }
        // The filler of these bodies is made as it is sent, whatever their size.
        Reply::ResetAfter { bytes } => {
            // For gRPC, the first `bytes` of a message of `bytes` bytes of filler.
            let data = if grpc {
                let mut head = grpc::filler_frame_head(*bytes);
                head.truncate(*bytes);
                head
            } else {
                Bytes::new()
            };
            let filler = bytes.saturating_sub(data.len());
            let end = End::Abort(Arc::clone(&ctl));
            let body = ResponseBody::with_filler(data, filler, end, guard);
            response(StatusCode::OK, content_type, body)
        }
        Reply::SlowBody {
            bytes,
            bytes_per_sec,
        } => {
            let unpaced = if grpc {
                let head = grpc::filler_frame_head(*bytes);
                grpc_reply(head, *bytes, Some(ok_trailers()), version, guard)
            } else {
                let body = ResponseBody::with_filler(Bytes::new(), *bytes, End::Clean, guard);
                response(StatusCode::OK, TEXT, body)
            };
            unpaced.map(|body| body.paced(*bytes_per_sec))
        }
        Reply::GrpcStatus {
            code,
            message,
            placement: GrpcStatusIn::TrailersOnly,
            pushback_ms,
        } => grpc_trailers_only(*code, message, pushback_ms.as_deref(), guard),
        Reply::GrpcStatus {
            code,
            message,
            placement: GrpcStatusIn::Trailers,
            pushback_ms,
        } => {
            let trailers = grpc_status_headers(*code, message, pushback_ms.as_deref());
            grpc_reply(echo(), 0, Some(trailers), version, guard)
        }
        Reply::GrpcNoStatus => grpc_reply(echo(), 0, None, version, guard),
    };
    Ok(response)
}
