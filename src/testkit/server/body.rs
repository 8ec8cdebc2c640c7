//! The response body: data sent at once or paced, then a clean end, trailers, or an abort of
//! the connection. It holds the request's in-flight guard until it has given hyper its last
//! frame (or is dropped with its connection).
//!
//! Its data is what it was given, then any number of bytes of filler, made a chunk at a time
//! as they are sent: a fault may ask for a body of any size (`usize::MAX`, a terabyte that is
//! never sent at a rate of zero), and none of it is held in memory.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::InFlight;
use super::conn::ConnCtl;
use crate::testkit::time_for;

/// The largest frame of filler, or of paced data, that a body gives hyper.
const MAX_CHUNK: usize = 64 * 1024;

/// The bytes of filler, shared by every body: a frame of filler is a slice of them, so making
/// one allocates nothing.
static FILLER: [u8; MAX_CHUNK] = [b'x'; MAX_CHUNK];

/// The longest body sent with its length (`i64::MAX` bytes): many clients read the length as
/// a signed 64-bit number (Go, Java, curl), and hyper refuses the few largest. A longer body
/// goes without one (chunked over HTTP/1.1).
const MAX_DECLARED: u64 = u64::MAX >> 1;

/// How long an aborting body waits after its last bytes, so that they (and the head) are
/// flushed to the client before the connection is reset.
const ABORT_PAUSE: Duration = Duration::from_millis(20);

/// How a body ends once its data is sent.
pub(crate) enum End {
    /// End of stream.
    Clean,
    /// These trailers, then end of stream (`None` once sent).
    Trailers(Option<HeaderMap>),
    /// Reset the connection.
    Abort(Arc<ConnCtl>),
}

/// Pacing of the data at a rate.
struct Pace {
    bytes_per_sec: u64,
    chunk: usize,
    start: Option<Instant>,
    sent: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

pub(crate) struct ResponseBody {
    data: Bytes,
    /// Bytes of filler still to send after `data`.
    filler: usize,
    pace: Option<Pace>,
    end: End,
    pause: Option<Pin<Box<Sleep>>>,
    guard: Option<InFlight>,
}

impl ResponseBody {
    pub(crate) fn new(data: Bytes, end: End, guard: InFlight) -> Self {
        Self::with_filler(data, 0, end, guard)
    }

    /// A body of `data`, then `filler` bytes of filler (`x`), then `end`.
    pub(crate) fn with_filler(data: Bytes, filler: usize, end: End, guard: InFlight) -> Self {
        Self {
            data,
            filler,
            pace: None,
            end,
            pause: None,
            guard: Some(guard),
        }
    }

    pub(crate) fn empty(guard: InFlight) -> Self {
        Self::new(Bytes::new(), End::Clean, guard)
    }

    /// The same body, its data sent at `bytes_per_sec`, in chunks of a twentieth of the rate
    /// (about twenty a second) of 1 byte to 64 KiB: below 20 bytes a second there are fewer
    /// chunks a second, above 1.25 MiB a second more.
    pub(crate) fn paced(mut self, bytes_per_sec: u64) -> Self {
        let chunk = usize::try_from(bytes_per_sec / 20)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_CHUNK);
        self.pace = Some(Pace {
            bytes_per_sec,
            chunk,
            start: None,
            sent: 0,
            sleep: None,
        });
        self
    }

    fn finish(&mut self) {
        self.guard = None;
    }

    /// Whether data or filler is still to be sent.
    fn has_data(&self) -> bool {
        !self.data.is_empty() || self.filler > 0
    }

    /// The length of the next frame of data, at most `limit` (and a frame never spans the end
    /// of `data` and the start of the filler, so that neither is copied).
    fn next_len(&self, limit: usize) -> usize {
        if self.data.is_empty() {
            limit.min(self.filler).min(MAX_CHUNK)
        } else {
            limit.min(self.data.len())
        }
    }

    /// The next `n` bytes (as [`next_len`](Self::next_len) gave).
    fn take(&mut self, n: usize) -> Bytes {
        if self.data.is_empty() {
            let n = n.min(self.filler).min(MAX_CHUNK);
            self.filler -= n;
            Bytes::from_static(&FILLER[..n])
        } else {
            self.data.split_to(n.min(self.data.len()))
        }
    }

    /// The bytes still to be sent (saturating: the filler may be as long as `usize::MAX`).
    fn remaining(&self) -> u64 {
        (self.data.len() as u64).saturating_add(self.filler as u64)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.has_data() {
            let n = this.next_len(this.pace.as_ref().map_or(usize::MAX, |pace| pace.chunk));
            if let Some(pace) = &mut this.pace {
                if pace.bytes_per_sec == 0 {
                    return Poll::Pending;
                }
                let sleep = match &mut pace.sleep {
                    Some(sleep) => sleep,
                    None => {
                        let start = *pace.start.get_or_insert_with(Instant::now);
                        let due = pace.sent.saturating_add(n as u64);
                        let at = start + time_for(due, pace.bytes_per_sec);
                        pace.sleep.insert(Box::pin(tokio::time::sleep_until(at)))
                    }
                };
                ready!(sleep.as_mut().poll(cx));
                pace.sleep = None;
                pace.sent = pace.sent.saturating_add(n as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(this.take(n)))));
        }
        match &mut this.end {
            End::Clean => {
                this.finish();
                Poll::Ready(None)
            }
            End::Trailers(trailers) => match trailers.take() {
                Some(trailers) => {
                    this.finish();
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                None => Poll::Ready(None),
            },
            End::Abort(ctl) => {
                let pause = this
                    .pause
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(ABORT_PAUSE)));
                ready!(pause.as_mut().poll(cx));
                // The connection's task drops the connection, resetting the socket, and this
                // body with it. Ending the body with an error instead would let HTTP/2 reset
                // just this stream, and HTTP/1.1 close the connection politely.
                ctl.kill();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.has_data() && matches!(self.end, End::Clean | End::Trailers(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self.end {
            End::Clean if self.remaining() <= MAX_DECLARED => {
                SizeHint::with_exact(self.remaining())
            }
            _ => {
                let mut hint = SizeHint::new();
                hint.set_lower(self.remaining());
                hint
            }
        }
    }
}
