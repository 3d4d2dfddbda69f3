//! Hot reload: the pure diff (`diff`), the file watcher (`watch`), live listener moves
//! (`listeners`) and the config actor's reload pipeline (`apply`): read → parse → validate →
//! move changed listeners → diff → build the new snapshot → swap. Any error keeps the old
//! configuration serving.
//!
//! ```text
//!  POST /reload ─┐
//!  SIGHUP ───────┼─▶ Reload ─▶ read file ─▶ parse+validate ─┬─ error ─▶ keep old, record failure
//!  watcher ──────┘  (FileChanged: only if the bytes' hash    └─ ok ─▶ listeners changed? ─┐
//!                    changed)                                   ApplyListeners: bind new,  │
//!                                        bind error ◀─ keep old  start, drain old ◀───────┘
//!                                                     ok ─▶ diff backends ─▶ build ─▶ swap
//! ```

pub mod apply;
pub mod diff;
pub mod history;
pub mod listeners;
pub(crate) mod retire;
pub mod watch;

pub use apply::{Reload, ReloadError, ReloadOutcome};
pub use history::{LastReload, ReloadHistory};
pub use listeners::{ApplyListeners, SetListenerSink};
