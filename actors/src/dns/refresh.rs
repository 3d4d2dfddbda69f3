//! When and how host names are looked up. The gateway resolves every name before it serves
//! ([`resolve_at_start`]); a reload resolves the new file's names before it is applied (in
//! `reload::apply`); and the config actor runs a round every `server.dnsRefresh` (sooner while a
//! name has never resolved). A round is a future spawned on the config actor: the lookups run
//! off the actor (the system resolver on tokio's blocking pool), each bounded by
//! [`LOOKUP_TIMEOUT`], and the actor applies the answers when all are in, with one backend sync
//! for the whole round. The next round is scheduled only when one ends, so rounds never pile up
//! behind a slow resolver.
//!
//! ```text
//!  start ──resolve──▶ ConfigActor ──timer (dnsRefresh | min(dnsRefresh, 5s) while unresolved)──┐
//!                          ▲                                                                  │
//!                          └── apply answers ◀── lookups (spawned, ≤ 5s each) ◀──────────────┘
//!  reload ──lookups of the new file's names──▶ apply answers + the new config, timer restarts
//! ```

use crate::config_actor::ConfigActor;
use crate::dns::resolver::Resolver;
use crate::dns::table::{host_names, DnsTable};
use crate::metrics::Metrics;
use actix::prelude::*;
use futures_util::future::join_all;
use gogate_config::Config;
use slog::{debug, info, warn, Logger};
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for one lookup; a slower answer counts as a failure (the last good set stays).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The results of one round of lookups, started in `epoch` (see `DnsTable::begin`).
#[derive(Debug, Clone, Default)]
pub struct Answers {
    pub epoch: u64,
    pub results: Vec<(String, Result<Vec<SocketAddr>, String>)>,
}

/// Looks every name up concurrently, each within [`LOOKUP_TIMEOUT`].
pub fn lookup_all(
    resolver: Arc<dyn Resolver>,
    names: BTreeSet<String>,
    epoch: u64,
) -> impl Future<Output = Answers> + 'static {
    let lookups = names.into_iter().map(move |name| {
        let lookup = resolver.lookup(&name);
        async move {
            let result = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => Ok(addrs),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("lookup timed out after {LOOKUP_TIMEOUT:?}")),
            };
            (name, result)
        }
    });
    let all = join_all(lookups);
    async move {
        Answers {
            epoch,
            results: all.await,
        }
    }
}

/// Applies a round's answers for the names in `names` (others left the configuration meanwhile),
/// counts them in `gogate_dns_resolutions_total` and logs what operators need: changed answers,
/// the first failure of a streak, recoveries. True when some name's addresses changed.
pub fn record(
    table: &mut DnsTable,
    names: &BTreeSet<String>,
    answers: Answers,
    metrics: &Metrics,
    log: &Logger,
) -> bool {
    let mut changed = false;
    let now = Instant::now();
    for (name, result) in answers.results {
        if !names.contains(&name) {
            continue;
        }
        let error = result.as_ref().err().cloned();
        let applied = table.apply(&name, answers.epoch, result, now);
        if applied.stale {
            continue;
        }
        let outcome = if applied.success {
            "success"
        } else {
            "failure"
        };
        metrics.dns_resolutions.with_label_values(&[outcome]).inc();
        let addrs = table.addrs(&name);
        if applied.changed {
            changed = true;
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            info!(log, "dns answer changed"; "name" => &name, "addresses" => list.join(","),
                  "count" => list.len());
        }
        if applied.dropped > 0 {
            warn!(log, "dns answer has too many addresses; keeping the first";
                  "name" => &name, "kept" => addrs.len(), "dropped" => applied.dropped);
        }
        if let Some(failures) = applied.recovered_after {
            info!(log, "dns resolution recovered"; "name" => &name, "failed_lookups" => failures);
        }
        let error = error.unwrap_or_else(|| "the answer has no addresses".into());
        if applied.streak_started {
            let age = table
                .get(&name)
                .and_then(|s| s.resolved_at)
                .map(|t| now.saturating_duration_since(t).as_millis() as u64);
            warn!(log, "dns resolution failed; keeping the last good addresses";
                  "name" => &name, "error" => &error, "kept" => addrs.len(),
                  "kept_age_ms" => age);
        } else if !applied.success {
            debug!(log, "dns resolution still failing"; "name" => &name, "error" => &error);
        }
    }
    changed
}

/// Resolves every host name of `config` before the gateway serves, so its first requests see
/// the resolved backends. A name that does not resolve does not fail the start: it has no
/// backend yet and is retried (warned about by [`record`]).
pub async fn resolve_at_start(
    config: &Config,
    resolver: &Arc<dyn Resolver>,
    metrics: &Metrics,
    log: &Logger,
) -> DnsTable {
    let mut table = DnsTable::default();
    let names = host_names(config);
    if !names.is_empty() {
        let epoch = table.begin();
        let answers = lookup_all(Arc::clone(resolver), names.clone(), epoch).await;
        record(&mut table, &names, answers, metrics, log);
    }
    table
}

impl ConfigActor {
    /// The lookups of `config`'s host names, as a future to run before applying it (reloads).
    pub(crate) fn lookups_for(&mut self, config: &Config) -> impl Future<Output = Answers> {
        let epoch = self.dns.begin();
        lookup_all(Arc::clone(&self.resolver), host_names(config), epoch)
    }

    /// Records answers against the current configuration's names; true when backends must
    /// follow (the caller syncs them).
    pub(crate) fn record_dns(&mut self, answers: Answers) -> bool {
        let names = host_names(&self.config);
        self.dns.retain(&names);
        record(&mut self.dns, &names, answers, &self.metrics, &self.log)
    }

    /// Arms the timer of the next round (after a round, a reload, or at start). A round in
    /// flight schedules the next one itself when it ends; a name never looked up is looked up
    /// now.
    pub(crate) fn schedule_dns(&mut self, ctx: &mut Context<Self>) {
        if self.dns_round {
            return;
        }
        if let Some(h) = self.dns_timer.take() {
            ctx.cancel_future(h);
        }
        let names = host_names(&self.config);
        if names.is_empty() {
            self.dns.retain(&names);
            return;
        }
        if !self.dns.unseen(&names).is_empty() {
            self.start_dns_round(ctx);
            return;
        }
        let delay = self
            .dns
            .next_delay(&names, self.config.server.dns_refresh.get());
        self.dns_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.dns_timer = None;
            act.start_dns_round(ctx);
        }));
    }

    /// Looks every host name up (spawned), then applies the answers and schedules the next round.
    fn start_dns_round(&mut self, ctx: &mut Context<Self>) {
        if self.dns_round {
            return;
        }
        let config = Arc::clone(&self.config);
        let lookups = self.lookups_for(&config);
        self.dns_round = true;
        ctx.spawn(lookups.into_actor(self).map(|answers, act, ctx| {
            act.dns_round = false;
            if act.record_dns(answers) {
                act.sync_backends(false);
            }
            act.schedule_dns(ctx);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::table::DnsTable;
    use futures_util::future::BoxFuture;
    use std::sync::Mutex;

    /// Answers `svc.test:80` with whatever the test set last.
    #[derive(Default)]
    struct Fixed(Mutex<Vec<SocketAddr>>);

    impl Resolver for Fixed {
        fn lookup(&self, _: &str) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
            let addrs = self.0.lock().map(|a| a.clone()).unwrap_or_default();
            Box::pin(async move { Ok(addrs) })
        }
    }

    async fn ids_eventually(cell: &crate::SnapshotCell, want: &[&str]) {
        for _ in 0..200 {
            let ids: Vec<String> = cell.load().backends().map(|b| b.id.clone()).collect();
            if ids == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ids: Vec<String> = cell.load().backends().map(|b| b.id.clone()).collect();
        panic!("backends {ids:?}, expected {want:?}");
    }

    #[actix_rt::test]
    async fn config_actor_resolves_unseen_names_at_start_and_follows_the_answer() {
        let yaml = "server:\n  backends: [{addr: \"svc.test:80\"}]\n  dnsRefresh: 100ms\n  health: {enabled: false}\n";
        let config = gogate_config::load_str(yaml, None).expect("valid config");
        let resolver = Arc::new(Fixed::default());
        *resolver.0.lock().expect("lock") = vec!["10.0.0.1:80".parse().expect("addr")];
        let log = crate::logging::discard();
        let metrics = Metrics::new();
        let actor = ConfigActor::with_dns(
            config,
            None,
            Arc::clone(&metrics),
            &log,
            resolver.clone(),
            DnsTable::default(),
        );
        let cell = actor.cell();
        assert_eq!(cell.load().backends().count(), 0, "nothing before a lookup");
        let _addr = actor.start();
        ids_eventually(&cell, &["default/10.0.0.1:80"]).await;
        let first = cell.load().backends().next().cloned().expect("a backend");
        assert_eq!(
            first.hostname().as_deref().map(String::as_str),
            Some("svc.test:80")
        );

        *resolver.0.lock().expect("lock") = vec!["10.0.0.2:80".parse().expect("addr")];
        ids_eventually(&cell, &["default/10.0.0.2:80"]).await;
        // The vanished address leaves every later snapshot; it is not flagged, so a request
        // that took an earlier snapshot can still be served by it.
        assert!(first.eligible());
        let ok = metrics
            .dns_resolutions
            .with_label_values(&["success"])
            .get();
        assert!(ok >= 2, "{ok}");
    }
}
