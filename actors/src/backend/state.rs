//! The runtime state of one backend, shared between its `BackendActor` (the single writer of
//! the lifecycle flags: health, drain, breaker) and the data plane (which only bumps counters).
//! Everything is an atomic so the request path never takes a lock or asks an actor.

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
    pub addr: String,
    pub weight: u32,
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
    probe: Mutex<ProbeRecord>,
}

impl BackendState {
    pub fn new(upstream: &str, addr: &str, weight: u32, source: Source) -> Arc<Self> {
        Arc::new(Self {
            id: format!("{upstream}/{addr}"),
            upstream: upstream.to_string(),
            addr: addr.to_string(),
            weight,
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
            probe: Mutex::new(ProbeRecord::default()),
        })
    }

    /// May new requests or connections go here?
    #[inline]
    pub fn eligible(&self) -> bool {
        self.weight > 0
            && self.healthy.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && self.breaker.load(Ordering::Relaxed) != BreakerPosition::Open as u8
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
    pub fn probe_record(&self) -> ProbeRecord {
        self.probe.lock().map(|p| p.clone()).unwrap_or_default()
    }

    // --- writes by the BackendActor (control plane) ---

    pub(crate) fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::Relaxed);
    }
    pub(crate) fn set_draining(&self, v: bool) {
        self.draining.store(v, Ordering::Relaxed);
    }
    #[allow(dead_code)]
    pub(crate) fn set_breaker(&self, v: BreakerPosition) {
        self.breaker.store(v as u8, Ordering::Relaxed);
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
        ActiveGuard(Arc::clone(self))
    }

    /// Records an outcome; returns the consecutive-failure count after a failure (the breaker
    /// reacts only when it lands exactly on its threshold).
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

/// Decrements the backend's active count when dropped.
#[derive(Debug)]
pub struct ActiveGuard(Arc<BackendState>);

impl ActiveGuard {
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
