//! WebSocket (and other `Upgrade`) tunnelling. awc speaks frames, not raw upgrades, so the
//! handshake goes over a plain TCP connection: the request head is written with the same header
//! rules as any request, the upstream's `101` is relayed, and from then on bytes flow both ways
//! untouched (client → upstream from the request payload, which actix delivers raw after an
//! upgrade; upstream → client as the response body).

use super::body::ResponseBody;
use super::errors::GatewayError;
use super::forward::{upstream_headers, upstream_path};
use super::upstream::{encode_upgrade_head, read_head, Head, UpstreamError};
use super::{Exchange, ProxyWorker};
use actix_web::body::BodyStream;
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use gogate_actors::snapshot::{RouteSnapshot, RouteTarget};
use gogate_actors::tcp::connect::{connect_eligible, ConnectFailure, Connected};
use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;

/// `GET` with `Upgrade: websocket` and `Connection: upgrade`.
pub fn is_upgrade(req: &HttpRequest) -> bool {
    let h = req.headers();
    req.method() == Method::GET
        && h.get("upgrade")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && h.get_all("connection")
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

pub async fn tunnel(
    w: &ProxyWorker,
    ex: &mut Exchange,
    route: &RouteSnapshot,
    target: &RouteTarget,
    mut payload: web::Payload,
) -> HttpResponse {
    let connected = connect_eligible(&target.upstream, &target.counters, |i, _| {
        ex.backend = Some(Arc::clone(&target.upstream.backends[i]));
    })
    .await;
    let Connected {
        index: i,
        mut stream,
        guard,
    } = match connected {
        Ok(c) => c,
        Err(why) => {
            let err = match why {
                ConnectFailure::NoneEligible if target.upstream.breaker_blocked() => {
                    GatewayError::CircuitOpen
                }
                ConnectFailure::NoneEligible => GatewayError::NoEligibleBackend,
                ConnectFailure::Refused(_) => GatewayError::UpstreamConnect,
                ConnectFailure::TimedOut => GatewayError::UpstreamTimeout,
            };
            return ex.fail(w, Some(route), err);
        }
    };
    ex.backend = Some(Arc::clone(guard.backend()));
    let backend = guard.backend().clone();

    let mut headers = HeaderMap::new();
    upstream_headers(ex, route, &backend, &mut headers, true);
    let head = match encode_upgrade_head(&upstream_path(ex, route), &headers) {
        Ok(h) => h,
        Err(_) => {
            return ex.fail(
                w,
                Some(route),
                GatewayError::BadRequest("invalid request target"),
            )
        }
    };

    let exchange = async {
        stream
            .write_all(&head)
            .await
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let mut buf = BytesMut::with_capacity(4096);
        let head = read_head(&mut stream, &mut buf).await?;
        Ok::<_, UpstreamError>((head, buf.freeze()))
    };
    let (
        Head {
            status: code,
            headers: resp_headers,
            ..
        },
        rest,
    ) = match tokio::time::timeout(target.request_timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            target.upstream.record_outcome(&guard, false);
            target.counters[i].failure.inc();
            return ex.fail(w, Some(route), GatewayError::UpstreamProtocol);
        }
        Err(_) => {
            target.upstream.record_outcome(&guard, false);
            target.counters[i].failure.inc();
            return ex.fail(w, Some(route), GatewayError::UpstreamTimeout);
        }
    };
    let status = code.as_u16();
    let success = status < 500;
    target.upstream.record_outcome(&guard, success);
    target.counters[i].record(success);
    let mut builder = HttpResponse::build(code);
    for (k, v) in resp_headers.iter() {
        let n = k.as_str();
        if n == "content-length" || n == "transfer-encoding" || n == "keep-alive" {
            continue;
        }
        builder.append_header((k.clone(), v.clone()));
    }
    builder.insert_header(("x-request-id", ex.request_id.as_str()));
    for pair in ex
        .quota
        .as_ref()
        .map(super::ratelimit::quota_headers)
        .into_iter()
        .flatten()
    {
        builder.insert_header(pair);
    }
    ex.record_metrics(w, route, status);
    let record = ex.access_record(w, &route.name, status);
    if code != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream declined the upgrade: relay its answer (the head and what came with it).
        builder.force_close();
        return builder.body(rest);
    }

    let (rd, mut wr) = stream.into_split();
    let bytes_in = ex.bytes_in.clone();
    let activity = Rc::new(Cell::new(Instant::now()));
    let uplink = {
        let activity = Rc::clone(&activity);
        actix_rt::spawn(async move {
            while let Some(Ok(chunk)) = payload.next().await {
                activity.set(Instant::now());
                bytes_in.set(bytes_in.get() + chunk.len() as u64);
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        })
    };
    let downlink = Downlink {
        rd,
        first: (!rest.is_empty()).then_some(rest),
        activity,
        idle: target.upstream.timeouts.idle.get(),
        timer: None,
        uplink,
        cut: ex.snap.idle_timeouts.tunnel.clone(),
    };
    let body = ResponseBody::new(downlink, record, Some(guard), ex.bytes_in.clone());
    builder.body(BodyStream::new(body))
}

/// The upstream → client half of a tunnel, which also ends the whole tunnel when neither side
/// sent a byte for `timeouts.idle` (the other half, a task, is aborted when this is dropped).
struct Downlink {
    rd: OwnedReadHalf,
    /// Bytes that came with the `101` head.
    first: Option<Bytes>,
    /// When either direction last moved a byte.
    activity: Rc<Cell<Instant>>,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    uplink: actix_rt::task::JoinHandle<()>,
    cut: prometheus::IntCounter,
}

impl Stream for Downlink {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            this.activity.set(Instant::now());
            return Poll::Ready(Some(Ok(first)));
        }
        let mut buf = BytesMut::with_capacity(16 * 1024);
        match pin!(this.rd.read_buf(&mut buf)).poll(cx) {
            Poll::Ready(Ok(0)) => return Poll::Ready(None),
            Poll::Ready(Ok(_)) => {
                this.activity.set(Instant::now());
                return Poll::Ready(Some(Ok(buf.freeze())));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            Poll::Pending => {}
        }
        // Both directions may have been quiet: wait until `idle` after the last byte either way.
        loop {
            let quiet_until = this.activity.get() + this.idle;
            if Instant::now() >= quiet_until {
                this.cut.inc();
                this.uplink.abort();
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the tunnel was silent both ways for timeouts.idle",
                ))));
            }
            let timer = match &mut this.timer {
                Some(t) => {
                    t.as_mut().reset(quiet_until.into());
                    t
                }
                slot @ None => slot.insert(Box::pin(tokio::time::sleep_until(quiet_until.into()))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Downlink {
    fn drop(&mut self) {
        self.uplink.abort();
    }
}
