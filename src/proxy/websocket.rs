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
use futures_util::StreamExt;
use gogate_actors::snapshot::{RouteSnapshot, RouteTarget};
use gogate_actors::tcp::connect::{connect_eligible, ConnectFailure, Connected};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    upstream_headers(ex, route, &backend.addr, &mut headers, true);
    let head = match encode_upgrade_head(&upstream_path(&ex.req, route), &headers) {
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
    actix_rt::spawn(async move {
        while let Some(Ok(chunk)) = payload.next().await {
            bytes_in.set(bytes_in.get() + chunk.len() as u64);
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let first =
        futures_util::stream::iter((!rest.is_empty()).then_some(Ok::<Bytes, std::io::Error>(rest)));
    let upstream = futures_util::stream::unfold(Some(rd), |state| async move {
        let mut rd = state?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        match rd.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(rd))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = ResponseBody::new(
        Box::pin(first.chain(upstream)),
        record,
        Some(guard),
        ex.bytes_in.clone(),
    );
    builder.body(BodyStream::new(body))
}
