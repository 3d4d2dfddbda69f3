//! The health verdict of one backend as a pure state machine: consecutive probe outcomes against
//! `unhealthyThreshold` and `healthyThreshold`. Kept free of actix and time so every transition is
//! unit-tested; the `BackendActor` owns one and only publishes what it decides. (The original
//! gateway ignored `healthyThreshold`; here a backend returns only after that many successes.)
//!
//! ```text
//!            failure × unhealthyThreshold (in a row)
//!   healthy ───────────────────────────────────────▶ unhealthy
//!      ▲   (a success resets the failure streak)       │ (a failure resets the success streak)
//!      └───────────────────────────────────────────────┘
//!            success × healthyThreshold (in a row)
//! ```

/// The two thresholds in force (both ≥ 1 after validation; 0 is treated as 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub unhealthy: u32,
    pub healthy: u32,
}

impl Thresholds {
    pub fn from_config(h: &gogate_config::HealthConfig) -> Self {
        Thresholds {
            unhealthy: h.unhealthy_threshold,
            healthy: h.healthy_threshold,
        }
    }
}

/// A change of verdict, returned only on the probe that crosses a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `failures` consecutive failed probes made the backend unhealthy.
    BecameUnhealthy { failures: u32 },
    /// `successes` consecutive successful probes made the backend healthy again.
    BecameHealthy { successes: u32 },
}

/// Consecutive-outcome counter with hysteresis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    healthy: bool,
    /// Failures in a row while healthy; successes in a row while unhealthy.
    streak: u32,
}

impl HealthTracker {
    /// Starts in the given verdict (backends start healthy so traffic flows before any probe).
    pub fn new(healthy: bool) -> Self {
        HealthTracker { healthy, streak: 0 }
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one probe outcome. The comparison is `>=`, so thresholds lowered by a reload
    /// take effect on the next probe instead of waiting for a counter that already passed them.
    pub fn record(&mut self, success: bool, th: Thresholds) -> Option<Transition> {
        if success == self.healthy {
            // An outcome that agrees with the verdict breaks any streak against it.
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        let (limit, flip) = if self.healthy {
            (
                th.unhealthy.max(1),
                Transition::BecameUnhealthy {
                    failures: self.streak,
                },
            )
        } else {
            (
                th.healthy.max(1),
                Transition::BecameHealthy {
                    successes: self.streak,
                },
            )
        };
        if self.streak < limit {
            return None;
        }
        self.healthy = !self.healthy;
        self.streak = 0;
        Some(flip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TH: Thresholds = Thresholds {
        unhealthy: 3,
        healthy: 2,
    };

    fn run(t: &mut HealthTracker, outcomes: &[bool]) -> Vec<Option<Transition>> {
        outcomes.iter().map(|&ok| t.record(ok, TH)).collect()
    }

    #[test]
    fn starts_in_the_given_verdict() {
        assert!(HealthTracker::new(true).healthy());
        assert!(!HealthTracker::new(false).healthy());
    }

    #[test]
    fn successes_while_healthy_change_nothing() {
        let mut t = HealthTracker::new(true);
        assert!(run(&mut t, &[true; 10]).iter().all(Option::is_none));
        assert!(t.healthy());
    }

    #[test]
    fn becomes_unhealthy_exactly_at_the_unhealthy_threshold() {
        let mut t = HealthTracker::new(true);
        assert_eq!(t.record(false, TH), None);
        assert!(t.healthy(), "one failure of three");
        assert_eq!(t.record(false, TH), None);
        assert!(t.healthy(), "two failures of three");
        assert_eq!(
            t.record(false, TH),
            Some(Transition::BecameUnhealthy { failures: 3 })
        );
        assert!(!t.healthy());
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut t = HealthTracker::new(true);
        run(&mut t, &[false, false, true, false, false]);
        assert!(t.healthy(), "never three failures in a row");
        assert_eq!(
            t.record(false, TH),
            Some(Transition::BecameUnhealthy { failures: 3 })
        );
    }

    #[test]
    fn failures_while_unhealthy_change_nothing() {
        let mut t = HealthTracker::new(false);
        assert!(run(&mut t, &[false; 10]).iter().all(Option::is_none));
        assert!(!t.healthy());
    }

    #[test]
    fn becomes_healthy_only_after_the_healthy_threshold() {
        let mut t = HealthTracker::new(false);
        assert_eq!(t.record(true, TH), None);
        assert!(
            !t.healthy(),
            "one success is not enough (healthyThreshold 2)"
        );
        assert_eq!(
            t.record(true, TH),
            Some(Transition::BecameHealthy { successes: 2 })
        );
        assert!(t.healthy());
    }

    #[test]
    fn a_failure_resets_the_success_streak() {
        let mut t = HealthTracker::new(false);
        run(&mut t, &[true, false, true]);
        assert!(!t.healthy(), "never two successes in a row");
        assert_eq!(
            t.record(true, TH),
            Some(Transition::BecameHealthy { successes: 2 })
        );
    }

    #[test]
    fn full_cycle_reports_each_transition_once() {
        let mut t = HealthTracker::new(true);
        let got = run(&mut t, &[false, false, false, false, true, true, true]);
        assert_eq!(
            got,
            vec![
                None,
                None,
                Some(Transition::BecameUnhealthy { failures: 3 }),
                None,
                None,
                Some(Transition::BecameHealthy { successes: 2 }),
                None,
            ]
        );
    }

    #[test]
    fn thresholds_of_one_flip_on_every_disagreeing_probe() {
        let one = Thresholds {
            unhealthy: 1,
            healthy: 1,
        };
        let mut t = HealthTracker::new(true);
        assert_eq!(
            t.record(false, one),
            Some(Transition::BecameUnhealthy { failures: 1 })
        );
        assert_eq!(
            t.record(true, one),
            Some(Transition::BecameHealthy { successes: 1 })
        );
    }

    #[test]
    fn zero_threshold_is_treated_as_one() {
        let zero = Thresholds {
            unhealthy: 0,
            healthy: 0,
        };
        let mut t = HealthTracker::new(true);
        assert!(t.record(false, zero).is_some());
        assert!(t.record(true, zero).is_some());
    }

    #[test]
    fn lowered_threshold_applies_to_the_running_streak() {
        let mut t = HealthTracker::new(true);
        run(&mut t, &[false, false]);
        let lower = Thresholds {
            unhealthy: 2,
            healthy: 2,
        };
        // The streak (3 after this probe) already passes the new threshold of 2.
        assert_eq!(
            t.record(false, lower),
            Some(Transition::BecameUnhealthy { failures: 3 })
        );
    }
}
