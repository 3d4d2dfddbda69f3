//! Chaos: the gateway under steady load from several clients (keep-alive and new connections,
//! GETs and POSTs) while the things around it misbehave: a backend dies and comes back, the
//! configuration reloads by every trigger, the gateway shuts down. Every load loop is bounded in
//! count and time.
mod common;
use common::config_file::*;
use common::*;

use gogate_actors::reload::Reload;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one request got.
#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    /// `Ok(status)` or `Err(transport error)`.
    result: Result<u16, String>,
    backend: Option<String>,
    post: bool,
}

/// Clients sending requests until `stop` (each at most `MAX_PER_CLIENT`): even clients keep
/// their connection alive, odd ones open a new one per request; every third request is a POST.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Rc<RefCell<Vec<Outcome>>>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

const MAX_PER_CLIENT: usize = 3000;

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes: Rc<RefCell<Vec<Outcome>>> = Rc::default();
        let tasks = (0..clients)
            .map(|i| {
                let (url, stop, outcomes) = (url.clone(), stop.clone(), outcomes.clone());
                actix_rt::spawn(async move {
                    let client = awc::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .finish();
                    for n in 0..MAX_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let post = n % 3 == 2;
                        let mut req = if post {
                            client.post(&url)
                        } else {
                            client.get(&url)
                        };
                        if i % 2 == 1 {
                            req = req.insert_header(("connection", "close"));
                        }
                        let sent = if post {
                            req.send_body(format!("payload {i}/{n}")).await
                        } else {
                            req.send().await
                        };
                        let (result, backend) = match sent {
                            Ok(mut r) => {
                                let status = r.status().as_u16();
                                let backend = r
                                    .headers()
                                    .get("x-upstream")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                match r.body().await {
                                    Ok(_) => (Ok(status), backend),
                                    Err(e) => (Err(format!("body: {e}")), backend),
                                }
                            }
                            Err(e) => (Err(e.to_string()), None),
                        };
                        outcomes.borrow_mut().push(Outcome {
                            at: Instant::now(),
                            result,
                            backend,
                            post,
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            outcomes,
            tasks,
        }
    }

    fn count(&self) -> usize {
        self.outcomes.borrow().len()
    }

    /// Waits until `n` more requests completed (bounded: 10 s).
    async fn progress(&self, n: usize) {
        let target = self.count() + n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count() < target {
            assert!(Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.outcomes.take()
    }
}

fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| o.result != Ok(200)).collect()
}

fn by_backend(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        if let Some(b) = &o.backend {
            *m.entry(b.clone()).or_default() += 1;
        }
    }
    m
}

/// Three backends under steady load; one is killed: requests not yet sent to it never fail
/// (connect failures move to another backend); requests in flight on it may; after one health
/// interval nothing fails; brought back on the same port, it rejoins after `healthyThreshold`
/// probes.
#[actix_rt::test]
async fn a_backend_dying_under_load_fails_at_most_its_in_flight_requests() {
    let a = controlled::Controlled::start("a", 200).await;
    let b = controlled::Controlled::start("b", 200).await;
    let c = controlled::Controlled::start("c", 200).await;
    // A little latency so that requests really are in flight on `b` when it dies.
    for u in [&a, &b, &c] {
        u.set_delay(Duration::from_millis(5));
    }
    let b_addr = b.addr;
    let interval = Duration::from_millis(200);
    let gw = gateway(&format!(
        "server:\n  backends: [{{addr: \"{}\"}}, {{addr: \"{}\"}}, {{addr: \"{}\"}}]\n  \
         health: {{enabled: true, interval: 200ms, timeout: 100ms, unhealthyThreshold: 1, healthyThreshold: 2}}\n  \
         retry: {{attempts: 2}}\n",
        a.addr_str(),
        b.addr_str(),
        c.addr_str()
    ))
    .await;
    let clients = 6;
    let load = Load::start(gw.url("/chaos"), clients);
    load.progress(300).await;

    let killed_at = Instant::now();
    b.stop().await;
    load.progress(300).await;
    let settled = killed_at + interval * 2;
    while Instant::now() < settled + Duration::from_millis(500) {
        load.progress(20).await;
    }

    // Back on the same port: it rejoins after healthyThreshold (2) probes.
    let b2 = controlled::Controlled::start_at("b", 200, b_addr).await;
    b2.set_delay(Duration::from_millis(5));
    eventually("the restarted backend gets traffic again", || async {
        load.progress(20).await;
        b2.hits() > 0
    })
    .await;
    let outcomes = load.finish().await;

    let failed = failures(&outcomes);
    eprintln!(
        "backend death: {} requests, {} failed, spread {:?}",
        outcomes.len(),
        failed.len(),
        by_backend(&outcomes)
    );
    assert!(
        failed.len() <= clients,
        "only requests in flight on the killed backend may fail ({} clients): {failed:#?}",
        clients
    );
    assert!(
        failed.iter().all(|o| o.at >= killed_at),
        "failures before the kill: {failed:#?}"
    );
    let late: Vec<_> = failed.iter().filter(|o| o.at > settled).collect();
    assert!(
        late.is_empty(),
        "failures after one health interval: {late:#?}"
    );
    let spread = by_backend(&outcomes);
    assert!(spread.get("c").is_some_and(|&n| n > 100), "{spread:?}");
    gw.stop().await;
}

/// Reloads by every trigger (file watcher, SIGHUP's message, `POST /reload`) while clients keep
/// sending: no request fails, and each reload moves the traffic where the new file says.
#[actix_rt::test]
async fn reloads_by_every_trigger_under_load_lose_no_request() {
    let ups = [
        controlled::Controlled::start("a", 200).await,
        controlled::Controlled::start("b", 200).await,
        controlled::Controlled::start("c", 200).await,
    ];
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    let cfg = |i: usize| backends_yaml(&[&ups[i].addr_str()], "");
    write_config(&path, &cfg(0));
    let gw = gateway_from_file(&path).await;
    let actor = gw.gw.as_ref().expect("running").reload_handle();
    let load = Load::start(gw.url("/reload"), 6);
    load.progress(100).await;
    for round in 1..=6 {
        let target = round % 3;
        write_config(&path, &cfg(target));
        match round % 3 {
            // The watcher alone.
            0 => {}
            // What SIGHUP does (the signal itself is tested against the binary).
            1 => {
                let done = actor.send(Reload { trigger: "sighup" }).await;
                assert!(matches!(done, Ok(Ok(_))), "{done:?}");
            }
            _ => {
                let r = gw.admin_send("POST", "/reload").await;
                assert_eq!(r.status, 200, "{}", r.body);
            }
        }
        let name = ups[target].name.clone();
        let hits_before = ups[target].hits();
        eventually(
            &format!("round {round}: traffic moved to {name}"),
            || async {
                load.progress(10).await;
                ups[target].hits() > hits_before + 5
            },
        )
        .await;
    }
    let outcomes = load.finish().await;
    let failed = failures(&outcomes);
    eprintln!(
        "reloads: {} requests, {} failed, spread {:?}",
        outcomes.len(),
        failed.len(),
        by_backend(&outcomes)
    );
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    assert!(outcomes.len() > 300, "{}", outcomes.len());
    assert!(outcomes.iter().any(|o| o.post));
    gw.stop().await;
}

/// A shutdown under load: every request the gateway accepted is answered (no 5xx, no cut
/// response); the only errors clients may see are connections refused once the listener
/// closed (or a keep-alive connection closed between two requests, which clients retry).
#[actix_rt::test]
async fn a_shutdown_under_load_answers_every_accepted_request() {
    let slow = controlled::Controlled::start("slow", 200).await;
    slow.set_delay(Duration::from_millis(150));
    let gw = gateway(&backends_yaml(
        &[&slow.addr_str()],
        "  shutdown: {drainTimeout: 5s}\n",
    ))
    .await;
    let load = Load::start(gw.url("/drain"), 6);
    load.progress(30).await;
    let stopping = Instant::now();
    gw.stop().await;
    let outcomes = load.finish().await;
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|o| match &o.result {
            Ok(200) => false,
            Ok(_) => true,
            // Refused, or closed before a request was written: never accepted.
            Err(e) => {
                o.at < stopping
                    || !(e.contains("Connection refused")
                        || e.contains("connect")
                        || e.contains("Connect"))
            }
        })
        .collect();
    let errors = outcomes.iter().filter(|o| o.result.is_err()).count();
    let kinds: std::collections::BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(String::as_str))
        .collect();
    eprintln!(
        "shutdown: {} requests, {errors} refused after the stop: {kinds:?}",
        outcomes.len()
    );
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(
        outcomes.iter().filter(|o| o.result == Ok(200)).count() >= 30,
        "{outcomes:#?}"
    );
}
