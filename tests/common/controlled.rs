//! A fake upstream whose status and delay change while it runs, and which counts concurrent
//! arrivals: for scenarios where a backend starts failing, recovers, or must see a bounded
//! number of requests at once.

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Knobs {
    status: AtomicU16,
    delay_ms: AtomicU64,
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running controllable upstream (answers every path, header `x-upstream: NAME`).
pub struct Controlled {
    pub name: String,
    pub addr: SocketAddr,
    knobs: Arc<Knobs>,
    handle: ServerHandle,
}

struct InFlight(Arc<Knobs>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handler(knobs: web::Data<Arc<Knobs>>, name: web::Data<String>) -> HttpResponse {
    let k = Arc::clone(&knobs);
    k.hits.fetch_add(1, Ordering::SeqCst);
    let now = k.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    k.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _slot = InFlight(Arc::clone(&k));
    let delay = k.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(k.status.load(Ordering::SeqCst)).unwrap();
    HttpResponse::build(status)
        .insert_header(("x-upstream", name.as_str()))
        .json(serde_json::json!({"backend": name.as_str()}))
}

impl Controlled {
    /// Starts on 127.0.0.1 with an ephemeral port, answering `status` (inside the test's system).
    pub async fn start(name: &str, status: u16) -> Controlled {
        Self::start_at(name, status, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (e.g. the port of a backend that was stopped, to bring it back).
    pub async fn start_at(name: &str, status: u16, addr: SocketAddr) -> Controlled {
        let knobs = Arc::new(Knobs::default());
        knobs.status.store(status, Ordering::SeqCst);
        let (k, n) = (Arc::clone(&knobs), name.to_string());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(Arc::clone(&k)))
                .app_data(web::Data::new(n.clone()))
                .default_service(web::to(handler))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr)
        .expect("bind upstream");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Controlled {
            name: name.to_string(),
            addr,
            knobs,
            handle,
        }
    }

    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn set_status(&self, status: u16) {
        self.knobs.status.store(status, Ordering::SeqCst);
    }
    pub fn set_delay(&self, delay: Duration) {
        self.knobs
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn hits(&self) -> usize {
        self.knobs.hits.load(Ordering::SeqCst)
    }
    /// The most requests in flight at once since the start (or the last reset).
    pub fn max_concurrent(&self) -> usize {
        self.knobs.max_in_flight.load(Ordering::SeqCst)
    }
    pub fn reset_max_concurrent(&self) {
        self.knobs.max_in_flight.store(0, Ordering::SeqCst);
    }
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
