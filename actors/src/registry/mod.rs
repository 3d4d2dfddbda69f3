//! The TTL service registry (DESIGN B6): services register through the admin API, keep alive
//! with heartbeats and expire `ttl` after the last one. `store` is the pure map with injected
//! time, `spec` validates registration bodies, `actor` is the thin shell that runs the cleanup
//! timer, logs, updates `gogate_registry_services` and tells a [`RegistrySink`] what changed.

pub mod actor;
pub mod events;
pub mod spec;
pub mod store;

pub use actor::{
    Deregister, GetService, GetServices, Heartbeat, Register, RegistryActor, RegistryFull,
};
pub use events::{RegistryRemove, RegistryUpsert};
pub use spec::ServiceSpec;
pub use store::{Registration, Service, ServiceStore};

use actix::dev::ToEnvelope;
use actix::prelude::*;

/// Where registry events go (the config actor, which owns backends). Sends are `do_send`: the
/// registry never waits on the receiver.
#[derive(Clone)]
pub struct RegistrySink {
    upsert: Recipient<RegistryUpsert>,
    remove: Recipient<RegistryRemove>,
}

impl RegistrySink {
    pub fn new(upsert: Recipient<RegistryUpsert>, remove: Recipient<RegistryRemove>) -> Self {
        RegistrySink { upsert, remove }
    }

    /// Both events to one actor.
    pub fn to<A>(addr: &Addr<A>) -> Self
    where
        A: Actor + Handler<RegistryUpsert> + Handler<RegistryRemove>,
        A::Context: ToEnvelope<A, RegistryUpsert> + ToEnvelope<A, RegistryRemove>,
    {
        RegistrySink::new(addr.clone().recipient(), addr.clone().recipient())
    }

    pub(crate) fn upsert(&self, s: &Service) {
        self.upsert.do_send(RegistryUpsert {
            id: s.id.clone(),
            name: s.name.clone(),
            addr: s.address.clone(),
            weight: s.weight,
        });
    }

    pub(crate) fn remove(&self, id: &str) {
        self.remove.do_send(RegistryRemove { id: id.to_string() });
    }
}
