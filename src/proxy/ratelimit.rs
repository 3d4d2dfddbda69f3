//! The L7 side of rate limiting: pick the request's key for the limiter that applies (the
//! route's own or the server's, resolved in the snapshot), take a token, and answer 429 with
//! `Retry-After` when there is none. Allowed or not, the decision's quota travels with the
//! exchange so every response carries `RateLimit-Limit`, `-Remaining` and `-Reset`.

use super::errors::GatewayError;
use super::{Exchange, ProxyWorker};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::HttpResponse;
use gogate_actors::cluster::StoreSettings;
use gogate_actors::ratelimit::{Decision, LimitKey, RateKey, RateLimitSnapshot};
use gogate_actors::snapshot::RouteSnapshot;
use gogate_config::cluster::OnStoreDown;
use std::net::IpAddr;
use std::sync::Arc;

/// Checks the request against `limit` (none = unlimited). Returns the 429 to send when the
/// bucket is empty; otherwise records the quota on the exchange and lets the request through.
/// A `scope: global` limit asks the cluster store through this worker's connection, bounded by
/// `cluster.timeout`; when the store fails, `cluster.onStoreDown` decides: this replica's own
/// bucket (`local`) or 503 (`deny`).
pub(crate) async fn enforce(
    w: &ProxyWorker,
    ex: &mut Exchange,
    route: Option<&RouteSnapshot>,
    limit: Option<&RateLimitSnapshot>,
) -> Option<HttpResponse> {
    let limit = limit?;
    let decision = {
        let key = rate_key(limit.limiter.key(), ex.fwd.client_ip, ex.req.headers());
        match (limit.limiter.global_id(), &ex.snap.store) {
            (Some(id), Some(store)) => match global_check(w, store, id, key, limit).await {
                Ok(d) => d,
                Err(()) if store.on_down == OnStoreDown::Local => limit.check(key, &w.stats),
                Err(()) => return Some(ex.fail(w, route, GatewayError::StoreUnavailable)),
            },
            _ => limit.check(key, &w.stats),
        }
    };
    ex.quota = Some(decision);
    if decision.allowed {
        return None;
    }
    let mut res = ex.fail(w, route, GatewayError::RateLimited);
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(decision.retry_after_secs));
    Some(res)
}

/// One token from the cluster store's bucket, within `cluster.timeout`; `Err` (counted in
/// `gogate_store_errors_total{op="ratelimit"}`) when the store did not answer in time.
async fn global_check(
    w: &ProxyWorker,
    store: &Arc<StoreSettings>,
    id: &str,
    key: RateKey<'_>,
    limit: &RateLimitSnapshot,
) -> Result<Decision, ()> {
    let buckets = w.global_buckets(store);
    let taken =
        tokio::time::timeout(store.timeout, buckets.take(id, key, limit.limiter.shape())).await;
    match taken {
        Ok(Ok(d)) => {
            limit.count(&d, &w.stats);
            Ok(d)
        }
        _ => {
            store.ratelimit_errors.inc();
            Err(())
        }
    }
}

/// The bucket key of a request for a limiter keyed by `key` (also `/explain`); `client_ip` is
/// the derived client address: the peer, or the client behind a trusted proxy.
#[inline]
pub(crate) fn rate_key<'a>(
    key: &LimitKey,
    client_ip: IpAddr,
    headers: &'a HeaderMap,
) -> RateKey<'a> {
    match key {
        LimitKey::Global => RateKey::Global,
        LimitKey::Ip => RateKey::Ip(client_ip),
        LimitKey::Header(name) => RateKey::Header(headers.get(name).map(|v| v.as_bytes())),
    }
}

/// The `RateLimit-*` headers of `quota`.
pub(crate) fn quota_headers(quota: &Decision) -> [(HeaderName, HeaderValue); 3] {
    [
        ("ratelimit-limit", u64::from(quota.limit)),
        ("ratelimit-remaining", u64::from(quota.remaining)),
        ("ratelimit-reset", quota.reset_secs),
    ]
    .map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from(value)))
}

/// Adds the `RateLimit-*` headers of `quota` to a response.
pub(crate) fn set_headers(quota: &Decision, headers: &mut HeaderMap) {
    for (name, value) in quota_headers(quota) {
        headers.insert(name, value);
    }
}
