//! The upstream exchange of one L7 request: choose a backend, send it with the worker's
//! upstream client (a small body is kept in hand so a connect failure can move to the next
//! backend; a large or chunked one streams, and is retried only if no byte of it was read), and
//! stream the response back with its headers rewritten.

use super::body::{LimitedBody, Primed, ResponseBody, SharedBody};
use super::errors::GatewayError;
use super::headers;
use super::upstream::{self, Framing, Payload, UpstreamError, UpstreamResponse};
use super::{Exchange, ProxyWorker};
use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use actix_web::http::{StatusCode, Version};
use actix_web::{web, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use gogate_actors::snapshot::{RouteSnapshot, RouteTarget};
use gogate_actors::{ActiveGuard, BackendState};
use std::sync::Arc;

/// Bodies up to this size (with a declared length) are read first so they can be re-sent.
const REPLAY_LIMIT: u64 = 64 * 1024;

type ClientBody = SharedBody<Primed<LimitedBody<Primed<web::Payload>>>>;

enum Body {
    Empty,
    Buffered(bytes::Bytes),
    Stream(ClientBody, Framing),
}

pub async fn forward(
    w: &ProxyWorker,
    ex: &mut Exchange,
    route: &RouteSnapshot,
    target: &RouteTarget,
    mut payload: web::Payload,
) -> HttpResponse {
    let req = &ex.req;
    let max_body = ex.snap.limits.max_body_bytes;
    let content_length = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key("transfer-encoding");
    // HTTP/2 has no `Transfer-Encoding`: a body without `Content-Length` is told from no body by
    // reading its first chunk (a request without one ends with its headers, so this returns at
    // once); it then streams to the upstream chunked.
    let mut first = None;
    if req.version() == Version::HTTP_2 && content_length.is_none() {
        let idle = target.upstream.timeouts.idle.get();
        match tokio::time::timeout(idle, payload.next()).await {
            Ok(None) => {}
            Ok(Some(Ok(c))) => first = Some(c),
            Ok(Some(Err(_))) => {
                let why = GatewayError::BadRequest("malformed request body");
                return ex.fail(w, Some(route), why);
            }
            Err(_) => {
                ex.snap.idle_timeouts.request_body.inc();
                return ex.fail(w, Some(route), GatewayError::BodyTimeout);
            }
        }
    }
    let body = if !chunked && first.is_none() && content_length.unwrap_or(0) == 0 {
        Body::Empty
    } else if let (false, None, Some(len)) = (
        chunked,
        &first,
        content_length.filter(|l| *l <= REPLAY_LIMIT),
    ) {
        let mut buf = BytesMut::with_capacity(len as usize);
        // A client that declares a body and then stalls gets `timeouts.idle` between chunks.
        let idle = target.upstream.timeouts.idle.get();
        loop {
            match tokio::time::timeout(idle, payload.next()).await {
                Ok(Some(Ok(c))) => buf.extend_from_slice(&c),
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    return ex.fail(
                        w,
                        Some(route),
                        GatewayError::BadRequest("malformed request body"),
                    )
                }
                Err(_) => {
                    ex.snap.idle_timeouts.request_body.inc();
                    return ex.fail(w, Some(route), GatewayError::BodyTimeout);
                }
            }
        }
        ex.bytes_in.set(buf.len() as u64);
        Body::Buffered(buf.freeze())
    } else {
        // An HTTP/2 body's first chunk (read above) goes through the limit like the rest.
        let mut limited = LimitedBody::new(Primed::new(first, payload), max_body);
        ex.bytes_in = limited.seen.clone();
        ex.exceeded = limited.exceeded.clone();
        // No upstream hears of the request until its body has started arriving well-formed:
        // one broken from its first bytes (a bare LF or a bad chunk-size line) is a 400 here.
        let idle = target.upstream.timeouts.idle.get();
        let first = match tokio::time::timeout(idle, limited.next()).await {
            Ok(Some(Ok(c))) => Some(c),
            Ok(None) => None,
            Ok(Some(Err(_))) => {
                let why = if ex.exceeded.get() {
                    GatewayError::BodyTooLarge
                } else {
                    GatewayError::BadRequest("malformed request body")
                };
                return ex.fail(w, Some(route), why);
            }
            Err(_) => {
                ex.snap.idle_timeouts.request_body.inc();
                return ex.fail(w, Some(route), GatewayError::BodyTimeout);
            }
        };
        let framing = match (chunked, content_length) {
            (false, Some(n)) => Framing::Length(n),
            _ => Framing::Chunked,
        };
        Body::Stream(SharedBody::new(Primed::new(first, limited)), framing)
    };

    let up = &target.upstream;
    let path_and_query = upstream_path(ex, route);
    let mut tried: Vec<usize> = Vec::with_capacity(0);
    let mut last = GatewayError::NoEligibleBackend;
    for _ in 0..=up.retry_attempts {
        let Some((i, guard)) = up.acquire(&tried) else {
            break;
        };
        if up.retry_attempts > 0 {
            tried.push(i);
        }
        let backend = &up.backends[i];
        ex.backend = Some(Arc::clone(backend));
        let mut headers = HeaderMap::new();
        upstream_headers(ex, route, backend, &mut headers, false);
        let dest = upstream::Target {
            addr: &backend.addr,
            pool: &w.pool,
            settings: &up.pool,
            response_timeout: target.request_timeout,
            idle: up.timeouts.idle.get(),
            idle_cuts: &ex.snap.idle_timeouts,
        };
        let request = upstream::Request {
            method: ex.req.method(),
            path_and_query: &path_and_query,
            headers: &headers,
        };
        let payload = match &body {
            Body::Empty => Payload::Empty {
                declared_zero: content_length == Some(0),
            },
            Body::Buffered(b) => Payload::Full(b.clone()),
            Body::Stream(s, framing) => Payload::Stream(s.handle(), *framing),
        };
        let err = match upstream::send(&dest, &request, payload).await {
            Ok(resp) => return respond(w, ex, route, target, i, guard, resp),
            Err(e) => e,
        };
        match err {
            // The client's body failed (too large, broken, stalled): not the backend's fault.
            UpstreamError::Body(_) => {
                let why = if ex.exceeded.get() {
                    GatewayError::BodyTooLarge
                } else {
                    GatewayError::BadRequest("malformed request body")
                };
                return ex.fail(w, Some(route), why);
            }
            UpstreamError::ClientIdle => return ex.fail(w, Some(route), GatewayError::BodyTimeout),
            _ => {}
        }
        up.record_outcome(&guard, false);
        target.counters[i].failure.inc();
        match err {
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout => {
                last = if matches!(err, UpstreamError::ConnectTimeout) {
                    GatewayError::UpstreamTimeout
                } else {
                    GatewayError::UpstreamConnect
                };
                if let Body::Stream(s, _) = &body {
                    if !s.untouched() {
                        break; // part of the body went out: it cannot be sent again
                    }
                }
            }
            UpstreamError::Timeout | UpstreamError::UpstreamIdle => {
                return ex.fail(w, Some(route), GatewayError::UpstreamTimeout)
            }
            _ => return ex.fail(w, Some(route), GatewayError::UpstreamProtocol),
        }
    }
    if last == GatewayError::NoEligibleBackend && up.breaker_blocked() {
        last = GatewayError::CircuitOpen;
    }
    ex.fail(w, Some(route), last)
}

/// Path and query for the upstream: the normalised path (what was routed and authorised is
/// what is served), the route's prefix stripped when asked, the query as sent.
pub(super) fn upstream_path(ex: &Exchange, route: &RouteSnapshot) -> String {
    upstream_path_of(ex.forward_path(), ex.req.uri().query(), route)
}

/// [`upstream_path`] from the normalised path and the query (also `/explain`).
pub(crate) fn upstream_path_of(
    forward: &str,
    query: Option<&str>,
    route: &RouteSnapshot,
) -> String {
    let path = match &route.strip_prefix {
        // Segment parameters (`/api;v=1/x`) make the prefix a count of segments.
        Some(prefix) if forward.contains(';') => {
            gogate_actors::path::strip_segments(prefix, forward)
        }
        Some(prefix) => gogate_actors::routing::strip_prefix(prefix, forward),
        None => forward,
    };
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// Builds the upstream request headers (DESIGN B4).
pub(super) fn upstream_headers(
    ex: &Exchange,
    route: &RouteSnapshot,
    backend: &BackendState,
    h: &mut HeaderMap,
    websocket: bool,
) {
    let src = ex.req.headers();
    headers::copy_end_to_end(src, h, websocket, true);
    // Claim headers come from a verified token only, never from the client (any route).
    for name in &ex.snap.claim_headers {
        h.remove(name);
    }
    // HTTP/2 carries the host in `:authority` (the URI), not in `Host`; the upstream speaks
    // HTTP/1.1, where `Host` is required.
    let orig_host = src.get("host").cloned().or_else(|| {
        let authority = ex.req.uri().authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    let host = if route.preserve_host {
        orig_host.clone()
    } else {
        // The configured host name for a resolved address (virtual hosts answer to it).
        backend.with_host(|host| HeaderValue::from_str(host).ok())
    };
    if let Some(v) = host {
        h.insert(HeaderName::from_static("host"), v);
    }
    set(h, "x-forwarded-for", &ex.fwd.xff);
    let proto = match (ex.fwd.peer_trusted, src.get("x-forwarded-proto")) {
        (true, Some(v)) => v.clone(),
        _ if ex.tls => HeaderValue::from_static("https"),
        _ => HeaderValue::from_static("http"),
    };
    h.insert(HeaderName::from_static("x-forwarded-proto"), proto);
    let fhost = match (ex.fwd.peer_trusted, src.get("x-forwarded-host")) {
        (true, Some(v)) => Some(v.clone()),
        _ => orig_host,
    };
    if let Some(v) = fhost {
        h.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
    set(h, "x-real-ip", &ex.fwd.client_ip.to_string());
    set(h, "x-request-id", &ex.request_id);
    h.insert(
        HeaderName::from_static("traceparent"),
        ex.trace.traceparent.clone(),
    );
    if !ex.trace.continued {
        h.remove("tracestate");
    }
    route.request_headers.apply(h);
    for (name, value) in &ex.claims {
        h.insert(name.clone(), value.clone());
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn respond(
    w: &ProxyWorker,
    ex: &mut Exchange,
    route: &RouteSnapshot,
    target: &RouteTarget,
    i: usize,
    guard: ActiveGuard,
    resp: UpstreamResponse,
) -> HttpResponse {
    let status = resp.status;
    let success = status.as_u16() < 500;
    target.upstream.record_outcome(&guard, success);
    target.counters[i].record(success);
    let mut hdrs = resp.headers;
    headers::strip_response_hop_by_hop(&mut hdrs);
    let content_length = hdrs
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // 204 and 304 never carry a body, whatever they announce (a 304 keeps the Content-Length
    // of the representation, which actix writes as given); other lengths are actix's to write.
    let bodyless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if status != StatusCode::NOT_MODIFIED {
        hdrs.remove(CONTENT_LENGTH);
    }
    route.response_headers.apply(&mut hdrs);
    if let Ok(v) = HeaderValue::from_str(&ex.request_id) {
        hdrs.insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(q) = &ex.quota {
        super::ratelimit::set_headers(q, &mut hdrs);
    }
    if let Some(c) = &ex.cors {
        c.apply(&mut hdrs);
    }
    ex.record_metrics(w, route, status.as_u16());
    let record = ex.access_record(w, &route.name, status.as_u16());
    #[allow(unused_mut)]
    let mut stream = ResponseBody::new(resp.body, record, Some(guard), ex.bytes_in.clone());
    #[cfg(feature = "fault-injection")]
    {
        stream.panic_on_poll = crate::fault::body_panics(ex.req.path());
    }
    // The upstream's header map moves into the response as it is (no per-header copy).
    let mut res = match content_length {
        _ if bodyless => {
            // The upstream body already ended (no body); dropping it logs and releases now.
            drop(stream);
            HttpResponse::with_body(status, ()).map_into_boxed_body()
        }
        Some(n) => {
            HttpResponse::with_body(status, SizedStream::new(n, stream)).map_into_boxed_body()
        }
        None => HttpResponse::with_body(status, BodyStream::new(stream)).map_into_boxed_body(),
    };
    *res.headers_mut() = hdrs;
    res
}
