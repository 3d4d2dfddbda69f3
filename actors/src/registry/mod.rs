//! The TTL service registry (DESIGN B6): services register through the admin API, keep alive
//! with heartbeats and expire `ttl` after the last one. `store` is the pure map with injected
//! time, `spec` validates registration bodies, `actor` is the thin shell that runs the cleanup
//! timer, logs, updates `gogate_registry_services` and tells a [`RegistrySink`] what changed.

pub mod actor;
pub mod events;
pub mod shared;
pub mod spec;
pub mod store;

pub use actor::{
    Deregister, GetService, GetServices, Heartbeat, Register, RegistryActor, RegistryError,
};
pub use events::{RegistryRemove, RegistryUpsert};
pub use spec::ServiceSpec;
pub use store::{Registration, Service, ServiceStore};

use actix::dev::ToEnvelope;
use actix::prelude::*;

/// Where registry events go (the config actor, which owns backends). The registry sends one
/// event at a time and waits for the receiver to take it (so the receiver's bounded mailbox
/// never overflows); changes made meanwhile wait in the registry's outbox, one per service id
/// (see `RegistryActor`), so that queue is bounded by the number of services.
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

    /// Delivers one change (`None` = the service left); resolves once the receiver took it
    /// (or is gone).
    pub(crate) fn deliver(
        &self,
        id: String,
        change: Option<RegistryUpsert>,
    ) -> futures_util::future::LocalBoxFuture<'static, ()> {
        match change {
            Some(up) => {
                let sent = self.upsert.send(up);
                Box::pin(async move {
                    let _ = sent.await;
                })
            }
            None => {
                let sent = self.remove.send(RegistryRemove { id });
                Box::pin(async move {
                    let _ = sent.await;
                })
            }
        }
    }
}

/// The upsert event for a service.
pub(crate) fn upsert_of(s: &Service) -> RegistryUpsert {
    RegistryUpsert {
        id: s.id.clone(),
        name: s.name.clone(),
        addr: s.address.clone(),
        weight: s.weight,
    }
}
