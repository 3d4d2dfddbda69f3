//! Body streams of the proxy hop. Requests: a counting stream that enforces
//! `limits.maxBodyBytes` as bytes arrive (a chunked body has no length to check up front).
//! Responses: a pass-through stream that counts bytes out, holds the backend's in-flight guard,
//! and writes the access-log line when the body ends, so the line reports the whole exchange.

use actix_web::error::PayloadError;
use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use futures_util::Stream;
use gogate_actors::panics::{self, PanicSite};
use gogate_actors::ActiveGuard;
use slog::{error, info, Logger};
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Request body with a byte counter and an optional limit.
pub struct LimitedBody<S> {
    inner: S,
    pub(crate) seen: Rc<Cell<u64>>,
    limit: u64,
    pub(crate) exceeded: Rc<Cell<bool>>,
}

impl<S> LimitedBody<S> {
    /// `limit` 0 = unlimited.
    pub fn new(inner: S, limit: u64) -> Self {
        LimitedBody {
            inner,
            seen: Rc::default(),
            limit,
            exceeded: Rc::default(),
        }
    }
}

impl<S> Stream for LimitedBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let total = self.seen.get() + chunk.len() as u64;
                self.seen.set(total);
                if self.limit > 0 && total > self.limit {
                    self.exceeded.set(true);
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

/// A body whose first chunk was read ahead (so a body broken from its first bytes is refused
/// before any upstream hears of the request), followed by the rest of the stream.
pub struct Primed<S> {
    first: Option<Bytes>,
    rest: S,
}

impl<S> Primed<S> {
    pub fn new(first: Option<Bytes>, rest: S) -> Self {
        Primed { first, rest }
    }
}

impl<S> Stream for Primed<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        Pin::new(&mut self.rest).poll_next(cx)
    }
}

/// A streamed request body shared between attempts. awc connects before it polls the body, so
/// when a connect fails the body is still untouched and can go to the next backend.
pub struct SharedBody<S> {
    inner: Rc<RefCell<S>>,
    polled: Rc<Cell<bool>>,
}

impl<S> SharedBody<S> {
    pub fn new(inner: S) -> Self {
        SharedBody {
            inner: Rc::new(RefCell::new(inner)),
            polled: Rc::default(),
        }
    }

    /// Another handle to the same body (for the next attempt).
    pub fn handle(&self) -> Self {
        SharedBody {
            inner: Rc::clone(&self.inner),
            polled: Rc::clone(&self.polled),
        }
    }

    /// True while no attempt has read from the body.
    pub fn untouched(&self) -> bool {
        !self.polled.get()
    }
}

impl<S> Stream for SharedBody<S>
where
    S: Stream + Unpin,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.polled.set(true);
        match self.inner.try_borrow_mut() {
            Ok(mut inner) => Pin::new(&mut *inner).poll_next(cx),
            // Only one attempt polls at a time; a second poller sees the end.
            Err(_) => Poll::Ready(None),
        }
    }
}

/// Fields of one access-log line.
pub struct AccessRecord {
    pub log: Logger,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub route: String,
    pub backend: String,
    pub request_id: String,
    /// The `traceparent` sent upstream (its trace id is logged).
    pub traceparent: HeaderValue,
    pub client_ip: String,
    pub bytes_in: Rc<Cell<u64>>,
    pub started: Instant,
}

impl AccessRecord {
    /// Writes the line now (gateway-made responses) with `bytes_out`.
    pub fn emit(&self, bytes_out: u64) {
        let log = &self.log;
        info!(log, "request completed";
            "method" => &self.method, "path" => &self.path, "status" => self.status,
            "duration_ms" => self.started.elapsed().as_secs_f64() * 1000.0,
            "route" => &self.route, "backend" => &self.backend, "request_id" => &self.request_id,
            "trace_id" => super::headers::trace_id_of(&self.traceparent),
            "client_ip" => &self.client_ip, "bytes_in" => self.bytes_in.get(), "bytes_out" => bytes_out);
    }
}

/// Upstream response body on its way to the client. A panic while producing it ends this
/// response (the client sees the body cut short) and is counted; the worker lives on.
pub struct ResponseBody<S> {
    inner: S,
    sent: u64,
    record: Option<AccessRecord>,
    guard: Option<ActiveGuard>,
    bytes_in: Rc<Cell<u64>>,
    /// Test-only fault: panic on the first poll (`fault::PANIC_BODY_PATH`).
    #[cfg(feature = "fault-injection")]
    pub(crate) panic_on_poll: bool,
}

impl<S> ResponseBody<S> {
    pub fn new(
        inner: S,
        record: Option<AccessRecord>,
        guard: Option<ActiveGuard>,
        bytes_in: Rc<Cell<u64>>,
    ) -> Self {
        ResponseBody {
            inner,
            sent: 0,
            record,
            guard,
            bytes_in,
            #[cfg(feature = "fault-injection")]
            panic_on_poll: false,
        }
    }
}

impl<S, E> Stream for ResponseBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: From<std::io::Error>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        #[cfg(feature = "fault-injection")]
        let fault = std::mem::take(&mut this.panic_on_poll);
        let inner = &mut this.inner;
        let polled = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(feature = "fault-injection")]
            if fault {
                panic!("injected fault: panic in a response body");
            }
            Pin::new(inner).poll_next(cx)
        }));
        match polled {
            Ok(Poll::Ready(Some(Ok(chunk)))) => {
                this.sent += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Ok(other) => other,
            Err(p) => {
                panics::record(PanicSite::HttpRequest);
                if let Some(r) = &this.record {
                    error!(r.log, "response body panicked; the response is cut short";
                           "request_id" => &r.request_id, "panic" => panics::message(p.as_ref()));
                }
                let cut = std::io::Error::other("the response body panicked");
                Poll::Ready(Some(Err(E::from(cut))))
            }
        }
    }
}

impl<S> Drop for ResponseBody<S> {
    fn drop(&mut self) {
        // Body bytes of the exchange, counted per backend like L4 traffic.
        if let Some(g) = &self.guard {
            g.backend().add_bytes(self.bytes_in.get(), self.sent);
        }
        if let Some(r) = &self.record {
            r.emit(self.sent);
        }
    }
}
