//! The circuit breaker of one backend as a pure state machine: events in, transitions out, time
//! injected by the caller. The `BreakerActor` feeds it and publishes what it decides; keeping
//! the rules here means every transition is unit-tested without a runtime or a timer.
//!
//! ```text
//!              consecutive failures reach failureThreshold
//!   ┌────────┐ ───────────────────────────────────────────▶ ┌──────┐
//!   │ Closed │                                              │ Open │ ◀─────────────┐
//!   └────────┘ ◀───────────┐                                └──────┘               │
//!                          │ successThreshold                  │ `timeout` after   │ any probe
//!                          │ probe successes                   │ opening (timer)   │ fails: the
//!                          │                                   ▼                   │ timeout
//!                          │                            ┌───────────┐              │ restarts
//!                          └─────────────────────────── │ Half-open │ ─────────────┘
//!                                                       └───────────┘
//!        admits at most successThreshold concurrent probes (permits on BackendState)
//! ```

use crate::backend::state::BreakerPosition;
use gogate_config::CircuitBreakerConfig;
use std::time::{Duration, Instant};

/// One upstream's breaker settings (from its effective `circuitBreaker` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Half-open successes that close it; also the number of concurrent half-open probes.
    pub success_threshold: u32,
    /// How long it stays open before going half-open.
    pub timeout: Duration,
}

impl From<&CircuitBreakerConfig> for BreakerSettings {
    fn from(c: &CircuitBreakerConfig) -> Self {
        BreakerSettings {
            failure_threshold: c.failure_threshold.max(1),
            success_threshold: c.success_threshold.max(1),
            timeout: c.timeout.get(),
        }
    }
}

/// A change of position, to publish and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

impl Transition {
    /// The position after this transition.
    pub fn position(self) -> BreakerPosition {
        match self {
            Transition::Opened => BreakerPosition::Open,
            Transition::HalfOpened => BreakerPosition::HalfOpen,
            Transition::Closed => BreakerPosition::Closed,
        }
    }
}

/// The breaker of one backend.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    position: BreakerPosition,
    /// When an open breaker may go half-open.
    half_open_at: Option<Instant>,
    /// Probe successes since going half-open.
    successes: u32,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            position: BreakerPosition::Closed,
            half_open_at: None,
            successes: 0,
        }
    }

    /// The breaker as last published (an actor restart rebuilds its machines from the
    /// published positions): an open one waits a whole `timeout` again from `now`, since when
    /// it opened was lost; a half-open one counts its successes afresh.
    pub fn restore(settings: BreakerSettings, position: BreakerPosition, now: Instant) -> Self {
        Breaker {
            settings,
            position,
            half_open_at: (position == BreakerPosition::Open).then(|| now + settings.timeout),
            successes: 0,
        }
    }

    pub fn position(&self) -> BreakerPosition {
        self.position
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// Takes new settings (a reload); the position and a running timeout are kept.
    pub fn set_settings(&mut self, settings: BreakerSettings) {
        self.settings = settings;
    }

    /// When the open breaker goes half-open (`None` unless open).
    pub fn half_open_at(&self) -> Option<Instant> {
        self.half_open_at
    }

    /// The data plane saw the consecutive-failure count reach the threshold; `consecutive` is
    /// the count now (re-checked: a success since then means the backend recovered). Only a
    /// closed breaker opens this way; half-open decisions come from probes.
    pub fn on_failures(&mut self, consecutive: u32, now: Instant) -> Option<Transition> {
        if self.position != BreakerPosition::Closed || consecutive < self.settings.failure_threshold
        {
            return None;
        }
        Some(self.open(now))
    }

    /// The open timeout may have elapsed.
    pub fn on_timer(&mut self, now: Instant) -> Option<Transition> {
        match self.half_open_at {
            Some(at) if self.position == BreakerPosition::Open && now >= at => {
                self.position = BreakerPosition::HalfOpen;
                self.half_open_at = None;
                self.successes = 0;
                Some(Transition::HalfOpened)
            }
            _ => None,
        }
    }

    /// A half-open probe finished. Outcomes arriving in another position (a probe that
    /// outlived its half-open period) are ignored.
    pub fn on_probe(&mut self, success: bool, now: Instant) -> Option<Transition> {
        if self.position != BreakerPosition::HalfOpen {
            return None;
        }
        if !success {
            return Some(self.open(now));
        }
        self.successes += 1;
        if self.successes < self.settings.success_threshold {
            return None;
        }
        self.position = BreakerPosition::Closed;
        self.successes = 0;
        Some(Transition::Closed)
    }

    fn open(&mut self, now: Instant) -> Transition {
        self.position = BreakerPosition::Open;
        self.half_open_at = Some(now + self.settings.timeout);
        self.successes = 0;
        Transition::Opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        success_threshold: 2,
        timeout: Duration::from_secs(30),
    };

    fn opened(t0: Instant) -> Breaker {
        let mut b = Breaker::new(SETTINGS);
        assert_eq!(b.on_failures(3, t0), Some(Transition::Opened));
        b
    }

    fn half_open(t0: Instant) -> Breaker {
        let mut b = opened(t0);
        assert_eq!(
            b.on_timer(t0 + SETTINGS.timeout),
            Some(Transition::HalfOpened)
        );
        b
    }

    #[test]
    fn closed_opens_when_failures_reach_the_threshold() {
        let t0 = Instant::now();
        let mut b = Breaker::new(SETTINGS);
        assert_eq!(b.on_failures(2, t0), None, "below the threshold (re-check)");
        assert_eq!(b.position(), BreakerPosition::Closed);
        assert_eq!(b.on_failures(3, t0), Some(Transition::Opened));
        assert_eq!(b.position(), BreakerPosition::Open);
        assert_eq!(b.half_open_at(), Some(t0 + SETTINGS.timeout));
        assert_eq!(b.on_failures(4, t0), None, "already open");
    }

    #[test]
    fn open_goes_half_open_only_after_the_timeout() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        assert_eq!(b.on_timer(t0 + SETTINGS.timeout / 2), None, "too early");
        assert_eq!(b.position(), BreakerPosition::Open);
        assert_eq!(
            b.on_timer(t0 + SETTINGS.timeout),
            Some(Transition::HalfOpened)
        );
        assert_eq!(b.position(), BreakerPosition::HalfOpen);
        assert_eq!(b.half_open_at(), None);
        assert_eq!(b.on_timer(t0 + SETTINGS.timeout * 2), None);
    }

    #[test]
    fn half_open_closes_after_success_threshold_successes() {
        let t0 = Instant::now();
        let mut b = half_open(t0);
        let t1 = t0 + SETTINGS.timeout;
        assert_eq!(b.on_probe(true, t1), None, "one success of two");
        assert_eq!(b.position(), BreakerPosition::HalfOpen);
        assert_eq!(b.on_probe(true, t1), Some(Transition::Closed));
        assert_eq!(b.position(), BreakerPosition::Closed);
        // Closed again: the next trip needs the full threshold.
        assert_eq!(b.on_failures(2, t1), None);
        assert_eq!(b.on_failures(3, t1), Some(Transition::Opened));
    }

    #[test]
    fn half_open_failure_reopens_and_restarts_the_timeout() {
        let t0 = Instant::now();
        let mut b = half_open(t0);
        let t1 = t0 + SETTINGS.timeout + Duration::from_secs(5);
        assert_eq!(b.on_probe(true, t1), None);
        assert_eq!(b.on_probe(false, t1), Some(Transition::Opened));
        assert_eq!(b.position(), BreakerPosition::Open);
        assert_eq!(b.half_open_at(), Some(t1 + SETTINGS.timeout));
        assert_eq!(b.on_timer(t0 + SETTINGS.timeout * 2), None, "old deadline");
        assert_eq!(
            b.on_timer(t1 + SETTINGS.timeout),
            Some(Transition::HalfOpened)
        );
        // The success before the failure does not carry over into the new half-open period.
        assert_eq!(b.on_probe(true, t1), None);
        assert_eq!(b.on_probe(true, t1), Some(Transition::Closed));
    }

    #[test]
    fn probe_outcomes_outside_half_open_are_ignored() {
        let t0 = Instant::now();
        let mut b = Breaker::new(SETTINGS);
        assert_eq!(b.on_probe(false, t0), None);
        assert_eq!(b.position(), BreakerPosition::Closed);
        let mut b = opened(t0);
        assert_eq!(b.on_probe(true, t0), None);
        assert_eq!(b.on_probe(false, t0), None);
        assert_eq!(
            b.half_open_at(),
            Some(t0 + SETTINGS.timeout),
            "not restarted"
        );
    }

    #[test]
    fn half_open_ignores_failure_threshold_events() {
        let t0 = Instant::now();
        let mut b = half_open(t0);
        assert_eq!(b.on_failures(10, t0), None);
        assert_eq!(b.position(), BreakerPosition::HalfOpen);
    }

    #[test]
    fn settings_from_config_clamp_thresholds() {
        let cfg = CircuitBreakerConfig {
            enabled: true,
            failure_threshold: 0,
            success_threshold: 4,
            timeout: gogate_config::Dur::secs(7),
        };
        let s = BreakerSettings::from(&cfg);
        assert_eq!(
            (s.failure_threshold, s.success_threshold, s.timeout),
            (1, 4, Duration::from_secs(7))
        );
    }

    #[test]
    fn restored_machines_continue_from_the_published_position() {
        let t0 = Instant::now();
        let open = Breaker::restore(SETTINGS_FOR_RESTORE, BreakerPosition::Open, t0);
        assert_eq!(open.half_open_at(), Some(t0 + SETTINGS_FOR_RESTORE.timeout));
        let mut open = open;
        assert_eq!(open.on_timer(t0), None);
        assert_eq!(
            open.on_timer(t0 + SETTINGS_FOR_RESTORE.timeout),
            Some(Transition::HalfOpened)
        );
        let mut half = Breaker::restore(SETTINGS_FOR_RESTORE, BreakerPosition::HalfOpen, t0);
        assert_eq!(half.on_probe(true, t0), Some(Transition::Closed));
        let closed = Breaker::restore(SETTINGS_FOR_RESTORE, BreakerPosition::Closed, t0);
        assert_eq!(closed.half_open_at(), None);
    }

    const SETTINGS_FOR_RESTORE: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        success_threshold: 1,
        timeout: Duration::from_secs(30),
    };
}
