//! What the registry tells the rest of the gateway: a service's backend appeared or changed
//! (`RegistryUpsert`), or it left (`RegistryRemove`). The config actor turns these into registry
//! backends of the upstream named by the service's `name` (or the default upstream).
//! Provisional home: these shapes are shared with the hot-reload work and may move.

use actix::prelude::*;

/// Event: a registered service is new or changed; its backend should exist with these values.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct RegistryUpsert {
    pub id: String,
    pub name: String,
    pub addr: String,
    pub weight: u32,
}

/// Event: a service was deregistered or expired; its registry backend should go.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct RegistryRemove {
    pub id: String,
}
