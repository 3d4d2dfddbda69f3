//! Panic containment (the gateway is built with `panic = "unwind"`): a panic while serving a
//! request costs that request only (500 JSON, logged, counted), a panic in a response body cuts
//! that response only, and the worker keeps serving everyone else. The faults are injected by
//! the test-only `fault-injection` feature (`src/fault.rs`).
mod common;
use common::*;

use gogate::fault::{PANIC_BODY_PATH, PANIC_PATH};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The injected panics print one line instead of the default hook's backtrace: resolving a
/// backtrace of this debug binary holds the panicking worker for seconds on a busy machine
/// (with `RUST_BACKTRACE=1`), which stalls every client of that worker and is not what is
/// tested here. Any other panic (a failed assertion) keeps the default hook.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if msg.is_some_and(|m| m.starts_with("injected fault")) {
                eprintln!("injected panic at {:?}", info.location());
                return;
            }
            default(info)
        }));
    });
}

fn panics_metric(text: &str, site: &str) -> f64 {
    let prefix = format!("gogate_panics_total{{where=\"{site}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in metrics:\n{text}"))
}

/// Clients sending GETs until `stop`, counting what they got (bounded: 2000 requests each).
fn background_clients(
    gw: &TestGateway,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> (
    Vec<actix_rt::task::JoinHandle<()>>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let tasks = (0..n)
        .map(|i| {
            let (url, stop, ok, bad) = (
                gw.url(&format!("/c{i}")),
                stop.clone(),
                ok.clone(),
                bad.clone(),
            );
            actix_rt::spawn(async move {
                // Keep-alive for even clients, a new connection per request for odd ones.
                let client = awc::Client::default();
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let req = if i % 2 == 0 {
                        client.get(&url)
                    } else {
                        client.get(&url).insert_header(("connection", "close"))
                    };
                    let good = match req.send().await {
                        Ok(mut r) => r.status() == 200 && r.body().await.is_ok(),
                        Err(_) => false,
                    };
                    let counter = if good { &ok } else { &bad };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (tasks, ok, bad)
}

#[actix_rt::test]
async fn a_panicking_request_costs_that_request_only() {
    quiet_injected_panics();
    let up = Upstream::new("a").start().await;
    // One worker: if the panic took the worker down, every client would notice.
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (clients, ok, bad) = background_clients(&gw, 4, &stop);
    eventually("background clients are served", || async {
        ok.load(Ordering::Relaxed) > 20
    })
    .await;
    for _ in 0..5 {
        let r = gw.get(PANIC_PATH).await;
        assert_eq!(r.status, 500, "{}", r.body);
        let j = r.json();
        assert_eq!(j["error"], "internal error", "{j}");
        assert_eq!(
            j["request_id"].as_str(),
            r.header("x-request-id"),
            "the 500 carries the request id"
        );
    }
    let before = ok.load(Ordering::Relaxed);
    eventually("clients keep being served after the panics", || async {
        ok.load(Ordering::Relaxed) > before + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    assert_eq!(bad.load(Ordering::Relaxed), 0, "no other request failed");
    assert_eq!(gw.get("/after").await.status, 200);
    assert!(panics_metric(&gw.metrics_text().await, "http_request") >= 5.0);
    assert!(
        up.seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| !s.path.starts_with("/__gogate_fault")),
        "the panicking request never reached the upstream"
    );
    let logged = gw.logs.with_msg("request handler panicked; answered 500");
    assert!(logged.len() >= 5, "{logged:?}");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_panicking_response_body_cuts_that_response_only() {
    quiet_injected_panics();
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let addr = gw.http.expect("http listener");
    for _ in 0..3 {
        let text = raw_exchange(
            addr,
            format!("GET {PANIC_BODY_PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        // The head went out (200 from the upstream), the body was cut: fewer bytes than
        // announced, then the connection closed.
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        if let Some(len) = head.lines().find_map(|l| {
            l.to_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        }) {
            let len: usize = len.parse().expect("content-length");
            assert!(body.len() < len, "a full body despite the panic: {text}");
        }
    }
    // The worker lives on, and the backend's in-flight count went back to zero.
    assert_eq!(gw.get("/after").await.status, 200);
    eventually("no request left in flight", || async {
        gw.admin_get("/backends").await.json()[0]["active_connections"] == 0
    })
    .await;
    assert!(panics_metric(&gw.metrics_text().await, "http_request") >= 3.0);
    gw.stop().await;
}
