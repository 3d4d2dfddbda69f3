//! What the registry tells the rest of the gateway: a service's backend appeared or changed
//! (`RegistryUpsert`), or it left (`RegistryRemove`). The config actor owns these messages (it
//! turns them into registry backends of the upstream named by the service's `name`, or the
//! default upstream); they are re-exported here for the registry's side.

pub use crate::config_actor::{RegistryRemove, RegistryUpsert};
