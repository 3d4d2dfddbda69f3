//! Shared state for several gateway replicas (DESIGN B11 "Cluster"): a small Redis client of
//! gogate's own (`resp` the wire protocol, `conn` a pipelined connection), the global token
//! bucket (`ratelimit`) and the shared registry (`registry`). With no `cluster.store` none of
//! it runs and every replica keeps its state in process.

pub mod conn;
pub mod ratelimit;
pub mod resp;
