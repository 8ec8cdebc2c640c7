use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::BoxError;

use crate::classify::{End, EndRule, Hooks, Outcome};
use crate::error::Elapsed;
use crate::events::{Event, Listeners};

/// The deadline of a whole response, shared by its head and its body.
///
/// Boxed, timer included: a response carries it through every layer's future and is moved at
/// each, so the common response without a deadline stays one word larger, not a timer larger.
/// A call with a deadline makes this one allocation, always; before, its timer was allocated
/// only when the call waited for it.
#[derive(Debug)]
pub(crate) struct Deadline(Pin<Box<Timer>>);

pin_project! {
    #[derive(Debug)]
    struct Timer {
        at: Instant,
        after: Duration,
        // Made on the first poll.
        #[pin]
        sleep: Option<Sleep>,
        // Told when the deadline ends a call ([`Event::TimedOut`]).
        listeners: Listeners,
    }
}

impl Deadline {
    /// A deadline `after` from `start`; `None` when too far to represent (no deadline then,
    /// as for `Duration::MAX`, rather than one already passed).
    pub(crate) fn new(start: Instant, after: Duration, listeners: &Listeners) -> Option<Self> {
        Some(Self(Box::pin(Timer {
            at: crate::sync::timer_deadline(start, after)?,
            after,
            sleep: None,
            listeners: listeners.clone(),
        })))
    }

    /// The deadline has ended the call: tells the listeners, and gives the error.
    #[cold]
    fn elapsed(&self) -> Elapsed {
        let after = self.0.after;
        self.0
            .listeners
            .emit(|name| Event::TimedOut { name, after });
        Elapsed::new(after)
    }

    /// `Some(Elapsed)` once `deadline`, if any, has passed; else registers for the wake-up.
    pub(crate) fn expired(deadline: &mut Option<Self>, cx: &mut Context<'_>) -> Option<Elapsed> {
        match deadline.as_mut()?.poll(cx) {
            Poll::Ready(elapsed) => Some(elapsed),
            Poll::Pending => None,
        }
    }

    /// `Some(Elapsed)` if `deadline`, if any, has passed by the clock: for a frame that came
    /// ready, when the timer may never have been polled (a fast server, a slow reader). Reads
    /// the clock only when there is a deadline.
    pub(crate) fn passed(deadline: &Option<Self>) -> Option<Elapsed> {
        let deadline = deadline.as_ref()?;
        (Instant::now() >= deadline.0.at).then(|| deadline.elapsed())
    }

    /// [`passed`](Self::passed), for a call that failed with `err`: its `Elapsed` unless `err`
    /// is palisade's own (which says more, and has told the listeners already). Reads the clock
    /// only when there is a deadline.
    pub(crate) fn passed_for(deadline: &Option<Self>, err: &BoxError) -> Option<Elapsed> {
        deadline.as_ref()?;
        if crate::error::palisades_own(err) {
            return None;
        }
        Self::passed(deadline)
    }

    /// Polls a response head against `deadline`: the head with what is left of the deadline
    /// (for its body), or [`Elapsed`] once it has passed. An error the head gives at or after
    /// the deadline is the deadline's `Elapsed` too (tonic's channel, enforcing the
    /// `grpc-timeout` the deadline sent, fails the call on the same tick), unless it is
    /// palisade's own; before it, it is passed on as it is. At the deadline the client's
    /// future is dropped there and then (the request at the dependency with it), not when the
    /// caller drops this one: a bulkhead outside has given its permit back by then.
    pub(crate) fn poll_head<F, T, E>(
        mut fut: Pin<&mut Option<F>>,
        deadline: &mut Option<Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(T, Option<Self>), BoxError>>
    where
        F: std::future::Future<Output = Result<T, E>>,
        E: Into<BoxError>,
    {
        let Some(head) = fut.as_mut().as_pin_mut() else {
            // Polled again after the deadline ended it: the same error.
            return Poll::Ready(Err(match deadline {
                Some(deadline) => Box::new(deadline.elapsed()),
                None => "response future polled after it completed".into(),
            }));
        };
        match head.poll(cx) {
            Poll::Ready(Ok(head)) => Poll::Ready(Ok((head, deadline.take()))),
            Poll::Ready(Err(err)) => {
                let err = err.into();
                match Self::passed_for(deadline, &err) {
                    Some(elapsed) => {
                        fut.set(None);
                        Poll::Ready(Err(Box::new(elapsed)))
                    }
                    None => Poll::Ready(Err(err)),
                }
            }
            Poll::Pending => match Self::expired(deadline, cx) {
                Some(elapsed) => {
                    fut.set(None);
                    Poll::Ready(Err(Box::new(elapsed)))
                }
                None => Poll::Pending,
            },
        }
    }

    /// `Ready(Elapsed)` once the deadline has passed. The timer is made on the first poll.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Elapsed> {
        let at = self.0.at;
        let mut sleep = self.0.as_mut().project().sleep;
        loop {
            if let Some(timer) = sleep.as_mut().as_pin_mut() {
                std::task::ready!(timer.poll(cx));
                break;
            }
            sleep.set(Some(tokio::time::sleep_until(at)));
        }
        Poll::Ready(self.elapsed())
    }
}

pin_project! {
    /// A response body that settles what the protections handed it ([`Hooks`]) when it ends.
    ///
    /// Made by [`TrackLayer`](super::TrackLayer) around the client's body (and by the stale
    /// cache around a replayed one). It reads like the body it wraps, frame for frame, and:
    ///
    /// * at its clean end, records the call's outcome with the circuit breaker: for HTTP the
    ///   head's outcome; for gRPC the `grpc-status` of the trailers (an end without one is a
    ///   failure). For HTTP, the last byte of a known length (its size hint counted down to 0)
    ///   is the end for the outcome and the permits, unless a gRPC classifier waits for the
    ///   trailers; so is the head, for a length of 0, unless the response is a gRPC reply by
    ///   its `content-type` (a bulkhead holds its permit before any classifier has read the
    ///   head). Either way, whether or not the inner body has said so yet (a caller writing a
    ///   known length stops polling there); an error or deadline after it changes nothing. A
    ///   stale cache's copy still waits for the body's own end, so a body dropped at its last
    ///   byte is not cached;
    /// * on a body error (a reset connection, a broken stream), records a failure; an error at
    ///   or after the whole-response deadline, if one is set, comes out as its [`Elapsed`]
    ///   (unless it is palisade's own);
    /// * at the whole-response deadline, if one is set, ends with an [`Elapsed`] error (never a
    ///   truncated success) and records a failure, whether it is waiting for the next frame or
    ///   its data or trailers frames are ready and read late. The deadline acts as the body is
    ///   read: a body nobody polls holds its permit (and probe slot) until it is read or
    ///   dropped, past the deadline too (the end of a body without trailers, reached in time
    ///   and read late, is still a success; a gRPC reply's trailers read late are not);
    /// * dropped unfinished, counts nothing (the call is ignored, and a probe's slot is given
    ///   back with the time: its time in flight still counts towards the half-open trial's
    ///   `max_half_open_wait`);
    ///
    /// and in every case gives back the bulkhead permit it holds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use palisade::error::Elapsed;
    /// use palisade::http::TrackLayer;
    /// use tower::{Layer, ServiceExt};
    ///
    /// // A body that starts and never finishes.
    /// type Frames = Result<http_body::Frame<Bytes>, std::io::Error>;
    /// let layer = TrackLayer::new().deadline(Duration::from_secs(1)).unwrap();
    /// let client = layer.layer(tower::service_fn(|_: http::Request<()>| async {
    ///     let stalled = futures::stream::pending::<Frames>();
    ///     Ok::<_, std::io::Error>(http::Response::new(StreamBody::new(stalled)))
    /// }));
    /// let response = client.oneshot(http::Request::new(())).await.unwrap(); // the head is in time
    /// let err = response.into_body().collect().await.unwrap_err(); // the body is not
    /// assert!(err.is::<Elapsed>());
    /// # }
    /// ```
    pub struct Tracked<B> {
        #[pin]
        inner: Source<B>,
        hooks: Hooks,
        deadline: Option<Deadline>,
        tee: Option<Box<Tee>>,
        ended: bool,
    }
}

/// What a replayed body has left: its data, then its trailers.
struct Replayed {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

pin_project! {
    #[project = SourceProj]
    enum Source<B> {
        Live { #[pin] body: B },
        // What is left to replay (boxed, so that this variant stays smaller than a live body).
        Replay { rest: Option<Box<Replayed>> },
    }
}

impl<B> fmt::Debug for Tracked<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("hooks", &self.hooks)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<B> Tracked<B> {
    /// Wraps `body`; nothing is held until a layer hands it something.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use palisade::http::Tracked;
    ///
    /// let body = Tracked::new(Full::new(Bytes::from("hello")));
    /// // It reads like the body it wraps.
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    /// # }
    /// ```
    pub fn new(body: B) -> Self {
        Self::with_deadline(body, None)
    }

    pub(crate) fn with_deadline(body: B, deadline: Option<Deadline>) -> Self {
        Self {
            inner: Source::Live { body },
            hooks: Hooks::default(),
            deadline,
            tee: None,
            ended: false,
        }
    }

    /// A body that replays `data` (a response served from the stale cache).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use palisade::http::Tracked;
    ///
    /// let body: Tracked<Full<Bytes>> = Tracked::replay(Bytes::from("kept earlier"));
    /// assert!(body.get_ref().is_none()); // no live body behind it
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "kept earlier");
    /// # }
    /// ```
    pub fn replay(data: Bytes) -> Self {
        Self::replay_with_trailers(data, None)
    }

    /// A body that replays `data`, then `trailers` (a kept gRPC reply's status).
    pub(crate) fn replay_with_trailers(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        let rest = Replayed {
            data: (!data.is_empty()).then_some(data),
            trailers,
        };
        Self {
            inner: Source::Replay {
                rest: (rest.data.is_some() || rest.trailers.is_some()).then(|| Box::new(rest)),
            },
            hooks: Hooks::default(),
            deadline: None,
            tee: None,
            ended: false,
        }
    }

    /// The wrapped body, unless this one replays cached data.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body;
    /// use http_body_util::Full;
    /// use palisade::http::Tracked;
    ///
    /// let body = Tracked::new(Full::new(Bytes::from("hello")));
    /// assert_eq!(body.get_ref().unwrap().size_hint().exact(), Some(5));
    /// ```
    pub fn get_ref(&self) -> Option<&B> {
        match &self.inner {
            Source::Live { body } => Some(body),
            Source::Replay { .. } => None,
        }
    }

    /// Whether nothing is left to read.
    pub(crate) fn is_drained(&self) -> bool
    where
        B: Body,
    {
        self.ended
            || match &self.inner {
                Source::Live { body } => body.is_end_stream(),
                Source::Replay { rest } => rest.is_none(),
            }
    }

    /// The hooks, whether or not anything is left to read: for a rule that the body's end
    /// decides even when it has come already (a gRPC reply's missing trailers).
    #[cfg(feature = "grpc")]
    pub(crate) fn hooks_until_end(&mut self) -> &mut Hooks {
        &mut self.hooks
    }

    /// Whether the last classifier over this response left its outcome to a gRPC reply's
    /// trailers.
    pub(crate) fn awaits_trailers(&self) -> bool {
        self.hooks.awaits_trailers()
    }

    /// Copies the body, as it streams by, for the stale cache (beside the copies of caches
    /// further in, if any: each is kept or dropped by its own rule, cap and budget).
    pub(crate) fn set_tee(&mut self, mut tee: Tee) {
        // The layer making the copy has just classified the response: its classifier's rule
        // (set last) decides whether the copy is kept.
        tee.rule = self.hooks.take_rule_set_last();
        tee.next = self.tee.take();
        self.tee = Some(Box::new(tee));
    }
}

/// The hooks of `response`'s body, to hand something to, or `None` when nothing will wait for
/// its end: it has already ended, or has nothing left to read. So has a live body whose length
/// hint says so (a `Content-Length: 0` whose END_STREAM may come in a frame of its own, which a
/// caller writing that length never polls for), unless the response is a gRPC reply, whose
/// status may still follow in trailers (its headers are looked at only then).
pub(crate) fn hooks_if_streaming<B: Body>(
    response: &mut http::Response<Tracked<B>>,
) -> Option<&mut Hooks> {
    let body = response.body();
    if body.is_drained() {
        return None;
    }
    let known_empty =
        matches!(&body.inner, Source::Live { body } if body.size_hint().exact() == Some(0));
    if known_empty && !super::is_grpc(response.headers()) {
        return None;
    }
    Some(&mut response.body_mut().hooks)
}

/// How a copied body ended.
pub(crate) enum TeeEnd {
    /// Cleanly and successfully: the whole body, and its trailers if it had any.
    Whole(Bytes, Option<HeaderMap>),
    /// It outgrew the cap.
    TooLarge,
    /// It failed, or was dropped unfinished.
    Abandoned,
}

type TeeDone = Box<dyn FnOnce(TeeEnd) + Send + Sync>;

/// The bytes that every copy of one cache holds while its bodies stream by, bounded: without
/// it, each body read at once would hold up to a whole entry's worth, however many there are.
#[derive(Debug)]
pub(crate) struct CopyBudget {
    limit: usize,
    used: std::sync::atomic::AtomicUsize,
}

impl CopyBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Takes `n` bytes; `false` if they would go over the limit.
    fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A copy of a body as it streams by, up to a cap, for the stale cache.
pub(crate) struct Tee {
    buf: Vec<u8>,
    cap: usize,
    budget: std::sync::Arc<CopyBudget>,
    /// The bytes taken from the budget and not given back yet.
    held: usize,
    /// How the body's end decides whether the copy is kept: the rule of the classifier of the
    /// layer that made the copy (a fallback's), which may differ from a breaker's inside.
    rule: EndRule,
    done: Option<TeeDone>,
    /// The copy of a cache further in, when stale caches are stacked.
    next: Option<Box<Tee>>,
}

impl Tee {
    pub(crate) fn new(cap: usize, budget: std::sync::Arc<CopyBudget>, done: TeeDone) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            budget,
            held: 0,
            rule: EndRule::Body,
            done: Some(done),
            next: None,
        }
    }

    /// Copies `data`; `false` (and the tee is finished) when it cannot.
    fn copy(&mut self, data: &impl bytes::Buf) -> bool {
        let chunk = data.chunk();
        if chunk.len() != data.remaining() {
            self.end(TeeEnd::Abandoned);
            return false;
        }
        if self.buf.len() + chunk.len() > self.cap {
            self.end(TeeEnd::TooLarge);
            return false;
        }
        // The cache's copies together are over their budget: this body passes uncached, and
        // the key's older entry stays.
        if !self.budget.take(chunk.len()) {
            self.end(TeeEnd::Abandoned);
            return false;
        }
        self.held += chunk.len();
        self.buf.extend_from_slice(chunk);
        true
    }

    /// The body ended: kept whole with the trailers it ended with (a gRPC reply's status) on
    /// a `success`, else abandoned.
    fn finish(&mut self, success: bool, trailers: Option<&HeaderMap>) {
        let end = if success {
            let mut buf = std::mem::take(&mut self.buf);
            // The entry is counted by its length: keep no spare capacity beyond it.
            buf.shrink_to_fit();
            TeeEnd::Whole(Bytes::from(buf), trailers.cloned())
        } else {
            TeeEnd::Abandoned
        };
        self.end(end);
    }

    fn end(&mut self, end: TeeEnd) {
        // The copy's bytes leave the budget, once (a whole body is the entry's to count now).
        self.budget.give_back(std::mem::take(&mut self.held));
        if let Some(done) = self.done.take() {
            done(end);
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.end(TeeEnd::Abandoned);
    }
}

/// Settles the hooks and the tee as the body ends (with `trailers`, for a breaker further out
/// whose rule reads them differently).
fn end_with(hooks: &mut Hooks, tee: &mut Option<Box<Tee>>, end: End, trailers: Option<&HeaderMap>) {
    hooks.settle(end, |rule, head| end_outcome(rule, head, trailers));
    let mut next = tee.take();
    while let Some(mut tee) = next {
        // The copy was made for a response its layer classified as a success at the head:
        // under its rule, a clean end keeps it, or the trailers decide.
        let success = matches!(end, End::Complete(_))
            && end_outcome(tee.rule, Outcome::success(), trailers).is_success();
        tee.finish(success, trailers);
        next = tee.next.take();
    }
}

/// Copies `data` into each copy being made, dropping those that cannot take it (finished).
fn copy_into(tee: &mut Option<Box<Tee>>, data: &impl bytes::Buf) {
    let Some(this) = tee else { return };
    if this.copy(data) {
        copy_into(&mut this.next, data);
    } else {
        // (A chain as long as the stale caches stacked over one call: one, or a few.)
        *tee = this.next.take();
        copy_into(tee, data);
    }
}

/// The body ended cleanly (with `trailers`, if any): its outcome under the body's rule.
fn end_clean(hooks: &mut Hooks, tee: &mut Option<Box<Tee>>, trailers: Option<&HeaderMap>) {
    let head = hooks.head().unwrap_or_else(Outcome::success);
    let outcome = end_outcome(hooks.rule(), head, trailers);
    end_with(hooks, tee, End::Complete(outcome), trailers);
}

/// The outcome a clean end gives, under `rule`.
fn end_outcome(rule: EndRule, head: Outcome, trailers: Option<&HeaderMap>) -> Outcome {
    match rule {
        EndRule::Body => head,
        #[cfg(feature = "grpc")]
        EndRule::Grpc { .. } => crate::classify::grpc::outcome_of_trailers(trailers, rule),
        #[cfg(not(feature = "grpc"))]
        EndRule::Grpc { .. } => {
            let _ = trailers;
            head
        }
    }
}

/// Whether every byte a body of known length promised has come, while an outcome or a permit
/// waits for its end. Its END_STREAM may come on its own, later (hyper's HTTP/2 body with a
/// `Content-Length`), and a caller writing a known length (hyper's HTTP/1 server, a proxy)
/// stops polling at the last byte and drops the body: waiting for that end would leave the
/// call unrecorded and its permit held until the drop. Not under a rule that waits for a gRPC
/// reply's trailers; and not for a stale cache's copy, which is kept only at the body's own
/// end (a body's length hint is not always right: `http_body_util::Limited` reports none left
/// at its limit, before failing the read after it, and a truncated body must not be kept).
fn read_to_known_length<B: Body>(body: &B, hooks: &Hooks) -> bool {
    !hooks.is_empty() && !hooks.any_awaits_trailers() && body.size_hint().exact() == Some(0)
}

impl<B> Body for Tracked<B>
where
    B: Body,
    B::Data: bytes::Buf,
    B::Data: From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        let body = match this.inner.as_mut().project() {
            SourceProj::Replay { rest } => {
                if let Some(data) = rest.as_mut().and_then(|rest| rest.data.take()) {
                    // A replayed body is copied too (a cache further out keeping it).
                    copy_into(this.tee, &data);
                    // Its length is certain: with no trailers to come, its last byte is its
                    // end (a caller writing a known length stops polling there).
                    if rest.as_ref().is_some_and(|rest| rest.trailers.is_none()) {
                        *this.ended = true;
                        *rest = None;
                        end_clean(this.hooks, this.tee, None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(B::Data::from(data)))));
                }
                // The end, decided as a live body's would be, by the trailers if any.
                *this.ended = true;
                let trailers = rest.take().and_then(|rest| rest.trailers);
                end_clean(this.hooks, this.tee, trailers.as_ref());
                return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
            }
            SourceProj::Live { body } => body,
        };
        let mut body = body;
        let polled = body.as_mut().poll_frame(cx);
        let expired = match &polled {
            Poll::Pending => Deadline::expired(this.deadline, cx),
            // Frames that are always ready never let the timer fire: the clock decides. (A
            // frame ready after the deadline cannot tell a slow reader from a dependency that
            // trickled it in just before the poll the deadline's timer woke: a failure either
            // way, as a body still waiting is.)
            // Trailers too: they are a gRPC reply's status, its end.
            Poll::Ready(Some(Ok(_))) => Deadline::passed(this.deadline),
            Poll::Ready(_) => None,
        };
        if let Some(elapsed) = expired {
            *this.ended = true;
            // Let go of the client's body (and so of its connection or stream) now, with the
            // permit, not when the caller drops this one.
            this.inner.set(Source::Replay { rest: None });
            end_with(this.hooks, this.tee, End::Failed, None);
            return Poll::Ready(Some(Err(Box::new(elapsed))));
        }
        let Poll::Ready(frame) = polled else {
            return Poll::Pending;
        };
        match frame {
            None => {
                *this.ended = true;
                end_clean(this.hooks, this.tee, None);
                Poll::Ready(None)
            }
            Some(Err(err)) => {
                *this.ended = true;
                let err = err.into();
                // An error at or after the deadline is the deadline's (a client or a server
                // enforcing the `grpc-timeout` it sent resets the stream on its tick), unless
                // it is palisade's own: as at the head.
                let err = match Deadline::passed_for(this.deadline, &err) {
                    Some(elapsed) => {
                        this.inner.set(Source::Replay { rest: None });
                        Box::new(elapsed)
                    }
                    None => err,
                };
                end_with(this.hooks, this.tee, End::Failed, None);
                Poll::Ready(Some(Err(err)))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    copy_into(this.tee, data);
                }
                if let Some(trailers) = frame.trailers_ref() {
                    // Trailers are the last frame.
                    *this.ended = true;
                    end_clean(this.hooks, this.tee, Some(trailers));
                } else if body.is_end_stream() {
                    end_clean(this.hooks, this.tee, None);
                } else if read_to_known_length(&body, this.hooks) {
                    // The outcome and the permits; a copy waits for the end itself.
                    end_clean(this.hooks, &mut None, None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not while an outcome, a permit or a cache copy waits for the end: a caller may stop
        // polling (and drop the body) once this says so, and the end would then go unseen,
        // the call recorded as ignored. One more poll settles them, and returns `None`.
        self.ended || (self.hooks.is_empty() && self.tee.is_none() && self.is_drained())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Live { body } => body.size_hint(),
            Source::Replay { rest } => SizeHint::with_exact(
                rest.as_ref()
                    .and_then(|rest| rest.data.as_ref())
                    .map_or(0, |d| d.len() as u64),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A response moves through every layer's future, and is copied at each: within 256 bytes
    /// the copy takes glibc's short path, and the Policy's loopback cost drops by a sixth
    /// (BENCHMARKS.md). This fails when a field makes a tracked hyper response larger.
    #[test]
    fn a_tracked_hyper_response_stays_within_256_bytes() {
        type Tracked = super::Tracked<hyper::body::Incoming>;
        assert!(std::mem::size_of::<http::Response<Tracked>>() <= 256);
        assert!(std::mem::size_of::<Option<super::Deadline>>() <= 8);
        assert!(std::mem::size_of::<super::EndRule>() <= 16);
    }
}
