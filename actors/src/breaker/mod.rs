//! Per-backend circuit breakers (DESIGN A2, B10). Control plane: the pure state machine
//! (`machine`) and the `BreakerActor` that owns its timing and publishes the position.
//! Data plane: `link`, which counts outcomes in the backend's atomics and tells the actor only
//! about edges, through the address published in the upstream's snapshot.

pub mod actor;
pub mod link;
pub mod machine;

pub use actor::{BreakerActor, ProbeCompleted, ThresholdCrossed};
pub use link::BreakerLink;
pub use machine::{Breaker, BreakerSettings, Transition};
