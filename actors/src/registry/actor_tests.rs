//! Actor tests inside an actix system: events reach the sink, the gauge follows the size.

use super::*;
use crate::registry::{RegistryRemove, RegistryUpsert};
use gogate_config::Dur;
use std::sync::{Arc, Mutex};

/// `Upsert(id, name, addr, weight)`.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Upsert(String, String, String, u32),
    Remove(String),
}

/// Records every registry event it receives.
#[derive(Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<RegistryUpsert> for Recorder {
    type Result = ();
    fn handle(&mut self, m: RegistryUpsert, _: &mut Context<Self>) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Upsert(m.id, m.name, m.addr, m.weight));
    }
}

impl Handler<RegistryRemove> for Recorder {
    type Result = ();
    fn handle(&mut self, m: RegistryRemove, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(Event::Remove(m.id));
    }
}

fn start(ttl: Dur, cleanup: Dur) -> (Addr<RegistryActor>, Arc<Mutex<Vec<Event>>>, IntGauge) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let rec = Recorder(Arc::clone(&events)).start();
    let cfg = RegistryConfig {
        enabled: true,
        default_ttl: ttl,
        cleanup_interval: cleanup,
        max_services: 10,
        listen: None,
    };
    let gauge = IntGauge::new("test_registry_services", "test").unwrap();
    let log = Logger::root(slog::Discard, slog::o!());
    let actor = RegistryActor::new(&cfg, Some(RegistrySink::to(&rec)), gauge.clone(), &log);
    (actor.start(), events, gauge)
}

fn spec(id: &str) -> ServiceSpec {
    let mut s = ServiceSpec::new("api", "127.0.0.1:9001");
    s.id = Some(id.into());
    s.weight = 3;
    s
}

async fn settle() {
    // Let do_send'ed events reach the recorder.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[actix_rt::test]
async fn registration_emits_upsert_and_deregistration_emits_remove() {
    let (reg, events, gauge) = start(Dur::secs(30), Dur::secs(5));
    let r = reg.send(Register(spec("a"))).await.unwrap().unwrap();
    assert!(matches!(r, Registration::Created(_)));
    assert_eq!(gauge.get(), 1);
    assert!(reg.send(Deregister("a".into())).await.unwrap().unwrap());
    assert!(!reg.send(Deregister("a".into())).await.unwrap().unwrap());
    assert_eq!(gauge.get(), 0);
    settle().await;
    let upsert = Event::Upsert("a".into(), "api".into(), "127.0.0.1:9001".into(), 3);
    assert_eq!(
        *events.lock().unwrap(),
        vec![upsert, Event::Remove("a".into())]
    );
}

#[actix_rt::test]
async fn expiry_emits_remove_from_the_cleanup_timer() {
    let (reg, events, gauge) = start(Dur::millis(100), Dur::millis(20));
    reg.send(Register(spec("a"))).await.unwrap().unwrap();
    // No message reaches the actor meanwhile: only the timer can expire it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(gauge.get(), 0);
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&Event::Remove("a".into()))
    );
    assert!(reg.send(GetService("a".into())).await.unwrap().is_none());
}

#[actix_rt::test]
async fn heartbeats_keep_a_service_alive() {
    let (reg, events, _) = start(Dur::millis(150), Dur::millis(20));
    reg.send(Register(spec("a"))).await.unwrap().unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(reg.send(Heartbeat("a".into())).await.unwrap().unwrap());
    }
    assert_eq!(reg.send(GetServices::default()).await.unwrap().len(), 1);
    settle().await;
    assert!(!events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Remove(_))));
}

#[actix_rt::test]
async fn a_late_heartbeat_between_sweeps_expires_instead_of_reviving() {
    // Sweeps are 5 s apart; the service is due after 100 ms.
    let (reg, events, gauge) = start(Dur::millis(100), Dur::secs(5));
    reg.send(Register(spec("a"))).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!reg.send(Heartbeat("a".into())).await.unwrap().unwrap());
    assert_eq!(gauge.get(), 0);
    settle().await;
    assert_eq!(
        events.lock().unwrap().last(),
        Some(&Event::Remove("a".into()))
    );
    let again = reg.send(Register(spec("a"))).await.unwrap().unwrap();
    assert!(
        matches!(again, Registration::Created(_)),
        "an expired id registers anew"
    );
}

#[actix_rt::test]
async fn a_burst_of_changes_is_delivered_one_at_a_time_latest_per_id() {
    let (reg, events, _) = start(Dur::secs(30), Dur::secs(5));
    // 200 updates of two ids, sent without waiting for each other.
    let sends = (1..=100u32).flat_map(|w| {
        ["a", "b"].map(|id| {
            let mut s = spec(id);
            s.weight = w;
            reg.send(Register(s))
        })
    });
    for r in futures_util::future::join_all(sends).await {
        r.expect("actor alive").expect("registered");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let last = |id: &str| {
            events.lock().unwrap().iter().rev().find_map(|e| match e {
                Event::Upsert(i, _, _, w) if i == id => Some(*w),
                _ => None,
            })
        };
        if last("a") == Some(100) && last("b") == Some(100) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "latest state never arrived"
        );
        settle().await;
    }
    let n = events.lock().unwrap().len();
    assert!(
        n < 200,
        "undelivered changes of one id coalesce: {n} events"
    );
}
