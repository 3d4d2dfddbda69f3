//! The config actor's reload pipeline: read the file (off the actor, with `tokio::fs`), parse and
//! validate it, look its backend host names up (`dns::refresh`; a failed lookup keeps the last
//! good answer and never fails a reload), have the listener manager move changed listeners
//! (`reload::listeners`; a bind failure fails the reload), diff it against the running
//! configuration, bring the backends to the new set (kept ones keep their state, removed ones
//! drain), rebuild and swap the snapshot. An error at any step keeps the old configuration
//! serving and is recorded for `GET /config`. `sync_backends` is also how registry events and
//! changed DNS answers reach the backends.

use crate::build::build_snapshot;
use crate::config_actor::{start_backend, ConfigActor, FileChanged};
use crate::dns::host_names;
use crate::dns::Answers;
use crate::health::probe::ProbeSpec;
use crate::health::{health_targets, HealthTarget, SetTargets, Thresholds};
use crate::ratelimit::RateLimits;
use crate::reload::diff::{desired_backends, plan_backends, restart_required};
use crate::reload::history::LastReload;
use crate::reload::listeners::ApplyListeners;
use actix::prelude::*;
use gogate_config::diff::ConfigDiff;
use gogate_config::jwt::{check_size, MAX_KEY_FILE_BYTES};
use gogate_config::tls::CertSet;
use gogate_config::{prepare, Config, ConfigError, ConfigErrors, KeyFiles, TlsConfig};
use slog::{info, warn};
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Increases only when the configuration's content changed.
    pub generation: u64,
    pub changed: bool,
    /// Keys that differ from what the process started with and only take effect after a
    /// restart (admin and metrics listeners, ...); reported by every reload until then.
    pub restart_required: Vec<&'static str>,
    /// What this reload changed (empty when the content was the same).
    pub diff: ConfigDiff,
}

/// A failed reload: the old configuration keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadError(pub String);

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Command: re-read the file and apply it (`POST /reload`, `SIGHUP`). `trigger` is for logs.
#[derive(Message)]
#[rtype(result = "Result<ReloadOutcome, ReloadError>")]
pub struct Reload {
    pub trigger: &'static str,
}

/// What identifies a health target's schedule (its report address is its backend's actor,
/// which a kept backend keeps).
pub(crate) type TargetSig = (String, ProbeSpec, Duration, Thresholds);

pub(crate) fn signature(targets: &[HealthTarget]) -> Vec<TargetSig> {
    targets
        .iter()
        .map(|t| (t.id.clone(), t.spec.clone(), t.interval, t.thresholds))
        .collect()
}

pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Reads the key files a configuration references with `tokio::fs` (a failure is kept per
/// file and reported by `PendingConfig::finish`, naming the file).
async fn read_key_files_async(paths: Vec<PathBuf>) -> KeyFiles {
    use tokio::io::AsyncReadExt;
    let mut files = KeyFiles::new();
    for p in paths {
        let mut bytes = Vec::new();
        let read = match tokio::fs::File::open(&p).await {
            Ok(f) => f
                .take(MAX_KEY_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| e.to_string())
                .and_then(|_| check_size(bytes)),
            Err(e) => Err(e.to_string()),
        };
        files.insert(p, read);
    }
    files
}

/// Loads the certificates of `tls` when it is enabled, on the blocking pool (file reads), so
/// the config actor's thread never waits on the disk. The error names the key and file.
async fn load_certs(tls: TlsConfig, file: Option<PathBuf>) -> Result<Option<Arc<CertSet>>, String> {
    if !tls.enabled {
        return Ok(None);
    }
    let load = move || gogate_config::tls::load(&tls, file.as_deref());
    match tokio::task::spawn_blocking(load).await {
        Ok(Ok(set)) => Ok(Some(Arc::new(set))),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("loading the TLS certificates failed (the loading task ended)".into()),
    }
}

async fn read(file: Option<PathBuf>) -> Result<Vec<u8>, ConfigErrors> {
    let Some(path) = file else {
        return Err(ConfigErrors::single(ConfigError::new(
            "",
            "no configuration file to reload: gogate runs with the embedded default (-config FILE)",
        )));
    };
    // Through the path, so a symlink swap (Kubernetes ConfigMap) is followed.
    tokio::fs::read(&path).await.map_err(|e| {
        let mut err = ConfigError::new("", format!("cannot read the configuration file: {e}"));
        err.file = Some(path);
        ConfigErrors::single(err)
    })
}

impl Handler<Reload> for ConfigActor {
    // Atomic: one reload at a time, and no other message sees a half-applied one.
    type Result = AtomicResponse<Self, Result<ReloadOutcome, ReloadError>>;

    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) -> Self::Result {
        let fut = read(self.file.clone());
        AtomicResponse::new(Box::pin(
            fut.into_actor(self)
                .then(move |bytes, act, _| act.apply_bytes(bytes, msg.trigger)),
        ))
    }
}

impl Handler<FileChanged> for ConfigActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: FileChanged, _: &mut Context<Self>) -> Self::Result {
        let fut = read(self.file.clone());
        AtomicResponse::new(Box::pin(fut.into_actor(self).then(
            |bytes, act, _| -> ResponseActFuture<Self, ()> {
                // An unreadable file mid-swap is retried with the next event; a changed one
                // reloads.
                match bytes {
                    Ok(bytes) if act.file_hash != Some(hash_bytes(&bytes)) => {
                        Box::pin(act.apply_bytes(Ok(bytes), "watch").map(|_, _, _| ()))
                    }
                    _ => Box::pin(fut::ready(())),
                }
            },
        )))
    }
}

impl ConfigActor {
    /// Called once the watch is set up: remembers the file's hash, and reloads (through
    /// `FileChanged`, so atomically) when the file already differs from the configuration the
    /// gateway started with.
    pub(crate) fn check_initial_file(&mut self, bytes: Vec<u8>, ctx: &mut Context<Self>) {
        if self.file_hash.is_some() {
            return; // a reload got there first
        }
        // The YAML only: key files are read by the reload this may trigger, not here (no
        // blocking I/O in the actor). A file with errors is never the same (what could be parsed
        // of it may be): the reload reports them.
        let same = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| prepare(t, self.file.as_deref()).ok())
            .is_some_and(|p| !p.has_errors() && *p.config() == self.config.without_keys());
        if same {
            self.file_hash = Some(hash_bytes(&bytes));
        } else {
            ctx.notify(FileChanged);
        }
    }

    /// Parse → validate → look host names up → rebind changed listeners → diff → apply, from the
    /// bytes read (or the read error). The lookups run before anything is applied, so a new
    /// name's backends are there from the new configuration's first request. The listener
    /// manager binds the new listeners before anything is swapped: if it cannot, the reload
    /// fails as a whole and the old configuration keeps serving.
    fn apply_bytes(
        &mut self,
        bytes: Result<Vec<u8>, ConfigErrors>,
        trigger: &'static str,
    ) -> ResponseActFuture<Self, Result<ReloadOutcome, ReloadError>> {
        let file = self.file.clone();
        let parsed = bytes.and_then(|b| {
            self.file_hash = Some(hash_bytes(&b));
            let text = String::from_utf8(b).map_err(|_| {
                let mut err = ConfigError::new("", "the configuration file is not UTF-8 text");
                err.file = file.clone();
                ConfigErrors::single(err)
            })?;
            prepare(&text, file.as_deref())
        });
        let pending = match parsed {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(self.fail(e.to_string(), trigger)))),
        };
        // Key files (JWT) are read off the actor, every reload: a rotated key is picked up even
        // when the YAML did not change. Certificates likewise, on the blocking pool.
        let reads = read_key_files_async(pending.key_files());
        Box::pin(reads.into_actor(self).then(move |files, act, _| {
            let new = match pending.finish(&files) {
                Ok(c) => c,
                Err(e) => {
                    let err = act.fail(e.to_string(), trigger);
                    return Box::pin(fut::ready(Err(err)))
                        as ResponseActFuture<Self, Result<ReloadOutcome, ReloadError>>;
                }
            };
            let certs = load_certs(new.server.tls.clone(), file);
            Box::pin(certs.into_actor(act).then(
                move |certs, act, _| -> ResponseActFuture<Self, Result<ReloadOutcome, ReloadError>> {
                    let certs = match certs {
                        Ok(c) => c,
                        // A bad certificate fails the reload: the old one keeps being served.
                        Err(e) => return Box::pin(fut::ready(Err(act.fail(e, trigger)))),
                    };
                    let lookups = act.lookups_for(&new);
                    Box::pin(lookups.into_actor(act).then(move |answers, act, ctx| {
                        act.move_listeners(new, certs, answers, trigger, ctx)
                    }))
                },
            ))
        }))
    }

    /// Has the listener manager move the listeners `new` changes (if any), publishes the new
    /// certificates, then commits.
    fn move_listeners(
        &mut self,
        new: Config,
        certs: Option<Arc<CertSet>>,
        answers: Answers,
        trigger: &'static str,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<ReloadOutcome, ReloadError>> {
        let rebind = self.listener_sink.clone().and_then(|sink| {
            ApplyListeners::between(&self.boot, &self.config, &new).map(|msg| (sink, msg))
        });
        let Some((sink, msg)) = rebind else {
            self.publish_certs(certs);
            return Box::pin(fut::ready(Ok(self.commit(new, answers, trigger, ctx))));
        };
        // An HTTPS listener that this reload starts must have its certificates from its first
        // handshake. With TLS off until now, no listener reads the store: publish them first.
        let early = !self.config.server.tls.enabled;
        if early {
            self.publish_certs(certs.clone());
        }
        info!(self.log, "reload moves listeners"; "tcp" => msg.tcp.as_deref(),
              "http" => msg.http.as_deref(), "https" => msg.tls.as_deref(),
              "admin" => msg.admin.as_deref(), "metrics" => msg.metrics.as_deref(),
              "trigger" => trigger);
        Box::pin(
            async move { sink.send(msg).await }.into_actor(self).map(
                move |res, act, ctx| match res {
                    Ok(Ok(())) => {
                        if !early {
                            act.publish_certs(certs);
                        }
                        Ok(act.commit(new, answers, trigger, ctx))
                    }
                    Ok(Err(e)) => Err(act.fail(e, trigger)),
                    Err(_) => Err(act.fail("the listener manager is unavailable".into(), trigger)),
                },
            ),
        )
    }

    /// Hands the HTTPS listener the certificates of the configuration being applied (none when
    /// TLS is off): new handshakes use them, open connections keep theirs.
    fn publish_certs(&self, certs: Option<Arc<CertSet>>) {
        let Some(store) = &self.cert_store else {
            return;
        };
        if let Some(set) = &certs {
            let files: Vec<String> = set
                .files()
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            info!(self.log, "tls certificates loaded"; "files" => files.join(", "));
        }
        store.store(certs);
    }

    /// Records a failed reload (log, metric, `GET /config`); nothing else changes.
    fn fail(&mut self, error: String, trigger: &'static str) -> ReloadError {
        warn!(self.log, "configuration reload failed"; "error" => &error,
              "trigger" => trigger, "generation" => self.generation);
        self.metrics
            .config_reloads
            .with_label_values(&["failure"])
            .inc();
        self.reloads.record(LastReload {
            time: SystemTime::now(),
            trigger,
            generation: self.generation,
            error: Some(error.clone()),
            diff: None,
            restart_required: Vec::new(),
        });
        ReloadError(error)
    }

    /// Applies a parsed configuration whose listeners (if any changed) are already moved, with
    /// the answers of its host names, and restarts the DNS timer.
    fn commit(
        &mut self,
        new: Config,
        answers: Answers,
        trigger: &'static str,
        ctx: &mut Context<Self>,
    ) -> ReloadOutcome {
        let changed = new != *self.config;
        let diff = gogate_config::diff::diff(&self.config, &new);
        let restart = restart_required(&self.boot, &new, self.listener_sink.is_some());
        let old = changed.then(|| std::mem::replace(&mut self.config, Arc::new(new)));
        let dns_changed = self.record_dns(answers);
        if let Some(old) = old {
            self.generation += 1;
            self.loaded_at = SystemTime::now();
            if let Some(level) = &self.level {
                level.set(self.config.logging.level);
            }
            let names = host_names(&self.config);
            self.drained_names.retain(|n| names.contains(n));
            self.sync_backends(true);
            self.reset_breaker_counts(&old);
        } else if dns_changed {
            self.sync_backends(false);
        }
        self.schedule_dns(ctx);
        self.refresh_watch(ctx);
        self.metrics
            .config_reloads
            .with_label_values(&["success"])
            .inc();
        self.reloads.record(LastReload {
            time: SystemTime::now(),
            trigger,
            generation: self.generation,
            error: None,
            diff: Some(diff.clone()),
            restart_required: restart.clone(),
        });
        info!(self.log, "configuration reloaded"; "generation" => self.generation,
              "changed" => changed, "trigger" => trigger, "backends" => self.states.len(),
              "routes" => self.config.routes.len(), "summary" => diff.summary(),
              "diff" => serde_json::to_string(&diff).unwrap_or_default());
        if !restart.is_empty() {
            warn!(self.log, "some changes need a restart";
                  "keys" => restart.join(", "), "generation" => self.generation);
        }
        ReloadOutcome {
            generation: self.generation,
            changed,
            restart_required: restart,
            diff,
        }
    }

    /// A changed breaker configuration counts consecutive failures afresh: a count carried over
    /// from before (failures counted while the breaker was off, or under another threshold)
    /// says nothing about the new settings, and would trip the breaker on the next failure.
    fn reset_breaker_counts(&self, old: &gogate_config::Config) {
        for name in self.config.upstream_names() {
            let new_cb = self.config.upstream_settings(&name).circuit_breaker;
            if old.upstream_settings(&name).circuit_breaker != new_cb {
                for s in self.states.values().filter(|s| s.upstream == name) {
                    s.reset_failures();
                }
            }
        }
    }

    /// Brings the backends to what the config and the registrations ask for, re-targets the
    /// health checks and publishes a new snapshot (same breaker actor, same kept states).
    /// `new_generation`: the config changed, so rate limiters start afresh; otherwise (registry
    /// changes) they keep their buckets.
    pub(crate) fn sync_backends(&mut self, new_generation: bool) {
        if new_generation {
            self.limits = RateLimits::new(
                &self.config.server.rate_limit,
                self.config.cluster.shares_rate_limits(),
            );
        }
        let desired = desired_backends(&self.config, &self.registrations, &self.dns);
        let current: BTreeMap<String, u32> = self
            .states
            .iter()
            .map(|(id, s)| (id.clone(), s.weight()))
            .collect();
        let plan = plan_backends(&current, &desired);
        self.retiring.retain(|_, r| !r.is_claimed());
        for id in &plan.add {
            let d = &desired[id];
            let drained = d
                .hostname
                .as_ref()
                .is_some_and(|n| self.drained_names.contains(n));
            if self.restore(id, d.weight, drained) {
                continue;
            }
            let (state, actor) = start_backend(d, drained, &self.log);
            info!(self.log, "backend added"; "backend" => &d.addr, "upstream" => &d.upstream,
                  "source" => d.source.as_str(), "hostname" => d.hostname.as_deref(),
                  "draining" => drained);
            self.states.insert(id.clone(), state);
            self.actors.insert(id.clone(), actor);
        }
        for (id, weight) in &plan.reweight {
            if let Some(s) = self.states.get(id) {
                s.set_weight(*weight);
            }
        }
        // Kept and restored backends follow the name they now come from (an address may move
        // from one host name, or an IP literal, to another).
        for (id, d) in &desired {
            if let Some(s) = self.states.get(id) {
                if s.hostname().as_deref() != d.hostname.as_ref() {
                    s.set_hostname(d.hostname.clone());
                }
            }
        }
        let drain = self.config.server.shutdown.drain_timeout.get();
        for id in &plan.remove {
            self.retire(id, drain);
        }
        let targets = health_targets(&self.config, &self.states, &self.actors);
        let sig = signature(&targets);
        if sig != self.health_sig {
            self.health_sig = sig;
            self.health.do_send(SetTargets(targets));
        }
        let snapshot = build_snapshot(
            Arc::clone(&self.config),
            self.generation,
            &self.states,
            &self.metrics,
            &self.breaker,
            &mut self.limits,
        );
        self.cell.store(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use crate::config_actor::{ConfigActor, RegistryRemove, RegistryUpsert};
    use crate::metrics::Metrics;
    use actix::Actor;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[actix_rt::test]
    async fn registry_backends_join_the_snapshot_and_drain_on_removal() {
        let yaml = "server:\n  backends: [{addr: \"127.0.0.1:1\"}]\n  health: {enabled: false}\nupstreams:\n  svc:\n    backends: [{addr: \"127.0.0.1:2\"}]\n";
        let config = gogate_config::load_str(yaml, None).expect("valid config");
        let log = crate::logging::discard();
        let actor = ConfigActor::new(config, None, Metrics::new(), &log);
        let cell = actor.cell();
        let addr = actor.start();
        let upsert = |id: &str, name: &str, port: u16| RegistryUpsert {
            id: id.into(),
            name: name.into(),
            addr: format!("127.0.0.1:{port}"),
            weight: 2,
        };
        addr.send(upsert("x", "svc", 3)).await.expect("actor alive");
        addr.send(upsert("y", "nope", 4))
            .await
            .expect("actor alive");
        let snap = cell.load();
        let ids: Vec<&str> = snap.backends().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "default/127.0.0.1:1",
                "default/127.0.0.1:4",
                "svc/127.0.0.1:2",
                "svc/127.0.0.1:3"
            ]
        );
        let x = snap.upstreams["svc"].backends[1].clone();
        assert_eq!((x.weight(), x.source.as_str()), (2, "registry"));

        addr.send(RegistryRemove { id: "x".into() })
            .await
            .expect("actor alive");
        let ids: Vec<String> = cell.load().backends().map(|b| b.id.clone()).collect();
        assert!(!ids.contains(&x.id), "{ids:?}");
        // Out of every later snapshot, and not flagged: a request that took an earlier
        // snapshot can still be served by it while it drains and after it retires.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(x.eligible());
    }

    /// A backend removed and added back while it still drains is in rotation in the very
    /// snapshot that brings it back, and a removed one still serves the requests that took the
    /// snapshot before its removal: no window where the upstream's only backend refuses them
    /// (clients saw 503s during reloads under load).
    #[actix_rt::test]
    async fn a_restored_backend_is_eligible_in_the_snapshot_that_restores_it() {
        let yaml =
            "server:\n  backends: []\n  health: {enabled: false}\n  registry: {enabled: true}\n";
        let config = gogate_config::load_str(yaml, None).expect("valid config");
        let log = crate::logging::discard();
        let actor = ConfigActor::new(config, None, Metrics::new(), &log);
        let cell = actor.cell();
        let addr = actor.start();
        let upsert = || RegistryUpsert {
            id: "x".into(),
            name: "default".into(),
            addr: "127.0.0.1:3".into(),
            weight: 1,
        };
        // A reader on another thread, like a proxy worker, watches the published snapshots
        // while the backend is being re-added: `phase` is odd during a re-add and changes with
        // every step, so a look that starts and ends in the same odd phase saw only what that
        // re-add published (the drain a removal starts is not mistaken for it).
        let phase = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (cell, phase, stop) = (cell.clone(), phase.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let before = phase.load(Ordering::SeqCst);
                    let snap = cell.load();
                    let draining = snap.upstreams["default"]
                        .backends
                        .iter()
                        .any(|b| b.draining());
                    if before % 2 == 1 && draining && phase.load(Ordering::SeqCst) == before {
                        seen += 1;
                    }
                }
                seen
            })
        };
        let mut in_flight = None;
        for round in 0..1000u32 {
            phase.store(2 * round + 1, Ordering::SeqCst);
            addr.send(upsert()).await.expect("actor alive");
            phase.store(2 * round + 2, Ordering::SeqCst);
            let snap = cell.load();
            let x = Arc::clone(&snap.upstreams["default"].backends[0]);
            assert!(
                !x.draining() && x.eligible(),
                "round {round}: restored backend still draining"
            );
            // A request in flight at the removal: the backend drains (and can be restored)
            // instead of retiring at once.
            in_flight = Some(x.begin());
            addr.send(RegistryRemove { id: "x".into() })
                .await
                .expect("actor alive");
            let ids: Vec<String> = cell.load().backends().map(|b| b.id.clone()).collect();
            assert!(
                ids.is_empty(),
                "round {round}: removed backend still published: {ids:?}"
            );
            // A request that took the previous snapshot just before the removal can still be
            // served by it while it drains (it answered 503 when it was flagged draining).
            assert!(
                x.eligible(),
                "round {round}: a draining removal refuses late requests"
            );
        }
        drop(in_flight);
        stop.store(true, Ordering::SeqCst);
        let seen = reader.join().expect("reader thread");
        assert_eq!(
            seen, 0,
            "a snapshot publishing the re-added backend held it draining"
        );
    }
}
