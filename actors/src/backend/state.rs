//! The runtime state of one backend, shared between its `BackendActor` (the single writer of
//! the lifecycle flags: health, drain), the `BreakerActor` (the single writer of the breaker
//! position) and the data plane (which only bumps counters and takes half-open probe permits).
//! Everything is an atomic so the request path never takes a lock or asks an actor.

use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a backend came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Static,
    Registry,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Registry => "registry",
        }
    }
}

/// Circuit-breaker position as published for the data plane (0 closed, 1 open, 2 half-open,
/// the values of `gogate_circuit_breaker_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerPosition {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerPosition {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerPosition::Open,
            2 => BreakerPosition::HalfOpen,
            _ => BreakerPosition::Closed,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerPosition::Closed => "closed",
            BreakerPosition::Open => "open",
            BreakerPosition::HalfOpen => "half_open",
        }
    }
}

/// Result of the last health probe, for `/backends` (control plane only, hence the mutex).
#[derive(Debug, Clone, Default)]
pub struct ProbeRecord {
    pub last_check_unix_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// One backend of one upstream.
#[derive(Debug)]
pub struct BackendState {
    /// `upstream/addr`, unique across the gateway.
    pub id: String,
    pub upstream: String,
    /// `ip:port` (or a registered `host:port`): what the data plane connects to.
    pub addr: String,
    /// The configured `host:port` this address was resolved from (`None` for IP literals and
    /// registrations). Written only by the config actor: a reload may move a kept address from
    /// one name (or an IP literal) to another. The `Host` of `preserveHost: false` and of HTTP
    /// probes.
    hostname: ArcSwapOption<String>,
    /// Written only by the config actor (a reload that changes the weight keeps the state).
    weight: AtomicU32,
    pub source: Source,
    healthy: AtomicBool,
    draining: AtomicBool,
    breaker: AtomicU8,
    /// Requests (L7) plus sessions (L4) in flight.
    active: AtomicI64,
    requests_total: AtomicU64,
    failures_total: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Half-open probe requests in flight (each held by an [`ActiveGuard`]).
    breaker_probes: AtomicU32,
    /// Set while a "threshold crossed" event is on its way to the `BreakerActor`, so at most one
    /// is queued per backend, and cleared when it is handled or could not be queued (then the
    /// next failure reports again: a full mailbox cannot lose a trip).
    trip_pending: AtomicBool,
    probe: Mutex<ProbeRecord>,
}

impl BackendState {
    pub fn new(upstream: &str, addr: &str, weight: u32, source: Source) -> Arc<Self> {
        Arc::new(Self {
            id: format!("{upstream}/{addr}"),
            upstream: upstream.to_string(),
            addr: addr.to_string(),
            hostname: ArcSwapOption::empty(),
            weight: AtomicU32::new(weight),
            source,
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            breaker: AtomicU8::new(BreakerPosition::Closed as u8),
            active: AtomicI64::new(0),
            requests_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            breaker_probes: AtomicU32::new(0),
            trip_pending: AtomicBool::new(false),
            probe: Mutex::new(ProbeRecord::default()),
        })
    }

    /// May new requests or connections go here?
    #[inline]
    pub fn eligible(&self) -> bool {
        self.weight() > 0
            && self.healthy.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && self.breaker.load(Ordering::Relaxed) != BreakerPosition::Open as u8
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
    pub fn hostname(&self) -> Option<Arc<String>> {
        self.hostname.load_full()
    }
    /// Calls `f` with the `Host` this backend answers to: its configured host name, else its
    /// address (no allocation: the request path builds its header from it).
    pub fn with_host<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let name = self.hostname.load();
        f(name.as_deref().map_or(self.addr.as_str(), String::as_str))
    }
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
    pub fn breaker(&self) -> BreakerPosition {
        BreakerPosition::from_u8(self.breaker.load(Ordering::Relaxed))
    }
    pub fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }
    pub fn failures_total(&self) -> u64 {
        self.failures_total.load(Ordering::Relaxed)
    }
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }
    /// Half-open probe requests in flight.
    pub fn breaker_probes(&self) -> u32 {
        self.breaker_probes.load(Ordering::Relaxed)
    }
    /// Healthy, not draining and weighted, whatever its breaker says.
    pub fn available(&self) -> bool {
        self.weight() > 0 && self.healthy() && !self.draining()
    }
    pub fn probe_record(&self) -> ProbeRecord {
        self.probe.lock().map(|p| p.clone()).unwrap_or_default()
    }

    // --- writes by the config actor (control plane) ---

    pub(crate) fn set_weight(&self, w: u32) {
        self.weight.store(w, Ordering::Relaxed);
    }
    pub(crate) fn set_hostname(&self, name: Option<String>) {
        self.hostname.store(name.map(Arc::new));
    }

    // --- writes by the BackendActor (control plane) ---

    pub(crate) fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::Relaxed);
    }
    pub(crate) fn set_draining(&self, v: bool) {
        self.draining.store(v, Ordering::Relaxed);
    }
    // --- writes by the BreakerActor (control plane) ---

    pub(crate) fn set_breaker(&self, v: BreakerPosition) {
        self.breaker.store(v as u8, Ordering::Relaxed);
    }
    /// Restarts the failure count on a breaker transition, so the next trip again needs
    /// `failureThreshold` fresh failures.
    pub(crate) fn reset_failures(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }
    /// The breaker actor took the pending trip report (or it was never delivered): the next
    /// failure past the threshold may report again.
    pub(crate) fn release_trip_report(&self) {
        self.trip_pending.store(false, Ordering::Release);
    }
    pub(crate) fn record_probe(&self, error: Option<String>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .ok();
        if let Ok(mut p) = self.probe.lock() {
            p.last_check_unix_ms = now;
            p.last_error = error;
        }
    }

    // --- writes by the data plane ---

    /// Marks one request or session in flight until the guard drops.
    #[inline]
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            backend: Arc::clone(self),
            probe: false,
        }
    }

    /// Does a half-open breaker have a probe permit left (`limit` = `successThreshold`)?
    #[inline]
    pub fn probe_room(&self, limit: u32) -> bool {
        self.breaker_probes.load(Ordering::Relaxed) < limit
    }

    /// Like [`begin`](Self::begin) for a half-open backend: takes one of `limit` probe permits
    /// (released when the guard drops), or `None` when all are in use.
    #[inline]
    pub fn begin_probe(self: &Arc<Self>, limit: u32) -> Option<ActiveGuard> {
        self.breaker_probes
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        let mut guard = self.begin();
        guard.probe = true;
        Some(guard)
    }

    /// Records an outcome; returns the consecutive-failure count after a failure (the breaker
    /// link reports a trip once it reaches the threshold).
    #[inline]
    pub fn record_outcome(&self, success: bool) -> u32 {
        if success {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            0
        } else {
            self.failures_total.fetch_add(1, Ordering::Relaxed);
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
        }
    }

    /// Claims the right to send the one pending "threshold crossed" event; false while another
    /// is already on its way.
    #[inline]
    pub(crate) fn claim_trip_report(&self) -> bool {
        !self.trip_pending.swap(true, Ordering::AcqRel)
    }

    #[inline]
    pub fn add_bytes(&self, sent: u64, received: u64) {
        if sent > 0 {
            self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        }
        if received > 0 {
            self.bytes_received.fetch_add(received, Ordering::Relaxed);
        }
    }
}

/// Decrements the backend's active count (and frees its half-open probe permit, if it holds
/// one) when dropped.
#[derive(Debug)]
pub struct ActiveGuard {
    backend: Arc<BackendState>,
    probe: bool,
}

impl ActiveGuard {
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.backend
    }
    /// Is this request a half-open breaker probe (its outcome decides the breaker)?
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            self.backend.breaker_probes.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_permits_are_limited_and_freed_with_the_guard() {
        let b = BackendState::new("default", "127.0.0.1:1", 1, Source::Static);
        let first = b.begin_probe(2).expect("first permit");
        let second = b.begin_probe(2).expect("second permit");
        assert!(first.is_probe() && second.is_probe());
        assert!(!b.probe_room(2));
        assert!(b.begin_probe(2).is_none(), "a third probe must wait");
        assert_eq!(b.active(), 2);
        drop(first);
        assert!(b.probe_room(2));
        let third = b.begin_probe(2).expect("permit freed by the first guard");
        drop((second, third));
        assert_eq!((b.breaker_probes(), b.active()), (0, 0));
        assert!(!b.begin().is_probe());
    }

    #[test]
    fn consecutive_failures_count_until_a_success() {
        let b = BackendState::new("default", "127.0.0.1:1", 1, Source::Static);
        assert_eq!(b.record_outcome(false), 1);
        assert_eq!(b.record_outcome(false), 2);
        assert_eq!(b.record_outcome(true), 0);
        assert_eq!(b.record_outcome(false), 1);
        b.reset_failures();
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.failures_total(), 3);
    }
}
