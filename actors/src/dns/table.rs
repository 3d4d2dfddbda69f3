//! The resolver state of the config actor: for each backend host name of the configuration, the
//! last good answer and how the lookups of it are going. Plain data with injected time, so the
//! rules are unit-tested here:
//!
//! - a non-empty answer replaces the set (sorted, deduplicated, at most [`MAX_ADDRESSES`]);
//! - a failed lookup, or an empty answer, keeps the last good set; only the first failure of a
//!   streak asks for a warning, and the first success after it reports the recovery;
//! - answers carry the epoch their lookup started in, and an answer older than the one applied
//!   is dropped (a reload's lookups and the timer's may overlap);
//! - a name that has never resolved is retried sooner than `dnsRefresh` ([`UNRESOLVED_RETRY`]).

use gogate_config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most addresses kept per name: each one is a backend (an actor, probes, metric labels).
pub const MAX_ADDRESSES: usize = 128;

/// Retry period of a name that has never resolved (capped by `dnsRefresh`): a Kubernetes
/// service's DNS record may appear a little after the gateway starts.
pub const UNRESOLVED_RETRY: Duration = Duration::from_secs(5);

/// Whether a backend address is a host name to resolve (not an IP literal).
pub fn is_host_name(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_err()
}

/// Every backend host name (`host:port`) of the configuration, in every upstream.
pub fn host_names(config: &Config) -> BTreeSet<String> {
    config
        .upstream_names()
        .into_iter()
        .flat_map(|name| config.upstream_settings(&name).backends)
        .map(|b| b.addr)
        .filter(|a| is_host_name(a))
        .collect()
}

/// What is known of one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameState {
    /// The last good answer; empty while the name has never resolved.
    pub addrs: Vec<SocketAddr>,
    /// When the last good answer arrived.
    pub resolved_at: Option<Instant>,
    /// Failed lookups since the last good one (0 = the last lookup succeeded).
    pub failures: u32,
    pub last_error: Option<String>,
    /// Epoch of the last answer applied.
    epoch: u64,
}

/// What applying one lookup result did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub success: bool,
    /// The set of addresses changed: the backends must follow.
    pub changed: bool,
    /// This failure starts a streak (warn once).
    pub streak_started: bool,
    /// This success ends a streak of that many failures.
    pub recovered_after: Option<u32>,
    /// Addresses left out of the answer beyond [`MAX_ADDRESSES`].
    pub dropped: usize,
    /// The answer was older than the one applied, and ignored.
    pub stale: bool,
}

/// Name (`host:port`) → its state.
#[derive(Debug, Clone, Default)]
pub struct DnsTable {
    names: BTreeMap<String, NameState>,
    next_epoch: u64,
}

impl DnsTable {
    /// Starts a round of lookups: its answers carry this epoch.
    pub fn begin(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// The last good addresses of `name` (none when unknown or never resolved).
    pub fn addrs(&self, name: &str) -> &[SocketAddr] {
        self.names.get(name).map_or(&[], |s| s.addrs.as_slice())
    }

    pub fn get(&self, name: &str) -> Option<&NameState> {
        self.names.get(name)
    }

    /// Forgets the names the configuration no longer has.
    pub fn retain(&mut self, names: &BTreeSet<String>) {
        self.names.retain(|n, _| names.contains(n));
    }

    /// Applies the result of a lookup of `name` started in `epoch`.
    pub fn apply(
        &mut self,
        name: &str,
        epoch: u64,
        result: Result<Vec<SocketAddr>, String>,
        now: Instant,
    ) -> Applied {
        let state = self.names.entry(name.to_string()).or_default();
        if epoch < state.epoch {
            return Applied {
                stale: true,
                ..Applied::default()
            };
        }
        state.epoch = epoch;
        let answer = match result {
            Ok(addrs) if !addrs.is_empty() => Ok(addrs),
            Ok(_) => Err("the answer has no addresses".to_string()),
            Err(e) => Err(e),
        };
        match answer {
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                let dropped = addrs.len().saturating_sub(MAX_ADDRESSES);
                addrs.truncate(MAX_ADDRESSES);
                let recovered_after = (state.failures > 0).then_some(state.failures);
                let changed = addrs != state.addrs;
                state.addrs = addrs;
                state.resolved_at = Some(now);
                state.failures = 0;
                state.last_error = None;
                Applied {
                    success: true,
                    changed,
                    recovered_after,
                    dropped,
                    ..Applied::default()
                }
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                state.last_error = Some(e);
                Applied {
                    streak_started: state.failures == 1,
                    ..Applied::default()
                }
            }
        }
    }

    /// How long until the next round for `names`: `refresh`, or sooner while one of them has
    /// never resolved.
    pub fn next_delay(&self, names: &BTreeSet<String>, refresh: Duration) -> Duration {
        if names.iter().any(|n| self.addrs(n).is_empty()) {
            refresh.min(UNRESOLVED_RETRY)
        } else {
            refresh
        }
    }

    /// Names of `names` that no lookup has been made for yet.
    pub fn unseen<'a>(&self, names: &'a BTreeSet<String>) -> Vec<&'a String> {
        names
            .iter()
            .filter(|n| !self.names.contains_key(*n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    const N: &str = "api.internal:8080";

    #[test]
    fn host_names_are_the_non_ip_backends_of_every_upstream() {
        let yaml = "server:\n  backends: [{addr: \"10.0.0.1:80\"}, {addr: \"api.internal:8080\"}, {addr: \"[::1]:80\"}]\nupstreams:\n  b:\n    backends: [{addr: \"b.svc:9000\"}, {addr: \"api.internal:8080\"}]\n";
        let config = gogate_config::load_str(yaml, None).expect("valid config");
        let names: Vec<String> = host_names(&config).into_iter().collect();
        assert_eq!(names, ["api.internal:8080", "b.svc:9000"]);
        assert!(is_host_name("localhost:80") && !is_host_name("127.0.0.1:80"));
    }

    #[test]
    fn an_answer_is_sorted_deduplicated_and_replaces_the_set() {
        let mut t = DnsTable::default();
        let now = Instant::now();
        let e = t.begin();
        let a = t.apply(
            N,
            e,
            Ok(vec![
                sa("10.0.0.2:80"),
                sa("10.0.0.1:80"),
                sa("10.0.0.2:80"),
            ]),
            now,
        );
        assert!(a.success && a.changed && a.recovered_after.is_none());
        assert_eq!(t.addrs(N), [sa("10.0.0.1:80"), sa("10.0.0.2:80")]);
        let e = t.begin();
        let same = t.apply(N, e, Ok(vec![sa("10.0.0.2:80"), sa("10.0.0.1:80")]), now);
        assert!(same.success && !same.changed);
        let e = t.begin();
        let moved = t.apply(N, e, Ok(vec![sa("10.0.0.3:80"), sa("10.0.0.2:80")]), now);
        assert!(moved.changed);
        assert_eq!(t.addrs(N), [sa("10.0.0.2:80"), sa("10.0.0.3:80")]);
    }

    #[test]
    fn failures_and_empty_answers_keep_the_last_good_set_and_warn_once_per_streak() {
        let mut t = DnsTable::default();
        let t0 = Instant::now();
        let e = t.begin();
        t.apply(N, e, Ok(vec![sa("10.0.0.1:80")]), t0);
        let mut started = 0;
        for result in [
            Err("SERVFAIL".to_string()),
            Ok(vec![]),
            Err("timeout".into()),
        ] {
            let e = t.begin();
            let a = t.apply(N, e, result, t0 + Duration::from_secs(30));
            assert!(!a.success && !a.changed, "{a:?}");
            started += usize::from(a.streak_started);
            assert_eq!(t.addrs(N), [sa("10.0.0.1:80")]);
        }
        assert_eq!(started, 1);
        let s = t.get(N).expect("known name");
        assert_eq!((s.failures, s.last_error.as_deref()), (3, Some("timeout")));
        assert_eq!(s.resolved_at, Some(t0));
        let e = t.begin();
        let back = t.apply(N, e, Ok(vec![sa("10.0.0.1:80")]), t0);
        assert_eq!(back.recovered_after, Some(3));
        assert!(!back.changed);
        // A new streak warns again.
        let e = t.begin();
        assert!(t.apply(N, e, Err("x".into()), t0).streak_started);
    }

    #[test]
    fn a_name_that_never_resolved_has_no_addresses_and_a_short_retry() {
        let mut t = DnsTable::default();
        let names = BTreeSet::from([N.to_string()]);
        let hour = Duration::from_secs(3600);
        assert_eq!(t.unseen(&names).len(), 1);
        let e = t.begin();
        assert!(
            t.apply(N, e, Err("NXDOMAIN".into()), Instant::now())
                .streak_started
        );
        assert!(t.addrs(N).is_empty() && t.unseen(&names).is_empty());
        assert_eq!(t.next_delay(&names, hour), UNRESOLVED_RETRY);
        assert_eq!(
            t.next_delay(&names, Duration::from_millis(200)),
            Duration::from_millis(200)
        );
        let e = t.begin();
        t.apply(N, e, Ok(vec![sa("10.0.0.1:80")]), Instant::now());
        assert_eq!(t.next_delay(&names, hour), hour);
    }

    #[test]
    fn an_older_answer_never_overwrites_a_newer_one() {
        let mut t = DnsTable::default();
        let (old, new) = (t.begin(), t.begin());
        let now = Instant::now();
        t.apply(N, new, Ok(vec![sa("10.0.0.2:80")]), now);
        let late = t.apply(N, old, Ok(vec![sa("10.0.0.1:80")]), now);
        assert!(late.stale && !late.changed);
        assert_eq!(t.addrs(N), [sa("10.0.0.2:80")]);
    }

    #[test]
    fn answers_are_bounded_and_removed_names_are_forgotten() {
        let mut t = DnsTable::default();
        let many: Vec<SocketAddr> = (0..200u16)
            .map(|i| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 80)))
            .collect();
        let e = t.begin();
        let a = t.apply(N, e, Ok(many), Instant::now());
        assert_eq!(
            (t.addrs(N).len(), a.dropped),
            (MAX_ADDRESSES, 200 - MAX_ADDRESSES)
        );
        t.retain(&BTreeSet::new());
        assert!(t.addrs(N).is_empty() && t.get(N).is_none());
    }
}
