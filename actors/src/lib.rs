//! gogate-actors: the control plane of gogate (supervised actors that own state) and the
//! snapshots they publish for the data plane. The L4 data path lives in `tcp::session`; the L7
//! data path is in the binary crate. Pure logic (`balance`, `routing`) has no actix in it.

pub mod auth;
pub mod backend;
pub mod balance;
pub mod breaker;
pub mod build;
pub mod cluster;
pub mod config_actor;
pub mod cors;
pub mod dns;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod panics;
pub mod path;
pub mod ratelimit;
pub mod registry;
pub mod reload;
pub mod routing;
pub mod snapshot;
pub mod split;
pub mod stats;
pub mod supervise;
pub mod tcp;
pub mod tls;

pub use backend::state::{ActiveGuard, BackendState, BreakerPosition, Source};
pub use config_actor::ConfigActor;
pub use dns::{Resolver, SystemResolver};
pub use health::HealthActor;
pub use metrics::{Metrics, MetricsActor};
pub use registry::{RegistryActor, RegistrySink};
pub use snapshot::{GatewaySnapshot, RouteSnapshot, SnapshotCell, UpstreamSnapshot};
pub use stats::Stats;
pub use tcp::listener::ListenerActor;
