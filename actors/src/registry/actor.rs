//! `RegistryActor`: the single writer of the service registry. A thin shell around
//! [`ServiceStore`]: it answers the admin API's messages, sweeps expired services every
//! `cleanupInterval`, logs each change, keeps `gogate_registry_services` current and reports
//! upserts/removals to its [`RegistrySink`]. Between sweeps a message first expires the
//! service it names if that one is due (O(1); lists sweep everything), so nothing past its
//! deadline is served or revived by a late heartbeat.

use super::spec::ServiceSpec;
use super::store::{Full, Registration, Service, ServiceStore};
use super::{upsert_of, RegistrySink, RegistryUpsert};
use actix::prelude::*;
use gogate_config::RegistryConfig;
use prometheus::IntGauge;
use slog::{info, warn, Logger};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

pub struct RegistryActor {
    store: ServiceStore,
    cleanup_interval: Duration,
    /// `None` until the config actor accepts registry events (the registry still serves the
    /// admin API).
    sink: Option<RegistrySink>,
    /// Changes not yet taken by the sink, latest per service id (`None` = removed): bounded
    /// by the number of services, however fast the admin API writes.
    outbox: BTreeMap<String, Option<RegistryUpsert>>,
    /// A delivery is on its way (one at a time).
    delivering: bool,
    gauge: IntGauge,
    log: Logger,
}

impl RegistryActor {
    pub fn new(
        cfg: &RegistryConfig,
        sink: Option<RegistrySink>,
        gauge: IntGauge,
        log: &Logger,
    ) -> Self {
        gauge.set(0);
        RegistryActor {
            store: ServiceStore::new(cfg.default_ttl.get(), cfg.max_services as usize),
            cleanup_interval: cfg.cleanup_interval.get(),
            sink,
            outbox: BTreeMap::new(),
            delivering: false,
            gauge,
            log: log.new(slog::o!("component" => "registry")),
        }
    }

    /// Queues a change for the sink (replacing an undelivered one of the same id).
    fn queue(&mut self, id: &str, change: Option<RegistryUpsert>) {
        if self.sink.is_some() {
            self.outbox.insert(id.to_string(), change);
        }
    }

    /// Delivers queued changes one at a time, each after the previous was taken.
    fn deliver(&mut self, ctx: &mut Context<Self>) {
        if self.delivering {
            return;
        }
        let (Some(sink), Some((id, change))) = (&self.sink, self.outbox.pop_first()) else {
            return;
        };
        self.delivering = true;
        let sent = sink.deliver(id, change);
        ctx.spawn(sent.into_actor(self).map(|(), act, ctx| {
            act.delivering = false;
            act.deliver(ctx);
        }));
    }

    /// Removes every service past its deadline, logging and reporting each.
    fn sweep(&mut self) {
        for s in self.store.expire(Instant::now()) {
            self.expired(&s);
        }
        self.publish_size();
    }

    /// Expires the one service `id` if it is due.
    fn sweep_id(&mut self, id: &str) {
        if let Some(s) = self.store.expire_id(id, Instant::now()) {
            self.expired(&s);
            self.publish_size();
        }
    }

    fn expired(&mut self, s: &Service) {
        warn!(self.log, "service expired"; "id" => &s.id, "name" => &s.name,
              "address" => &s.address, "ttl_ms" => s.ttl.as_millis() as u64);
        self.queue(&s.id, None);
    }

    fn publish_size(&self) {
        self.gauge.set(self.store.len() as i64);
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.cleanup_interval, |act, ctx| {
            act.sweep();
            act.deliver(ctx);
        });
        self.deliver(ctx);
    }
}

/// Restarted in place by its supervisor: the store and the outbox survive, the timer is
/// re-armed, and delivery resumes (the one in flight was cancelled with the restart, so the
/// receiver may see it twice: upserts and removals are idempotent there).
impl Supervised for RegistryActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.delivering = false;
    }
}

/// Command: register a service, or update the one with the spec's id.
#[derive(Message)]
#[rtype(result = "Result<Registration, RegistryFull>")]
pub struct Register(pub ServiceSpec);

/// `maxServices` is reached (the admin API answers 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryFull {
    pub max: usize,
}

impl Handler<Register> for RegistryActor {
    type Result = Result<Registration, RegistryFull>;

    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.register(msg.0);
        self.deliver(ctx);
        r
    }
}

impl RegistryActor {
    fn register(&mut self, spec: ServiceSpec) -> Result<Registration, RegistryFull> {
        // An expired id registers anew (201); a full registry first drops what is due.
        if let Some(id) = &spec.id {
            self.sweep_id(id);
        }
        if self.store.is_full() {
            self.sweep();
        }
        let r = self
            .store
            .register(spec, Instant::now(), SystemTime::now())
            .map_err(|Full { max }| {
                warn!(self.log, "service registration refused: registry full"; "max_services" => max);
                RegistryFull { max }
            })?;
        let s = r.service();
        info!(self.log, "service registered"; "id" => &s.id, "name" => &s.name,
              "address" => &s.address, "weight" => s.weight, "ttl_ms" => s.ttl.as_millis() as u64,
              "update" => matches!(r, Registration::Updated(_)));
        let id = s.id.clone();
        self.queue(&id, Some(upsert_of(s)));
        self.publish_size();
        Ok(r)
    }
}

/// Command: keep a service alive; `false` if unknown (or already expired).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Heartbeat(pub String);

impl Handler<Heartbeat> for RegistryActor {
    type Result = bool;

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) -> bool {
        self.sweep_id(&msg.0);
        self.deliver(ctx);
        self.store
            .heartbeat(&msg.0, Instant::now(), SystemTime::now())
    }
}

/// Command: remove a service; `false` if unknown.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Deregister(pub String);

impl Handler<Deregister> for RegistryActor {
    type Result = bool;

    fn handle(&mut self, msg: Deregister, ctx: &mut Context<Self>) -> bool {
        self.sweep_id(&msg.0);
        let removed = self.store.deregister(&msg.0);
        if let Some(s) = &removed {
            info!(self.log, "service deregistered"; "id" => &s.id, "name" => &s.name,
                  "address" => &s.address);
            self.queue(&s.id, None);
            self.publish_size();
        }
        self.deliver(ctx);
        removed.is_some()
    }
}

/// Query: the services matching the optional name and tag.
#[derive(Message, Default)]
#[rtype(result = "Vec<Service>")]
pub struct GetServices {
    pub name: Option<String>,
    pub tag: Option<String>,
}

impl Handler<GetServices> for RegistryActor {
    type Result = MessageResult<GetServices>;

    fn handle(&mut self, msg: GetServices, ctx: &mut Context<Self>) -> Self::Result {
        self.sweep();
        self.deliver(ctx);
        MessageResult(self.store.list(msg.name.as_deref(), msg.tag.as_deref()))
    }
}

/// Query: one service.
#[derive(Message)]
#[rtype(result = "Option<Service>")]
pub struct GetService(pub String);

impl Handler<GetService> for RegistryActor {
    type Result = Option<Service>;

    fn handle(&mut self, msg: GetService, ctx: &mut Context<Self>) -> Option<Service> {
        self.sweep_id(&msg.0);
        self.deliver(ctx);
        self.store.get(&msg.0).cloned()
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
