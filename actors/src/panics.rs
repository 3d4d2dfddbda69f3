//! Panic containment bookkeeping. gogate is built with `panic = "unwind"` so that a panic costs
//! only what it happened in: a request answers 500 (`src/proxy`), an L4 session closes, an
//! actor restarts from the state it last published (`supervise`). Each contained panic is
//! counted here, process-wide (a panic is an event of the process, whatever gateway instance
//! it hit), and exported as `gogate_panics_total{where}` by the metrics actor.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a panic was contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicSite {
    /// An L7 request handler or its response body.
    HttpRequest,
    /// An L4 session or an accept loop.
    TcpSession,
    /// An actor's handler, timer or future (the actor restarted).
    Actor,
}

impl PanicSite {
    pub const ALL: [PanicSite; 3] = [
        PanicSite::HttpRequest,
        PanicSite::TcpSession,
        PanicSite::Actor,
    ];

    /// The `where` label value.
    pub fn label(self) -> &'static str {
        match self {
            PanicSite::HttpRequest => "http_request",
            PanicSite::TcpSession => "tcp_session",
            PanicSite::Actor => "actor",
        }
    }
}

static COUNTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Counts one contained panic.
pub fn record(site: PanicSite) {
    COUNTS[site as usize].fetch_add(1, Ordering::Relaxed);
}

/// Panics contained at `site` since the process started.
pub fn count(site: PanicSite) -> u64 {
    COUNTS[site as usize].load(Ordering::Relaxed)
}

/// The panic message, when the payload is a string (as `panic!` makes it).
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_counts() {
        let before = count(PanicSite::TcpSession);
        record(PanicSite::TcpSession);
        assert_eq!(count(PanicSite::TcpSession), before + 1);
        let p = std::panic::catch_unwind(|| panic!("boom {}", 7)).expect_err("panicked");
        assert_eq!(message(p.as_ref()), "boom 7");
        let p = std::panic::catch_unwind(|| panic!("static")).expect_err("panicked");
        assert_eq!(message(p.as_ref()), "static");
    }
}
