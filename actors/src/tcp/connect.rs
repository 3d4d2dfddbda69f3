//! Connecting to a backend of an upstream with failover: pick an eligible backend, connect within
//! `timeouts.connect`, and on failure move to the next eligible one (up to `retry.attempts` more).
//! Shared by the L4 sessions and the L7 upgrade tunnels.

use crate::backend::state::ActiveGuard;
use crate::metrics::OutcomeCounters;
use crate::snapshot::UpstreamSnapshot;
use tokio::net::TcpStream;

/// Why no connection was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No backend was eligible (all unhealthy, draining or open).
    NoneEligible,
    /// The last backend tried refused or failed.
    Refused(String),
    /// The last backend tried did not answer within the connect timeout.
    TimedOut,
}

/// A connected backend: its index, the socket and its in-flight guard.
pub struct Connected {
    pub index: usize,
    pub stream: TcpStream,
    pub guard: ActiveGuard,
}

/// Connects to an eligible backend of `up`; each failed backend is recorded as a failure on the
/// backend and in `counters` (parallel to `up.backends`), and reported to `on_failure`.
pub async fn connect_eligible(
    up: &UpstreamSnapshot,
    counters: &[OutcomeCounters],
    mut on_failure: impl FnMut(usize, &ConnectFailure),
) -> Result<Connected, ConnectFailure> {
    let mut tried: Vec<usize> = Vec::new();
    let mut last = ConnectFailure::NoneEligible;
    for _ in 0..=up.retry_attempts {
        let Some((i, guard)) = up.acquire(&tried) else {
            break;
        };
        tried.push(i);
        let backend = &up.backends[i];
        let attempt = tokio::time::timeout(
            up.timeouts.connect.get(),
            TcpStream::connect(backend.addr.as_str()),
        );
        last = match attempt.await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(Connected {
                    index: i,
                    stream,
                    guard,
                });
            }
            Ok(Err(e)) => ConnectFailure::Refused(e.to_string()),
            Err(_) => ConnectFailure::TimedOut,
        };
        up.record_outcome(&guard, false);
        if let Some(c) = counters.get(i) {
            c.failure.inc();
        }
        on_failure(i, &last);
    }
    Err(last)
}
