//! The L7 data plane: one actix-web handler that serves every proxied request. It loads the
//! published snapshot once, checks limits, matches a route, picks a split target and a backend,
//! and forwards with the worker's awc client. It never awaits an actor.

mod auth;
mod body;
mod cors;
pub mod errors;
pub(crate) mod forward;
pub mod headers;
pub(crate) mod ratelimit;
pub mod server;
pub mod tls;
pub(crate) mod upstream;
mod websocket;

use body::AccessRecord;
use errors::GatewayError;
use gogate_actors::auth::ClaimHeaders;
use gogate_actors::cluster::ratelimit::GlobalBuckets;
use gogate_actors::cluster::StoreSettings;
use gogate_actors::ratelimit::Decision;
use gogate_actors::routing::RequestFacts;
use gogate_actors::snapshot::RouteSnapshot;
use gogate_actors::{BackendState, GatewaySnapshot, SnapshotCell, Stats};

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::FutureExt;
use gogate_actors::panics::{self, PanicSite};
use slog::{error, Drain, Logger};
use std::borrow::Cow;
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Per-worker state of the proxy (built in the app factory, so one per worker thread).
pub struct ProxyWorker {
    pub cell: SnapshotCell,
    pub stats: Arc<Stats>,
    pub log: Logger,
    /// Idle upstream connections of this worker.
    pub pool: Rc<upstream::ConnPool>,
    /// Serves the HTTPS listener (`X-Forwarded-Proto: https` to the upstream).
    pub tls: bool,
    /// The JWTs this worker verified (`auth: jwt`): a repeated token skips the signature check.
    pub tokens: std::cell::RefCell<gogate_actors::auth::TokenCache>,
    /// This worker's connection to the cluster store, for `scope: global` limits: made at the
    /// first such request, kept while reloads keep the same store, dropped by the sweeper
    /// once the published configuration names another store or none (its task then ends).
    store: Rc<StoreSlot>,
}

/// A worker's cached store client and the settings it was made for.
type StoreSlot = std::cell::RefCell<Option<(Arc<StoreSettings>, Rc<GlobalBuckets>)>>;

/// How often a worker closes pooled connections that have been idle too long (and drops a
/// store connection the configuration no longer names).
const POOL_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

impl ProxyWorker {
    /// Must be called on the worker's thread (it starts the worker's pool sweeper there).
    pub fn new(cell: SnapshotCell, stats: Arc<Stats>, log: Logger) -> Self {
        let pool = Rc::new(upstream::ConnPool::default());
        let store: Rc<StoreSlot> = Rc::default();
        let (weak, weak_store, sweep_cell) =
            (Rc::downgrade(&pool), Rc::downgrade(&store), cell.clone());
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(POOL_SWEEP);
            tick.tick().await;
            loop {
                tick.tick().await;
                let (Some(pool), Some(store)) = (weak.upgrade(), weak_store.upgrade()) else {
                    return;
                };
                pool.sweep();
                let current = sweep_cell.load().store.clone();
                let mut slot = store.borrow_mut();
                let stale = slot
                    .as_ref()
                    .is_some_and(|(s, _)| !current.as_ref().is_some_and(|c| c.same_store(s)));
                if stale {
                    *slot = None;
                }
            }
        });
        ProxyWorker {
            cell,
            stats,
            log,
            pool,
            tls: false,
            tokens: Default::default(),
            store,
        }
    }

    /// The worker's shared-bucket client for `store` (connected in the background the first
    /// time; until then its requests fail fast and `onStoreDown` applies).
    pub(crate) fn global_buckets(&self, store: &Arc<StoreSettings>) -> Rc<GlobalBuckets> {
        let mut slot = self.store.borrow_mut();
        if let Some((s, b)) = slot.as_ref() {
            if s.same_store(store) {
                return Rc::clone(b);
            }
        }
        let conn = gogate_actors::cluster::conn::Conn::start(store.target.clone());
        let buckets = Rc::new(GlobalBuckets::new(conn, &store.prefix));
        *slot = Some((Arc::clone(store), Rc::clone(&buckets)));
        buckets
    }
}

/// One request in flight through the gateway.
pub(crate) struct Exchange {
    pub snap: Arc<GatewaySnapshot>,
    pub req: HttpRequest,
    pub request_id: String,
    /// W3C Trace Context for the upstream (DESIGN B11).
    pub trace: headers::Trace,
    pub fwd: headers::Forwarded,
    pub started: Instant,
    /// The backend last tried (for the access log).
    pub backend: Option<Arc<BackendState>>,
    pub bytes_in: Rc<Cell<u64>>,
    pub exceeded: Rc<Cell<bool>>,
    /// The rate-limit decision, when a limit applies (its `RateLimit-*` headers go on the response).
    pub quota: Option<Decision>,
    /// The normalised path for the upstream (`gogate_actors::path`); `None` = the request's
    /// own path, already normal.
    pub forward_path: Option<Box<str>>,
    /// The normalised path routes match, segment parameters removed; `None` = `forward_path`.
    pub match_path: Option<Box<str>>,
    /// Upstream headers from the accepted token's claims (`jwt.forwardClaims`).
    pub claims: ClaimHeaders,
    /// It came through the HTTPS listener.
    pub tls: bool,
    /// Set once the route is known, when it applies a CORS policy (its headers go on every
    /// response, the gateway's errors included).
    pub cors: Option<cors::CorsGrant>,
}

impl Exchange {
    /// The path the upstream receives (before `stripPrefix`).
    pub fn forward_path(&self) -> &str {
        self.forward_path
            .as_deref()
            .unwrap_or_else(|| self.req.path())
    }

    /// The path routes are matched against.
    pub fn match_path(&self) -> &str {
        self.match_path
            .as_deref()
            .unwrap_or_else(|| self.forward_path())
    }

    /// Records the response in metrics and `/stats` (at response-header time).
    fn record_metrics(&self, w: &ProxyWorker, route: &RouteSnapshot, status: u16) {
        let elapsed = self.started.elapsed();
        route.metrics.observe(status, elapsed.as_secs_f64());
        w.stats
            .record_request(status < 500, elapsed.as_micros() as u64);
    }

    /// The access-log record, or `None` when access logging is off.
    fn access_record(&self, w: &ProxyWorker, route: &str, status: u16) -> Option<AccessRecord> {
        if !self.snap.access_log || !w.log.is_info_enabled() {
            return None;
        }
        Some(AccessRecord {
            log: w.log.clone(),
            method: self.req.method().to_string(),
            path: self.req.path().to_string(),
            status,
            route: route.to_string(),
            backend: self
                .backend
                .as_ref()
                .map(|b| b.addr.clone())
                .unwrap_or_default(),
            request_id: self.request_id.clone(),
            traceparent: self.trace.traceparent.clone(),
            client_ip: self.fwd.client_ip.to_string(),
            bytes_in: self.bytes_in.clone(),
            started: self.started,
        })
    }

    /// Sends a response the gateway made itself that is not an error (a preflight's 204), and
    /// records it like an upstream's.
    fn answer(&self, w: &ProxyWorker, route: &RouteSnapshot, res: HttpResponse) -> HttpResponse {
        let status = res.status().as_u16();
        self.record_metrics(w, route, status);
        if let Some(rec) = self.access_record(w, &route.name, status) {
            rec.emit(0);
        }
        res
    }

    /// Answers with a gateway-made JSON error and records it.
    fn fail(
        &self,
        w: &ProxyWorker,
        route: Option<&RouteSnapshot>,
        err: GatewayError,
    ) -> HttpResponse {
        let status = err.status().as_u16();
        let elapsed = self.started.elapsed();
        let (metrics, name) = match route {
            Some(r) => (&r.metrics, r.name.as_str()),
            None => (&self.snap.unmatched, "none"),
        };
        metrics.observe(status, elapsed.as_secs_f64());
        w.stats
            .record_request(status < 500, elapsed.as_micros() as u64);
        let mut res = err.response(&self.request_id);
        if let Some(q) = &self.quota {
            ratelimit::set_headers(q, res.headers_mut());
        }
        if let Some(c) = &self.cors {
            c.apply(res.headers_mut());
        }
        if let Some(rec) = self.access_record(w, name, status) {
            rec.emit(0);
        }
        res
    }
}

/// The proxy handler (actix-web default service of the L7 listener). A panic while serving
/// the request costs that request only: it is answered with a 500, logged and counted
/// (`gogate_panics_total{where="http_request"}`), and the worker goes on serving.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    w: web::Data<ProxyWorker>,
) -> HttpResponse {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    let (method, path) = (req.method().clone(), req.path().to_string());
    let served = AssertUnwindSafe(serve(req, payload, &w, request_id.clone(), started));
    match served.catch_unwind().await {
        Ok(res) => res,
        Err(p) => {
            panics::record(PanicSite::HttpRequest);
            error!(w.log, "request handler panicked; answered 500";
                   "method" => method.as_str(), "path" => path, "request_id" => &request_id,
                   "panic" => panics::message(p.as_ref()));
            w.stats
                .record_request(false, started.elapsed().as_micros() as u64);
            let mut res = errors::json_error(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                &request_id,
            );
            // Whatever the handler left half-read must not be taken for the next request.
            res.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            res
        }
    }
}

async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    w: &ProxyWorker,
    request_id: String,
    started: Instant,
) -> HttpResponse {
    #[cfg(feature = "fault-injection")]
    crate::fault::on_request(req.path());
    let snap = w.cell.load();
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut ex = Exchange {
        request_id,
        trace: headers::trace(req.headers()),
        fwd: headers::forwarded(&snap, peer, req.headers()),
        snap,
        req,
        started,
        backend: None,
        bytes_in: Rc::default(),
        exceeded: Rc::default(),
        quota: None,
        forward_path: None,
        match_path: None,
        claims: Vec::new(),
        tls: w.tls,
        cors: None,
    };
    if let Some(why) = headers::host_problem(ex.req.headers()) {
        return ex.fail(w, None, GatewayError::BadRequest(why));
    }
    let limits = &ex.snap.limits;
    let uri_len = ex
        .req
        .uri()
        .path_and_query()
        .map_or(1, |pq| pq.as_str().len());
    if headers::head_size(ex.req.method().as_str(), uri_len, ex.req.headers())
        > limits.max_header_bytes as usize
    {
        return ex.fail(w, None, GatewayError::HeadersTooLarge);
    }
    let declared = ex
        .req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if limits.max_body_bytes > 0 && declared.is_some_and(|n| n > limits.max_body_bytes) {
        return ex.fail(w, None, GatewayError::BodyTooLarge);
    }

    // Routing, auth and forwarding all see the normalised path (gogate_actors::path).
    match gogate_actors::path::normalize(ex.req.path()) {
        Ok(n) => {
            let owned = |c: Cow<'_, str>| match c {
                Cow::Borrowed(_) => None,
                Cow::Owned(s) => Some(s.into_boxed_str()),
            };
            let same = n.forward == n.matching;
            let (forward, matching) = (owned(n.forward), owned(n.matching));
            ex.match_path = if same { None } else { matching };
            ex.forward_path = forward;
        }
        Err(e) => return ex.fail(w, None, GatewayError::BadRequest(e.message())),
    }

    if let Some(res) = cors::preflight(w, &ex) {
        return res;
    }
    let snap = Arc::clone(&ex.snap);
    let route = find_route(&snap, &ex, ex.req.method().as_str()).or(snap.default_route.as_ref());
    let Some(route) = route else {
        let limit = snap.unmatched_rate_limit.as_ref();
        if let Some(res) = ratelimit::enforce(w, &mut ex, None, limit).await {
            return res;
        }
        return ex.fail(w, None, GatewayError::NoRoute);
    };
    ex.cors = cors::CorsGrant::for_route(route, ex.req.headers());
    if let Some(res) = ratelimit::enforce(w, &mut ex, Some(route), route.rate_limit.as_ref()).await
    {
        return res;
    }
    if let Some(res) = auth::authorize(w, &mut ex, route) {
        return res;
    }
    let target = route.pick_target(ex.req.headers());
    if websocket::is_upgrade(&ex.req) {
        return websocket::tunnel(w, &mut ex, route, target, payload).await;
    }
    forward::forward(w, &mut ex, route, target, payload).await
}

/// The route a request with `method` would take (the default upstream's not included).
fn find_route<'a>(
    snap: &'a GatewaySnapshot,
    ex: &Exchange,
    method: &str,
) -> Option<&'a Arc<RouteSnapshot>> {
    let req = &ex.req;
    // The normalised path (see `serve`).
    with_facts(
        req.headers(),
        req.uri().host(),
        ex.match_path(),
        method,
        |facts| snap.routes.find(facts).map(|(_, r)| r),
    )
}

/// Calls `f` with what routes are matched on for a request with these headers, URI host,
/// (normalised) path and method: the request path and `/explain` share it.
pub(crate) fn with_facts<R>(
    headers: &actix_web::http::header::HeaderMap,
    uri_host: Option<&str>,
    path: &str,
    method: &str,
    f: impl FnOnce(&RequestFacts<'_>) -> R,
) -> R {
    let hdr = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let facts = RequestFacts {
        host: headers::request_host(headers, uri_host),
        path,
        method,
        header: &hdr,
    };
    f(&facts)
}
