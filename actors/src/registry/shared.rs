//! The registry actor's shared mode (`cluster.registry` with a `cluster.store`): writes go to
//! the store first (`cluster::registry`, one script each) and answer only once it took them;
//! the local store becomes a mirror, refreshed by the change feed (a message names an id, its
//! record is fetched), by a full read every [`RESYNC`] and after every (re)subscription.
//! Deadlines come from the store (its remaining TTL); while it cannot be read the mirror
//! keeps its last known set (nothing expires, writes answer 503 naming the store) and
//! resynchronises when it answers again.

use super::actor::{RegistryActor, RegistryError};
use super::spec::ServiceSpec;
use super::store::{generate_id, Registration, Service};
use crate::cluster::conn::{self, Conn, StoreError, SubEvent, Target};
use crate::cluster::registry::{Registered, SharedRegistry, SpecRecord, StoredService};
use actix::prelude::*;
use slog::{info, warn};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the whole registry is read again from the store.
pub const RESYNC: Duration = Duration::from_secs(2);
/// Bound on each registry operation (control plane: admin calls and resyncs).
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the shared registry lives.
#[derive(Debug, Clone)]
pub struct SharedSettings {
    pub target: Target,
    pub prefix: String,
    /// `gogate_store_errors_total{op="registry"}`.
    pub errors: prometheus::IntCounter,
}

/// The actor's shared-mode state.
pub struct Shared {
    settings: SharedSettings,
    client: Option<Rc<SharedRegistry>>,
    /// The last store operation succeeded (else the mirror is frozen).
    pub up: bool,
    /// A full read is in flight.
    syncing: bool,
}

impl Shared {
    pub fn new(settings: SharedSettings) -> Self {
        Shared {
            settings,
            client: None,
            up: false,
            syncing: false,
        }
    }
}

fn store_error(client: &SharedRegistry, e: &StoreError) -> RegistryError {
    RegistryError::Store(format!("registry store {} unavailable: {e}", client.store))
}

fn wall(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl RegistryActor {
    fn client(&self) -> Option<Rc<SharedRegistry>> {
        self.shared.as_ref().and_then(|s| s.client.clone())
    }

    /// The store client (made in `started`, so always there once messages are handled).
    fn connected(&self) -> Result<Rc<SharedRegistry>, RegistryError> {
        self.client()
            .ok_or_else(|| RegistryError::Store("registry store not connected".into()))
    }

    /// Connects (once; a restarted actor keeps its connection), subscribes to the change feed
    /// and arms the resync timer.
    pub(super) fn start_shared(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let client = match &shared.client {
            Some(c) => Rc::clone(c),
            None => {
                let s = &shared.settings;
                let conn = Conn::start(s.target.clone());
                let c = Rc::new(SharedRegistry::new(
                    conn,
                    &s.prefix,
                    OP_TIMEOUT,
                    s.target.url.redacted(),
                ));
                shared.client = Some(Rc::clone(&c));
                c
            }
        };
        let rx = conn::subscribe(shared.settings.target.clone(), client.channel());
        ctx.add_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (e, rx))
        }));
        ctx.run_interval(RESYNC, |act, ctx| act.resync(ctx));
        self.resync(ctx);
    }

    /// Reads every service from the store and makes the mirror equal to it.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.client() else { return };
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        if shared.syncing {
            return;
        }
        shared.syncing = true;
        let fut = async move { client.sync().await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            if let Some(s) = act.shared.as_mut() {
                s.syncing = false;
            }
            match res {
                Ok(all) => {
                    act.mark_up(true);
                    act.mirror_all(all);
                }
                Err(e) => act.mark_down(&e),
            }
            act.deliver(ctx);
        }));
    }

    fn mark_up(&mut self, up: bool) {
        if let Some(s) = self.shared.as_mut() {
            if !s.up && up {
                info!(self.log, "registry store reachable"; "store" => s.settings.target.url.redacted());
            }
            s.up = up;
        }
    }

    fn mark_down(&mut self, e: &StoreError) {
        if let Some(s) = self.shared.as_mut() {
            s.settings.errors.inc();
            if s.up {
                warn!(self.log, "registry store unreachable; serving the last known services";
                      "store" => s.settings.target.url.redacted(), "error" => e.to_string());
            }
            s.up = false;
        }
    }

    /// The mirror becomes exactly `all`.
    fn mirror_all(&mut self, all: Vec<StoredService>) {
        let live: BTreeSet<String> = all.iter().map(|s| s.id.clone()).collect();
        for id in self.store_mut().ids() {
            if !live.contains(&id) {
                self.remove(&id, "service left the shared registry");
            }
        }
        for s in all {
            self.mirror_one(s);
        }
        self.publish_size();
    }

    fn mirror_one(&mut self, s: StoredService) {
        let service = Service {
            id: s.id.clone(),
            name: s.spec.name,
            address: s.spec.address,
            tags: s.spec.tags,
            metadata: s.spec.metadata,
            weight: s.spec.weight,
            ttl: s.ttl,
            registered_at: wall(s.registered_at_ms),
            last_heartbeat: wall(s.last_heartbeat_ms),
            expires_at: Instant::now() + s.remaining,
        };
        let event = super::upsert_of(&service);
        if self.store_mut().mirror(service) {
            self.queue(&s.id, Some(event));
        }
    }

    pub(super) fn register_shared(
        &mut self,
        spec: ServiceSpec,
    ) -> ActorResponse<Self, Result<Registration, RegistryError>> {
        let client = match self.connected() {
            Ok(c) => c,
            Err(e) => return ActorResponse::reply(Err(e)),
        };
        let id = spec.id.clone().unwrap_or_else(generate_id);
        let ttl = spec.ttl.unwrap_or(self.store_mut().default_ttl());
        let max = self.store_mut().max_services();
        let record = SpecRecord {
            name: spec.name,
            address: spec.address,
            tags: spec.tags,
            metadata: spec.metadata,
            weight: spec.weight,
        };
        let fut = {
            let (client, id, record) = (Rc::clone(&client), id.clone(), record.clone());
            async move { client.register(&id, &record, ttl, max).await }
        };
        ActorResponse::r#async(fut.into_actor(self).map(move |res, act, ctx| {
            let created = match res {
                Ok(Registered::Full) => return Err(RegistryError::Full { max }),
                Ok(r) => r,
                Err(e) => {
                    act.mark_down(&e);
                    return Err(store_error(&client, &e));
                }
            };
            act.mark_up(true);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let (registered_at_ms, is_new) = match created {
                Registered::Created { registered_at_ms } => (registered_at_ms, true),
                Registered::Updated { registered_at_ms } => (registered_at_ms, false),
                Registered::Full => (now, false),
            };
            let stored = StoredService {
                id: id.clone(),
                spec: record,
                registered_at_ms,
                last_heartbeat_ms: now,
                ttl,
                remaining: ttl,
            };
            act.mirror_one(stored);
            act.publish_size();
            act.deliver(ctx);
            let service = act
                .store_mut()
                .get(&id)
                .cloned()
                .ok_or_else(|| RegistryError::Store("the registration vanished".into()))?;
            let r = if is_new {
                Registration::Created(service)
            } else {
                Registration::Updated(service)
            };
            info!(act.log, "service registered (shared)"; "id" => &id,
                  "update" => !is_new, "ttl_ms" => ttl.as_millis() as u64);
            Ok(r)
        }))
    }

    pub(super) fn heartbeat_shared(
        &mut self,
        id: String,
    ) -> ActorResponse<Self, Result<bool, RegistryError>> {
        let client = match self.connected() {
            Ok(c) => c,
            Err(e) => return ActorResponse::reply(Err(e)),
        };
        let fut = {
            let (client, id) = (Rc::clone(&client), id.clone());
            async move {
                let known = client.heartbeat(&id).await?;
                let record = match known {
                    true => client.fetch(&id).await?,
                    false => None,
                };
                Ok::<_, StoreError>(record)
            }
        };
        ActorResponse::r#async(fut.into_actor(self).map(move |res, act, ctx| {
            let res = match res {
                Ok(Some(s)) => {
                    act.mirror_one(s);
                    Ok(true)
                }
                Ok(None) => {
                    act.remove(&id, "service left the shared registry");
                    Ok(false)
                }
                Err(e) => {
                    act.mark_down(&e);
                    return Err(store_error(&client, &e));
                }
            };
            act.mark_up(true);
            act.deliver(ctx);
            res
        }))
    }

    pub(super) fn deregister_shared(
        &mut self,
        id: String,
    ) -> ActorResponse<Self, Result<bool, RegistryError>> {
        let client = match self.connected() {
            Ok(c) => c,
            Err(e) => return ActorResponse::reply(Err(e)),
        };
        let fut = {
            let (client, id) = (Rc::clone(&client), id.clone());
            async move { client.deregister(&id).await }
        };
        ActorResponse::r#async(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(known) => {
                act.mark_up(true);
                act.remove(&id, "service deregistered");
                act.deliver(ctx);
                Ok(known)
            }
            Err(e) => {
                act.mark_down(&e);
                Err(store_error(&client, &e))
            }
        }))
    }
}

/// The change feed: a message names an id whose record is fetched; a (re)subscription
/// resynchronises everything (messages may have been missed meanwhile).
impl StreamHandler<SubEvent> for RegistryActor {
    fn handle(&mut self, ev: SubEvent, ctx: &mut Context<Self>) {
        match ev {
            SubEvent::Subscribed => self.resync(ctx),
            SubEvent::Lost(why) => self.mark_down(&StoreError::Down(why)),
            SubEvent::Message(payload) => {
                let (Some(client), Ok(id)) = (self.client(), String::from_utf8(payload)) else {
                    return;
                };
                let fut = {
                    let id = id.clone();
                    async move { client.fetch(&id).await }
                };
                ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                    match res {
                        Ok(Some(s)) => act.mirror_one(s),
                        Ok(None) => {
                            act.remove(&id, "service left the shared registry");
                        }
                        Err(e) => act.mark_down(&e),
                    }
                    act.publish_size();
                    act.deliver(ctx);
                }));
            }
        }
    }

    /// The feed never ends while the actor lives; if it does, the resync timer goes on.
    fn finished(&mut self, _: &mut Context<Self>) {}
}
