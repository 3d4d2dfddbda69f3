//! gogate: an L4/L7 proxy and API gateway on actix actors. The binary's library half: CLI,
//! wiring, the L7 data plane (`proxy`), the admin API and the demo backends. Integration tests
//! start a real [`gateway::Gateway`] through this crate.

pub mod admin;
pub mod cli;
pub mod demo;
pub mod explain;
#[cfg(feature = "fault-injection")]
pub mod fault;
/// The upstream parsers, for the fuzz targets in `fuzz/` (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub use proxy::upstream::fuzzing;
pub mod gateway;
pub mod listeners;
pub mod proxy;
pub mod reload;
