//! The last reloads, for `GET /reloads` and `GET /config`'s `last_reload` (DESIGN B11): each
//! with its time, trigger, result and, when it applied, what it changed. Bounded: the oldest
//! record goes when a 21st arrives.

use gogate_config::diff::ConfigDiff;
use std::collections::VecDeque;
use std::time::SystemTime;

/// Records kept.
pub const KEPT: usize = 20;

/// One reload.
#[derive(Debug, Clone)]
pub struct LastReload {
    pub time: SystemTime,
    /// `api` (POST /reload), `sighup`, `watch` (the file changed), `certificates` (a watched
    /// certificate or key file changed), `interrupted` (the actor panicked mid-apply).
    pub trigger: &'static str,
    /// The generation serving after it.
    pub generation: u64,
    /// `None` = success; else the error (file, line, key), the old configuration kept.
    pub error: Option<String>,
    /// What it changed (`None` when it failed).
    pub diff: Option<ConfigDiff>,
    /// Keys that differ from the start and need a restart.
    pub restart_required: Vec<&'static str>,
}

/// The last [`KEPT`] reloads, oldest first.
#[derive(Debug, Default)]
pub struct ReloadHistory(VecDeque<LastReload>);

impl ReloadHistory {
    pub fn record(&mut self, r: LastReload) {
        if self.0.len() == KEPT {
            self.0.pop_front();
        }
        self.0.push_back(r);
    }

    pub fn last(&self) -> Option<&LastReload> {
        self.0.back()
    }

    /// Newest first.
    pub fn newest_first(&self) -> Vec<LastReload> {
        self.0.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(generation: u64) -> LastReload {
        LastReload {
            time: SystemTime::now(),
            trigger: "api",
            generation,
            error: None,
            diff: None,
            restart_required: Vec::new(),
        }
    }

    #[test]
    fn keeps_the_last_twenty_newest_first() {
        let mut h = ReloadHistory::default();
        for g in 1..=25 {
            h.record(rec(g));
        }
        let list = h.newest_first();
        assert_eq!(list.len(), KEPT);
        assert_eq!(list[0].generation, 25);
        assert_eq!(list[KEPT - 1].generation, 6);
        assert_eq!(h.last().map(|r| r.generation), Some(25));
    }
}
