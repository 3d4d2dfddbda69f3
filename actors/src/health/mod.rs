//! Active health checking. The `HealthActor` (control plane) probes backends on a timer and
//! reports each result to the backend's `BackendActor`, which applies the thresholds with a
//! pure [`tracker::HealthTracker`] and publishes the verdict in `BackendState` for the data
//! plane. Split this way, probing (I/O, timers) and deciding (pure, unit-tested) stay apart.

pub mod actor;
pub mod probe;
pub mod targets;
pub mod tracker;

pub use actor::{HealthActor, HealthTarget, SetTargets, StopProbing};
pub use targets::health_targets;
pub use tracker::{HealthTracker, Thresholds, Transition};
