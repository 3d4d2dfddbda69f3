//! One backend: its shared runtime state (`state`) and the actor that owns its lifecycle.

pub mod actor;
pub mod state;
