//! `ConfigActor`: owns the active configuration, the backend actors it implies (and the health
//! actor probing them), and the published snapshot. It builds the first snapshot before any
//! listener starts, answers the admin API's drain commands by messaging the backend actors
//! concerned, and is where reloads (read → parse → validate → diff → build → swap) will run.

use crate::backend::actor::{BackendActor, SetDraining};
use crate::backend::state::{BackendState, Source};
use crate::breaker::BreakerActor;
use crate::build::{backend_id, build_snapshot, BackendStates};
use crate::health::{health_targets, HealthActor};
use crate::metrics::Metrics;
use crate::snapshot::SnapshotCell;
use actix::prelude::*;
use gogate_config::Config;
use slog::{info, Logger};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

pub struct ConfigActor {
    config: Arc<Config>,
    file: Option<PathBuf>,
    generation: u64,
    loaded_at: SystemTime,
    states: BackendStates,
    actors: HashMap<String, Addr<BackendActor>>,
    /// Probes the backends; a reload hands it the new list (`health::SetTargets`).
    #[allow(dead_code)]
    health: Addr<HealthActor>,
    /// Owns breaker timing for every backend; its address rides in each snapshot, and a
    /// reload's new snapshot must reuse it so open breakers keep their timers.
    #[allow(dead_code)]
    breaker: Addr<BreakerActor>,
    cell: SnapshotCell,
    log: Logger,
}

impl ConfigActor {
    /// Creates the backend actors and publishes generation 1. Must run inside an actix system.
    pub fn new(config: Config, file: Option<PathBuf>, metrics: Arc<Metrics>, log: &Logger) -> Self {
        let config = Arc::new(config);
        let mut states = BackendStates::new();
        let mut actors = HashMap::new();
        for name in config.upstream_names() {
            for b in config.upstream_settings(&name).backends {
                let state = BackendState::new(&name, &b.addr, b.weight, Source::Static);
                let (st, lg) = (Arc::clone(&state), log.clone());
                // Supervised: a backend actor that fails restarts with the same shared state.
                let addr = Supervisor::start(move |_| BackendActor::new(st, &lg));
                let id = backend_id(&name, &b.addr);
                actors.insert(id.clone(), addr);
                states.insert(id, state);
            }
        }
        let targets = health_targets(&config, &states, &actors);
        let hlog = log.clone();
        let health = Supervisor::start(move |_| HealthActor::new(targets, &hlog));
        let breaker = BreakerActor::start_bounded(log);
        let snapshot = build_snapshot(Arc::clone(&config), 1, &states, &metrics, &breaker);
        let cell = SnapshotCell::new(snapshot);
        info!(log, "configuration applied"; "generation" => 1,
              "file" => file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "<embedded default>".into()),
              "backends" => states.len(), "routes" => config.routes.len());
        ConfigActor {
            config,
            file,
            generation: 1,
            loaded_at: SystemTime::now(),
            states,
            actors,
            health,
            breaker,
            cell,
            log: log.clone(),
        }
    }

    /// The published snapshot pointer, for the data plane and the admin API.
    pub fn cell(&self) -> SnapshotCell {
        self.cell.clone()
    }
}

impl Actor for ConfigActor {
    type Context = Context<Self>;
}

impl Supervised for ConfigActor {}

/// Command: drain (or undrain) every backend with this address, in every upstream.
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
            .filter(|(_, s)| s.addr == msg.addr)
            .filter_map(|(id, _)| self.actors.get(id).cloned())
            .collect();
        info!(self.log, "drain change requested";
              "backend" => &msg.addr, "drain" => msg.drain, "matches" => targets.len());
        Box::pin(async move {
            if targets.is_empty() {
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
        })
    }
}
