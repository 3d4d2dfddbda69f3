//! `HealthActor`: schedules the active probes and reports every result to the backend's own
//! actor, which applies the thresholds. It decides nothing about health itself, so restarting
//! or re-targeting it (`SetTargets`, for reloads) never resets a verdict.
//!
//! Each backend has its own probe loop (a future of this actor, so a new target list cancels
//! it): a slow or silent backend never delays another backend's probe. A loop runs one probe at
//! a time: the next starts `interval` after the previous one started, or as soon as it ends
//! when it took longer (`health.timeout` may exceed `interval`, as with Envoy and Kubernetes
//! probes), so at most one probe (and one report) per backend is in flight.

use crate::backend::actor::ReportProbe;
use crate::health::probe::{probe, ProbeSpec};
use crate::health::tracker::Thresholds;
use actix::prelude::*;
use slog::{debug, info, Logger};
use std::time::{Duration, Instant};

/// One backend to probe: how, how often, and whom to tell.
#[derive(Clone)]
pub struct HealthTarget {
    /// Backend id (`upstream/addr`), for logs.
    pub id: String,
    pub spec: ProbeSpec,
    pub interval: Duration,
    /// Passed on with each report (the backend actor applies them).
    pub thresholds: Thresholds,
    pub report_to: Recipient<ReportProbe>,
}

pub struct HealthActor {
    targets: Vec<HealthTarget>,
    timers: Vec<SpawnHandle>,
    /// Set by `StopProbing` (shutdown): no probe is scheduled again, not even by `SetTargets`.
    stopped: bool,
    log: Logger,
}

impl HealthActor {
    pub fn new(targets: Vec<HealthTarget>, log: &Logger) -> Self {
        HealthActor {
            targets,
            timers: Vec::new(),
            stopped: false,
            log: log.new(slog::o!("actor" => "health")),
        }
    }

    /// (Re)starts one probe loop per target; the first probe runs at once, so a backend that is
    /// down at start is found after `unhealthyThreshold - 1` intervals.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        for t in self.timers.drain(..) {
            ctx.cancel_future(t);
        }
        for target in &self.targets {
            let probing = probe_loop(target.clone(), self.log.clone());
            self.timers
                .push(ctx.spawn(actix::fut::wrap_future(probing)));
        }
        info!(self.log, "health checks scheduled"; "targets" => self.targets.len());
    }
}

/// Probes `t` forever, one probe at a time, starting one every `interval` (or right after the
/// previous one when it outlasted the interval).
async fn probe_loop(t: HealthTarget, log: Logger) {
    loop {
        let started = Instant::now();
        let result = probe(&t.spec).await;
        if let Err(e) = &result {
            debug!(log, "health probe failed"; "backend_id" => &t.id, "error" => e);
        }
        // Unbounded send, but bounded in practice: one report per backend per interval.
        t.report_to.do_send(ReportProbe {
            result,
            thresholds: t.thresholds,
        });
        tokio::time::sleep_until((started + t.interval).into()).await;
    }
}

impl Actor for HealthActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.schedule(ctx);
    }
}

/// After a supervised restart `started` runs again and re-creates the timers.
impl Supervised for HealthActor {}

/// Command: probe these targets from now on (replaces the whole list; for reloads).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTargets(pub Vec<HealthTarget>);

impl Handler<SetTargets> for HealthActor {
    type Result = ();

    fn handle(&mut self, msg: SetTargets, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        self.targets = msg.0;
        self.schedule(ctx);
    }
}

/// Command: stop probing for good (shutdown). Probes already running finish and report; no
/// new one starts. The actor stays alive (its supervisor would restart it otherwise).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopProbing;

impl Handler<StopProbing> for HealthActor {
    type Result = ();

    fn handle(&mut self, _: StopProbing, ctx: &mut Context<Self>) {
        self.stopped = true;
        self.targets.clear();
        for t in self.timers.drain(..) {
            ctx.cancel_future(t);
        }
        info!(self.log, "health checks stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gogate_config::CheckType;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// Collects the reports it receives, with their arrival time.
    struct Sink(Arc<Mutex<Vec<(Instant, ReportProbe)>>>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<ReportProbe> for Sink {
        type Result = ();
        fn handle(&mut self, msg: ReportProbe, _: &mut Context<Self>) {
            self.0
                .lock()
                .expect("sink lock")
                .push((Instant::now(), msg));
        }
    }

    type Reports = Arc<Mutex<Vec<(Instant, ReportProbe)>>>;

    fn target(
        addr: &str,
        check: CheckType,
        interval_ms: u64,
        timeout_ms: u64,
    ) -> (HealthTarget, Reports) {
        let reports: Reports = Arc::default();
        let sink = Sink(Arc::clone(&reports)).start();
        let t = HealthTarget {
            id: format!("default/{addr}"),
            spec: ProbeSpec {
                addr: addr.into(),
                host: addr.into(),
                check,
                http_path: "/".into(),
                timeout: Duration::from_millis(timeout_ms),
            },
            interval: Duration::from_millis(interval_ms),
            thresholds: Thresholds {
                unhealthy: 3,
                healthy: 2,
            },
            report_to: sink.recipient(),
        };
        (t, reports)
    }

    fn log() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    /// Accepts connections and never answers (an HTTP probe against it times out).
    async fn silent_listener() -> (String, tokio::net::TcpListener) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        (l.local_addr().expect("addr").to_string(), l)
    }

    #[actix_rt::test]
    async fn slow_backend_never_delays_other_probes() {
        let (slow_addr, _slow) = silent_listener().await;
        let (fast_addr, _fast) = silent_listener().await;
        // The slow target's HTTP probe hangs for its whole 800 ms timeout; the fast target's
        // TCP probe completes at once and must keep its 50 ms rhythm meanwhile.
        let (slow, slow_reports) = target(&slow_addr, CheckType::Http, 800, 800);
        let (fast, fast_reports) = target(&fast_addr, CheckType::Tcp, 50, 50);
        let started = Instant::now();
        let _health = HealthActor::new(vec![slow, fast], &log()).start();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fast_n = fast_reports.lock().expect("lock").len();
        assert!(fast_n >= 5, "only {fast_n} fast probes in 500 ms");
        assert!(fast_reports
            .lock()
            .expect("lock")
            .iter()
            .all(|(_, r)| r.result.is_ok()));
        assert!(
            slow_reports.lock().expect("lock").is_empty(),
            "slow probe still pending"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let slow = slow_reports.lock().expect("lock");
        let (at, first) = slow.first().expect("slow probe reported after its timeout");
        assert!(
            first
                .result
                .as_ref()
                .is_err_and(|e| e.contains("timed out")),
            "{first:?}"
        );
        assert!(at.duration_since(started) >= Duration::from_millis(700));
    }

    #[actix_rt::test]
    async fn a_timeout_longer_than_the_interval_runs_one_probe_at_a_time() {
        let (addr, _silent) = silent_listener().await;
        // Every HTTP probe hangs for its 300 ms timeout; the interval is 100 ms.
        let (t, reports) = target(&addr, CheckType::Http, 100, 300);
        let started = Instant::now();
        let _health = HealthActor::new(vec![t], &log()).start();
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let got = reports.lock().expect("lock");
        let times: Vec<Duration> = got
            .iter()
            .map(|(at, _)| at.duration_since(started))
            .collect();
        // Back to back: a report about every 300 ms, never two probes at once (that would give
        // reports 100 ms apart, or ten in the second).
        assert!((2..=4).contains(&times.len()), "{times:?}");
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(250), "{times:?}");
        }
        assert!(got
            .iter()
            .all(|(_, r)| r.result.as_ref().is_err_and(|e| e.contains("timed out"))));
    }

    #[actix_rt::test]
    async fn reports_carry_the_targets_thresholds_and_errors() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let (t, reports) = target(&dead, CheckType::Tcp, 50, 50);
        let _health = HealthActor::new(vec![t], &log()).start();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let got = reports.lock().expect("lock");
        assert!(
            got.len() >= 3,
            "first probe at once, then every 50 ms: {}",
            got.len()
        );
        for (_, r) in got.iter() {
            assert_eq!(
                r.thresholds,
                Thresholds {
                    unhealthy: 3,
                    healthy: 2
                }
            );
            assert!(r
                .result
                .as_ref()
                .is_err_and(|e| e.starts_with("connect failed")));
        }
    }

    #[actix_rt::test]
    async fn set_targets_replaces_the_schedule() {
        let (a_addr, _a) = silent_listener().await;
        let (b_addr, _b) = silent_listener().await;
        let (a, a_reports) = target(&a_addr, CheckType::Tcp, 30, 30);
        let (b, b_reports) = target(&b_addr, CheckType::Tcp, 30, 30);
        let health = HealthActor::new(vec![a], &log()).start();
        tokio::time::sleep(Duration::from_millis(100)).await;
        health
            .send(SetTargets(vec![b]))
            .await
            .expect("health actor alive");
        let a_then = a_reports.lock().expect("lock").len();
        assert!(a_then >= 2, "{a_then}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The probe of `a` in flight when its loop was cancelled never reports.
        assert!(a_reports.lock().expect("lock").len() <= a_then + 1);
        assert!(b_reports.lock().expect("lock").len() >= 3);
    }

    #[actix_rt::test]
    async fn stop_probing_ends_the_schedule_for_good() {
        let (a_addr, _a) = silent_listener().await;
        let (a, reports) = target(&a_addr, CheckType::Tcp, 30, 30);
        let health = HealthActor::new(vec![a.clone()], &log()).start();
        tokio::time::sleep(Duration::from_millis(100)).await;
        health.send(StopProbing).await.expect("health actor alive");
        // A reload racing the shutdown does not restart the probes.
        health
            .send(SetTargets(vec![a]))
            .await
            .expect("health actor alive");
        let then = reports.lock().expect("lock").len();
        assert!(then >= 2, "{then}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        // At most one probe was still in flight when the timers were cancelled.
        assert!(reports.lock().expect("lock").len() <= then + 1);
    }
}
