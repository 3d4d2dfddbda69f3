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
    /// `cluster.registry` with a store: the store holds the registry, this actor mirrors it.
    pub(super) shared: Option<super::shared::Shared>,
    pub(super) log: Logger,
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
            shared: None,
            log: log.new(slog::o!("component" => "registry")),
        }
    }

    /// Keeps the registry in the cluster store (`cluster.registry`), mirrored here.
    pub fn with_store(mut self, settings: super::shared::SharedSettings) -> Self {
        self.shared = Some(super::shared::Shared::new(settings));
        self
    }

    pub(super) fn store_mut(&mut self) -> &mut ServiceStore {
        &mut self.store
    }

    /// Queues a change for the sink (replacing an undelivered one of the same id).
    pub(super) fn queue(&mut self, id: &str, change: Option<RegistryUpsert>) {
        if self.sink.is_some() {
            self.outbox.insert(id.to_string(), change);
        }
    }

    /// Delivers queued changes one at a time, each after the previous was taken.
    pub(super) fn deliver(&mut self, ctx: &mut Context<Self>) {
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

    /// Removes every service past its deadline, logging and reporting each. A mirror of the
    /// cluster store does not expire anything while the store is unreachable: it keeps
    /// serving its last known set until the store answers again.
    fn sweep(&mut self) {
        if self.shared.as_ref().is_some_and(|s| !s.up) {
            return;
        }
        for s in self.store.expire(Instant::now()) {
            self.expired(&s);
        }
        self.publish_size();
    }

    /// Expires the one service `id` if it is due.
    fn sweep_id(&mut self, id: &str) {
        if self.shared.as_ref().is_some_and(|s| !s.up) {
            return;
        }
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

    pub(super) fn publish_size(&self) {
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
        if self.shared.is_some() {
            self.start_shared(ctx);
        }
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
#[rtype(result = "Result<Registration, RegistryError>")]
pub struct Register(pub ServiceSpec);

/// Why a registry command was not carried out (the admin API answers 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// `maxServices` is reached.
    Full { max: usize },
    /// The cluster store holding the registry did not answer (named, without its password).
    Store(String),
}

impl Handler<Register> for RegistryActor {
    type Result = ActorResponse<Self, Result<Registration, RegistryError>>;

    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        if self.shared.is_some() {
            return self.register_shared(msg.0);
        }
        let r = self.register(msg.0);
        self.deliver(ctx);
        ActorResponse::reply(r)
    }
}

impl RegistryActor {
    fn register(&mut self, spec: ServiceSpec) -> Result<Registration, RegistryError> {
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
                RegistryError::Full { max }
            })?;
        self.registered(&r);
        Ok(r)
    }

    /// Logs a registration and reports it to the sink.
    pub(super) fn registered(&mut self, r: &Registration) {
        let s = r.service();
        info!(self.log, "service registered"; "id" => &s.id, "name" => &s.name,
              "address" => &s.address, "weight" => s.weight, "ttl_ms" => s.ttl.as_millis() as u64,
              "update" => matches!(r, Registration::Updated(_)));
        let id = s.id.clone();
        self.queue(&id, Some(upsert_of(s)));
        self.publish_size();
    }
}

/// Command: keep a service alive; `false` if unknown (or already expired).
#[derive(Message)]
#[rtype(result = "Result<bool, RegistryError>")]
pub struct Heartbeat(pub String);

impl Handler<Heartbeat> for RegistryActor {
    type Result = ActorResponse<Self, Result<bool, RegistryError>>;

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) -> Self::Result {
        if self.shared.is_some() {
            return self.heartbeat_shared(msg.0);
        }
        self.sweep_id(&msg.0);
        self.deliver(ctx);
        let known = self
            .store
            .heartbeat(&msg.0, Instant::now(), SystemTime::now());
        ActorResponse::reply(Ok(known))
    }
}

/// Command: remove a service; `false` if unknown.
#[derive(Message)]
#[rtype(result = "Result<bool, RegistryError>")]
pub struct Deregister(pub String);

impl Handler<Deregister> for RegistryActor {
    type Result = ActorResponse<Self, Result<bool, RegistryError>>;

    fn handle(&mut self, msg: Deregister, ctx: &mut Context<Self>) -> Self::Result {
        if self.shared.is_some() {
            return self.deregister_shared(msg.0);
        }
        self.sweep_id(&msg.0);
        let removed = self.remove(&msg.0, "service deregistered");
        self.deliver(ctx);
        ActorResponse::reply(Ok(removed))
    }
}

impl RegistryActor {
    /// Removes a service (logged with `why`) and reports it; `false` if it was not held.
    pub(super) fn remove(&mut self, id: &str, why: &'static str) -> bool {
        let Some(s) = self.store.deregister(id) else {
            return false;
        };
        info!(self.log, "{}", why; "id" => &s.id, "name" => &s.name, "address" => &s.address);
        self.queue(&s.id, None);
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
