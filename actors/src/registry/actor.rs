//! `RegistryActor`: the single writer of the service registry. A thin shell around
//! [`ServiceStore`]: it answers the admin API's messages, sweeps expired services every
//! `cleanupInterval`, logs each change, keeps `gogate_registry_services` current and reports
//! upserts/removals to its [`RegistrySink`]. Between sweeps a message first expires the
//! service it names if that one is due (O(1); lists sweep everything), so nothing past its
//! deadline is served or revived by a late heartbeat.

use super::spec::ServiceSpec;
use super::store::{Full, Registration, Service, ServiceStore};
use super::RegistrySink;
use actix::prelude::*;
use gogate_config::RegistryConfig;
use prometheus::IntGauge;
use slog::{info, warn, Logger};
use std::time::{Duration, Instant, SystemTime};

pub struct RegistryActor {
    store: ServiceStore,
    cleanup_interval: Duration,
    /// `None` until the config actor accepts registry events (the registry still serves the
    /// admin API).
    sink: Option<RegistrySink>,
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
            gauge,
            log: log.new(slog::o!("component" => "registry")),
        }
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

    fn expired(&self, s: &Service) {
        warn!(self.log, "service expired"; "id" => &s.id, "name" => &s.name,
              "address" => &s.address, "ttl_ms" => s.ttl.as_millis() as u64);
        if let Some(sink) = &self.sink {
            sink.remove(&s.id);
        }
    }

    fn publish_size(&self) {
        self.gauge.set(self.store.len() as i64);
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.cleanup_interval, |act, _| act.sweep());
    }
}

/// Restarted in place by its supervisor: the store survives, the timer is re-armed.
impl Supervised for RegistryActor {}

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

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        // An expired id registers anew (201); a full registry first drops what is due.
        if let Some(id) = &msg.0.id {
            self.sweep_id(id);
        }
        if self.store.is_full() {
            self.sweep();
        }
        let r = self
            .store
            .register(msg.0, Instant::now(), SystemTime::now())
            .map_err(|Full { max }| {
                warn!(self.log, "service registration refused: registry full"; "max_services" => max);
                RegistryFull { max }
            })?;
        let s = r.service();
        info!(self.log, "service registered"; "id" => &s.id, "name" => &s.name,
              "address" => &s.address, "weight" => s.weight, "ttl_ms" => s.ttl.as_millis() as u64,
              "update" => matches!(r, Registration::Updated(_)));
        if let Some(sink) = &self.sink {
            sink.upsert(s);
        }
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

    fn handle(&mut self, msg: Heartbeat, _: &mut Context<Self>) -> bool {
        self.sweep_id(&msg.0);
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

    fn handle(&mut self, msg: Deregister, _: &mut Context<Self>) -> bool {
        self.sweep_id(&msg.0);
        let Some(s) = self.store.deregister(&msg.0) else {
            return false;
        };
        info!(self.log, "service deregistered"; "id" => &s.id, "name" => &s.name,
              "address" => &s.address);
        if let Some(sink) = &self.sink {
            sink.remove(&s.id);
        }
        self.publish_size();
        true
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

    fn handle(&mut self, msg: GetServices, _: &mut Context<Self>) -> Self::Result {
        self.sweep();
        MessageResult(self.store.list(msg.name.as_deref(), msg.tag.as_deref()))
    }
}

/// Query: one service.
#[derive(Message)]
#[rtype(result = "Option<Service>")]
pub struct GetService(pub String);

impl Handler<GetService> for RegistryActor {
    type Result = Option<Service>;

    fn handle(&mut self, msg: GetService, _: &mut Context<Self>) -> Option<Service> {
        self.sweep_id(&msg.0);
        self.store.get(&msg.0).cloned()
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
