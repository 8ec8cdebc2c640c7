//! The response body: data sent at once or paced, then a clean end, trailers, or an abort of
//! the connection. It holds the request's in-flight guard until it has given hyper its last
//! frame (or is dropped with its connection).

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
    pace: Option<Pace>,
    end: End,
    pause: Option<Pin<Box<Sleep>>>,
    guard: Option<InFlight>,
}

impl ResponseBody {
    pub(crate) fn new(data: Bytes, end: End, guard: InFlight) -> Self {
        Self {
            data,
            pace: None,
            end,
            pause: None,
            guard: Some(guard),
        }
    }

    pub(crate) fn empty(guard: InFlight) -> Self {
        Self::new(Bytes::new(), End::Clean, guard)
    }

    /// The same body, its data sent at `bytes_per_sec` (in about twenty chunks a second).
    pub(crate) fn paced(mut self, bytes_per_sec: u64) -> Self {
        let chunk = usize::try_from(bytes_per_sec / 20)
            .unwrap_or(usize::MAX)
            .clamp(1, 64 * 1024);
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
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if !this.data.is_empty() {
            let n = match &mut this.pace {
                None => this.data.len(),
                Some(pace) if pace.bytes_per_sec == 0 => return Poll::Pending,
                Some(pace) => {
                    let n = pace.chunk.min(this.data.len());
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
                    n
                }
            };
            return Poll::Ready(Some(Ok(Frame::data(this.data.split_to(n)))));
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
        self.data.is_empty() && matches!(self.end, End::Clean | End::Trailers(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self.end {
            End::Clean => SizeHint::with_exact(self.data.len() as u64),
            _ => {
                let mut hint = SizeHint::new();
                hint.set_lower(self.data.len() as u64);
                hint
            }
        }
    }
}
