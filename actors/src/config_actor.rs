//! `ConfigActor`: owns the active configuration, the backend actors it implies (and the health
//! actor probing them), the last good DNS answers of its backend host names, and the published
//! snapshot. It builds the first snapshot before any listener starts, answers the admin API's
//! drain commands by messaging the backend actors concerned, turns registry events and changed
//! DNS answers into backends, and runs reloads (the pipeline is in `reload::apply`, the DNS
//! rounds in `dns::refresh`).

use crate::backend::actor::{BackendActor, SetDraining};
use crate::backend::state::BackendState;
use crate::breaker::BreakerActor;
use crate::build::{build_snapshot, BackendStates};
use crate::dns::{host_names, DnsTable, Resolver, SystemResolver};
use crate::health::{health_targets, HealthActor};
use crate::logging::LogLevelHandle;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::reload::apply::{signature, TargetSig};
use crate::reload::diff::{desired_backends, Desired, Registration};
use crate::reload::listeners::{ApplyListeners, SetListenerSink};
use crate::reload::retire::Retiring;
use crate::reload::watch::{self, FileWatch};
use crate::reload::{LastReload, ReloadHistory};
use crate::snapshot::SnapshotCell;
use crate::supervise;
use crate::tls::CertStore;
use actix::prelude::*;
use gogate_config::Config;
use slog::{info, Logger};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

pub struct ConfigActor {
    pub(crate) config: Arc<Config>,
    /// The configuration the process started with (for `restart_required`).
    pub(crate) boot: Arc<Config>,
    /// Moves the data-plane listeners on reload (`reload::listeners`); none = not rebound.
    pub(crate) listener_sink: Option<Recipient<ApplyListeners>>,
    pub(crate) file: Option<PathBuf>,
    pub(crate) generation: u64,
    pub(crate) loaded_at: SystemTime,
    /// Backends in service (static and registry), by id. Removed ones leave this map and drain.
    pub(crate) states: BackendStates,
    pub(crate) actors: HashMap<String, Addr<BackendActor>>,
    /// Removed backends still draining, by id (see `reload::retire`).
    pub(crate) retiring: HashMap<String, Retiring>,
    /// Registry services by registry id; they survive reloads.
    pub(crate) registrations: BTreeMap<String, Registration>,
    /// Looks backend host names up (`dns::refresh`).
    pub(crate) resolver: Arc<dyn Resolver>,
    /// The last good answer of each backend host name; each address is a backend.
    pub(crate) dns: DnsTable,
    /// The timer of the next DNS round, while one is armed.
    pub(crate) dns_timer: Option<SpawnHandle>,
    /// A DNS round is in flight (it arms the next timer when it ends).
    pub(crate) dns_round: bool,
    /// Host names drained through the admin API: addresses they resolve to later start drained.
    pub(crate) drained_names: BTreeSet<String>,
    /// Probes the backends; a reload hands it the new list (`health::SetTargets`).
    pub(crate) health: Addr<HealthActor>,
    /// What the health actor was last told to probe, so unchanged lists are not re-sent (a
    /// re-send restarts every timer and probes everything at once).
    pub(crate) health_sig: Vec<TargetSig>,
    /// Owns breaker timing for every backend; its address rides in each snapshot, and a
    /// reload's new snapshot reuses it so open breakers keep their timers.
    pub(crate) breaker: Addr<BreakerActor>,
    pub(crate) metrics: Arc<Metrics>,
    /// This generation's rate limiters, reused by rebuilds that only change backends.
    pub(crate) limits: RateLimits,
    /// The process logger's level, set from `logging.level` on reload (none in some tests).
    pub(crate) level: Option<LogLevelHandle>,
    /// The last reloads, for `GET /reloads` and `GET /config`.
    pub(crate) reloads: ReloadHistory,
    /// Hash of the file bytes last read, so watcher events without a content change are ignored.
    pub(crate) file_hash: Option<u64>,
    watch: Option<FileWatch>,
    /// The certificate files the watch covers besides the configuration file.
    watched_certs: Vec<PathBuf>,
    /// Where the HTTPS listener reads its certificates (`tls`); none = no HTTPS listener.
    pub(crate) cert_store: Option<Arc<CertStore>>,
    pub(crate) cell: SnapshotCell,
    pub(crate) log: Logger,
}

impl ConfigActor {
    /// Creates the backend actors and publishes generation 1, with the system resolver and no
    /// DNS answer yet (host names are looked up once the actor starts). Must run inside an actix
    /// system.
    pub fn new(config: Config, file: Option<PathBuf>, metrics: Arc<Metrics>, log: &Logger) -> Self {
        Self::with_dns(
            config,
            file,
            metrics,
            log,
            Arc::new(SystemResolver),
            DnsTable::default(),
        )
    }

    /// Like [`new`](Self::new), with `resolver` for host names and the answers already known
    /// (`dns::resolve_at_start`), so generation 1 has the resolved backends.
    pub fn with_dns(
        config: Config,
        file: Option<PathBuf>,
        metrics: Arc<Metrics>,
        log: &Logger,
        resolver: Arc<dyn Resolver>,
        dns: DnsTable,
    ) -> Self {
        let config = Arc::new(config);
        let mut states = BackendStates::new();
        let mut actors = HashMap::new();
        for (id, d) in desired_backends(&config, &BTreeMap::new(), &dns) {
            let (state, addr) = start_backend(&d, false, log);
            actors.insert(id.clone(), addr);
            states.insert(id, state);
        }
        let targets = health_targets(&config, &states, &actors);
        let health_sig = signature(&targets);
        let hlog = log.clone();
        let health = supervise::start("health", log, move |_| HealthActor::new(targets, &hlog));
        let breaker = BreakerActor::start_bounded(log);
        let mut limits = RateLimits::new(
            &config.server.rate_limit,
            config.cluster.shares_rate_limits(),
        );
        let snapshot = build_snapshot(
            Arc::clone(&config),
            1,
            &states,
            &metrics,
            &breaker,
            &mut limits,
        );
        let cell = SnapshotCell::new(snapshot);
        info!(log, "configuration applied"; "generation" => 1,
              "file" => file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "<embedded default>".into()),
              "backends" => states.len(), "routes" => config.routes.len());
        ConfigActor {
            boot: Arc::clone(&config),
            listener_sink: None,
            config,
            file,
            generation: 1,
            loaded_at: SystemTime::now(),
            states,
            actors,
            retiring: HashMap::new(),
            registrations: BTreeMap::new(),
            resolver,
            dns,
            dns_timer: None,
            dns_round: false,
            drained_names: BTreeSet::new(),
            health,
            health_sig,
            breaker,
            metrics,
            limits,
            level: None,
            reloads: ReloadHistory::default(),
            file_hash: None,
            watch: None,
            watched_certs: Vec::new(),
            cert_store: None,
            cell,
            log: log.clone(),
        }
    }

    /// Where reloads publish the certificates the HTTPS listener serves (set before the actor
    /// starts, so no reload can miss it).
    pub fn with_cert_store(mut self, store: Arc<CertStore>) -> Self {
        self.cert_store = Some(store);
        self
    }

    /// The published snapshot pointer, for the data plane and the admin API.
    pub fn cell(&self) -> SnapshotCell {
        self.cell.clone()
    }
}

/// Creates one backend's shared state and its supervised actor; `draining` = it starts out of
/// rotation (an address of a host name the admin drained).
pub(crate) fn start_backend(
    d: &Desired,
    draining: bool,
    log: &Logger,
) -> (Arc<BackendState>, Addr<BackendActor>) {
    let state = BackendState::new(&d.upstream, &d.addr, d.weight, d.source);
    state.set_hostname(d.hostname.clone());
    // Set before the actor exists and before any snapshot holds the state, so no request can
    // reach it first; the actor is the only writer from then on.
    state.set_draining(draining);
    let (st, lg) = (Arc::clone(&state), log.clone());
    // Supervised: a backend actor that fails restarts with the same shared state.
    let actor = supervise::start("backend", log, move |_| BackendActor::new(st, &lg));
    (state, actor)
}

impl Actor for ConfigActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.schedule_dns(ctx);
        let Some(file) = self.file.clone() else {
            return;
        };
        self.watch = None;
        self.refresh_watch(ctx);
        // The file may have changed between its first read and this watch: check once.
        ctx.spawn(
            async move { tokio::fs::read(&file).await.ok() }
                .into_actor(self)
                .map(|bytes, act, ctx| {
                    if let Some(bytes) = bytes {
                        act.check_initial_file(bytes, ctx);
                    }
                }),
        );
    }
}

/// A panic may have struck half-way through applying a change: the actor goes back to the
/// configuration it last published and brings its backends, health targets and snapshot in
/// line with it (kept backends keep their state). `started` then watches the file again.
impl Supervised for ConfigActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        let published = self.cell.load();
        if !Arc::ptr_eq(&self.config, &published.config) {
            // It was applying a new configuration: that reload failed. The file's hash stays
            // recorded, so the same bytes are not applied again on their own (no crash loop).
            let error = "the configuration actor panicked while applying this file; the last published configuration is kept".to_string();
            self.metrics
                .config_reloads
                .with_label_values(&["failure"])
                .inc();
            self.reloads.record(LastReload {
                time: SystemTime::now(),
                trigger: "interrupted",
                generation: published.generation,
                error: Some(error),
                diff: None,
                restart_required: Vec::new(),
            });
        }
        self.config = Arc::clone(&published.config);
        self.generation = published.generation;
        self.health_sig.clear();
        // The old context's DNS timer and round died with it; `started` arms a new timer.
        self.dns_timer = None;
        self.dns_round = false;
        self.sync_backends(false);
    }
}

/// Command: a registry service joins (or updates): it becomes a backend of the upstream named
/// `name`, else of `default`. An address equal to a static backend of that upstream is that
/// backend (no duplicate).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct RegistryUpsert {
    pub id: String,
    pub name: String,
    pub addr: String,
    pub weight: u32,
}

/// Command: a registry service left (deregistered or expired): its backend drains, unless a
/// static backend or another registration holds the same address.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct RegistryRemove {
    pub id: String,
}

impl Handler<RegistryUpsert> for ConfigActor {
    type Result = ();

    fn handle(&mut self, msg: RegistryUpsert, _: &mut Context<Self>) {
        let reg = Registration {
            name: msg.name,
            addr: msg.addr,
            weight: msg.weight,
        };
        if self.registrations.get(&msg.id) == Some(&reg) {
            return;
        }
        info!(self.log, "registry backend upsert"; "service_id" => &msg.id,
              "name" => &reg.name, "addr" => &reg.addr, "weight" => reg.weight);
        self.registrations.insert(msg.id, reg);
        self.sync_backends(false);
    }
}

impl Handler<RegistryRemove> for ConfigActor {
    type Result = ();

    fn handle(&mut self, msg: RegistryRemove, _: &mut Context<Self>) {
        if self.registrations.remove(&msg.id).is_some() {
            info!(self.log, "registry backend removed"; "service_id" => &msg.id);
            self.sync_backends(false);
        }
    }
}

/// Command: the process logger's level handle, so reloads apply `logging.level`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetLogLevelHandle(pub LogLevelHandle);

impl Handler<SetLogLevelHandle> for ConfigActor {
    type Result = ();

    fn handle(&mut self, msg: SetLogLevelHandle, _: &mut Context<Self>) {
        msg.0.set(self.config.logging.level);
        self.level = Some(msg.0);
    }
}

impl ConfigActor {
    /// (Re)starts the file watch when the certificate and JWT key files of the configuration are
    /// not those it covers (at start, and after a reload that names other files).
    pub(crate) fn refresh_watch(&mut self, ctx: &mut Context<Self>) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let tls = &self.config.server.tls;
        let mut certs = if tls.enabled {
            gogate_config::tls::files(tls, Some(&file))
        } else {
            Vec::new()
        };
        // JWT key files are watched like certificates: a rotated key applies without a reload.
        if let Some(jwt) = &self.config.jwt {
            let base = file.parent().unwrap_or_else(|| std::path::Path::new(""));
            certs.extend(jwt.key_files(base).into_iter().map(|(_, p)| p));
        }
        if self.watch.is_some() && certs == self.watched_certs {
            return;
        }
        let dropped = self.metrics.messages_dropped.with_label_values(&["config"]);
        // The old watch stops when replaced; the new one is complete before that.
        self.watch = watch::watch(&file, &certs, ctx.address(), dropped, &self.log);
        self.watched_certs = certs;
    }
}

impl Handler<SetListenerSink> for ConfigActor {
    type Result = ();

    fn handle(&mut self, msg: SetListenerSink, _: &mut Context<Self>) {
        self.listener_sink = Some(msg.0);
    }
}

/// Event: the watched directory changed; reload if the file's bytes did.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FileChanged;

/// Command: drain (or undrain) every backend with this address, in every upstream. The address
/// may also be a configured host name (`host:port`): every address it resolves to, now and
/// later, until it is undrained.
#[derive(Message)]
#[rtype(result = "Result<usize, UnknownBackend>")]
pub struct SetDrain {
    pub addr: String,
    pub drain: bool,
}

/// No backend has the address asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBackend;

impl Handler<SetDrain> for ConfigActor {
    type Result = ResponseFuture<Result<usize, UnknownBackend>>;

    fn handle(&mut self, msg: SetDrain, _: &mut Context<Self>) -> Self::Result {
        let targets: Vec<Addr<BackendActor>> = self
            .states
            .iter()
            .filter(|(_, s)| s.addr == msg.addr || s.hostname().is_some_and(|h| *h == msg.addr))
            .filter_map(|(id, _)| self.actors.get(id).cloned())
            .collect();
        let is_name = host_names(&self.config).contains(&msg.addr);
        if is_name && msg.drain {
            self.drained_names.insert(msg.addr.clone());
        } else if is_name {
            self.drained_names.remove(&msg.addr);
        }
        info!(self.log, "drain change requested";
              "backend" => &msg.addr, "drain" => msg.drain, "matches" => targets.len(),
              "host_name" => is_name);
        Box::pin(async move {
            if targets.is_empty() && !is_name {
                return Err(UnknownBackend);
            }
            let n = targets.len();
            for t in targets {
                // A backend actor that stopped meanwhile has left the config; nothing to do.
                let _ = t.send(SetDraining(msg.drain)).await;
            }
            Ok(n)
        })
    }
}

/// What `GET /config` shows.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    pub config: Arc<Config>,
    pub file: Option<PathBuf>,
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub last_reload: Option<LastReload>,
}

/// Query: the active configuration and its generation.
#[derive(Message)]
#[rtype(result = "ConfigInfo")]
pub struct GetConfigInfo;

impl Handler<GetConfigInfo> for ConfigActor {
    type Result = MessageResult<GetConfigInfo>;

    fn handle(&mut self, _: GetConfigInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ConfigInfo {
            config: Arc::clone(&self.config),
            file: self.file.clone(),
            generation: self.generation,
            loaded_at: self.loaded_at,
            last_reload: self.reloads.last().cloned(),
        })
    }
}

/// Query: the last reloads, newest first (`GET /reloads`).
#[derive(Message)]
#[rtype(result = "Vec<LastReload>")]
pub struct GetReloads;

impl Handler<GetReloads> for ConfigActor {
    type Result = MessageResult<GetReloads>;

    fn handle(&mut self, _: GetReloads, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.reloads.newest_first())
    }
}

/// Command: stop active health probing for good (shutdown: a drained gateway must not keep
/// probing its backends while it waits for in-flight work).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopHealthChecks;

impl Handler<StopHealthChecks> for ConfigActor {
    type Result = ();

    fn handle(&mut self, _: StopHealthChecks, _: &mut Context<Self>) {
        self.health.do_send(crate::health::StopProbing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise;

    /// A test-only fault: the handler starts applying `0` and panics half-way.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct CrashMidApply(Config);

    impl Handler<CrashMidApply> for ConfigActor {
        type Result = ();
        fn handle(&mut self, msg: CrashMidApply, _: &mut Context<Self>) {
            self.config = Arc::new(msg.0);
            self.generation += 1;
            panic!("injected fault in the configuration actor");
        }
    }

    fn config(addrs: &[&str]) -> Config {
        let list: Vec<String> = addrs.iter().map(|a| format!("{{addr: \"{a}\"}}")).collect();
        let yaml = format!(
            "server:\n  backends: [{}]\n  health: {{enabled: false}}\n",
            list.join(", ")
        );
        gogate_config::load_str(&yaml, None).expect("valid config")
    }

    #[actix_rt::test]
    async fn a_panic_mid_apply_restarts_from_the_published_configuration() {
        let log = crate::logging::discard();
        let actor = ConfigActor::new(config(&["127.0.0.1:1"]), None, Metrics::new(), &log);
        let cell = actor.cell();
        let addr = supervise::start("config", &log, move |_| actor);
        let published = Arc::clone(&cell.load().config);

        let crashed = addr.send(CrashMidApply(config(&["127.0.0.1:2"]))).await;
        assert!(crashed.is_err(), "the crashing message gets no answer");

        // Same address; the half-applied configuration is gone, the published one is back.
        let info = addr.send(GetConfigInfo).await.expect("restarted");
        assert_eq!(*info.config, *published);
        assert_eq!(info.generation, 1);
        let last = info.last_reload.expect("the failed apply is recorded");
        assert!(last.error.is_some_and(|e| e.contains("panicked")));
        let ids: Vec<String> = cell.load().backends().map(|b| b.id.clone()).collect();
        assert_eq!(ids, ["default/127.0.0.1:1"]);

        // And it works as before: a registration becomes a backend.
        addr.send(RegistryUpsert {
            id: "r".into(),
            name: "default".into(),
            addr: "127.0.0.1:3".into(),
            weight: 1,
        })
        .await
        .expect("actor alive");
        let ids: Vec<String> = cell.load().backends().map(|b| b.id.clone()).collect();
        assert_eq!(ids, ["default/127.0.0.1:1", "default/127.0.0.1:3"]);
    }
}
