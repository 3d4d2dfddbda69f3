//! The registry's state as a pure, bounded map with injected time: register (new or update),
//! heartbeat, deregister and expiry. A service expires `ttl` after its last heartbeat (a
//! registration counts as one); the actor calls [`ServiceStore::expire`] every
//! `cleanupInterval` and before each operation, so removal is never later than one interval.

use super::spec::ServiceSpec;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

/// One registered service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub address: String,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub weight: u32,
    pub ttl: Duration,
    pub registered_at: SystemTime,
    pub last_heartbeat: SystemTime,
    /// Monotonic deadline: last heartbeat + ttl.
    pub expires_at: Instant,
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    Created(Service),
    Updated(Service),
}

impl Registration {
    pub fn service(&self) -> &Service {
        match self {
            Registration::Created(s) | Registration::Updated(s) => s,
        }
    }
}

/// `maxServices` is reached; only updates of existing ids are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub max: usize,
}

/// The services map (bounded by `max_services`).
pub struct ServiceStore {
    services: HashMap<String, Service>,
    default_ttl: Duration,
    max_services: usize,
}

/// A 128-bit random id as 32 lowercase hex digits.
pub fn generate_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

impl ServiceStore {
    pub fn new(default_ttl: Duration, max_services: usize) -> Self {
        ServiceStore {
            services: HashMap::new(),
            default_ttl,
            max_services,
        }
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    pub fn max_services(&self) -> usize {
        self.max_services
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Registers a new service or updates the one with the spec's id (keeping its
    /// `registered_at`); either way the registration counts as a heartbeat.
    pub fn register(
        &mut self,
        spec: ServiceSpec,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Registration, Full> {
        let existing = spec.id.as_ref().and_then(|id| self.services.get(id));
        if existing.is_none() && self.is_full() {
            return Err(Full {
                max: self.max_services,
            });
        }
        let registered_at = existing.map_or(wall, |s| s.registered_at);
        let updated = existing.is_some();
        let id = spec.id.unwrap_or_else(|| loop {
            let id = generate_id();
            if !self.services.contains_key(&id) {
                break id;
            }
        });
        let ttl = spec.ttl.unwrap_or(self.default_ttl);
        let service = Service {
            id: id.clone(),
            name: spec.name,
            address: spec.address,
            tags: spec.tags,
            metadata: spec.metadata,
            weight: spec.weight,
            ttl,
            registered_at,
            last_heartbeat: wall,
            expires_at: now + ttl,
        };
        self.services.insert(id, service.clone());
        Ok(if updated {
            Registration::Updated(service)
        } else {
            Registration::Created(service)
        })
    }

    /// Extends the service's life by its ttl from `now`; `false` if unknown.
    pub fn heartbeat(&mut self, id: &str, now: Instant, wall: SystemTime) -> bool {
        match self.services.get_mut(id) {
            Some(s) => {
                s.last_heartbeat = wall;
                s.expires_at = now + s.ttl;
                true
            }
            None => false,
        }
    }

    pub fn deregister(&mut self, id: &str) -> Option<Service> {
        self.services.remove(id)
    }

    /// Removes and returns every service whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Service> {
        let ids: Vec<String> = self
            .services
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| self.services.remove(id))
            .collect()
    }

    /// Removes and returns this one service if its deadline is at or before `now` (O(1), for
    /// the per-id operations; the full sweep is [`ServiceStore::expire`]).
    pub fn expire_id(&mut self, id: &str, now: Instant) -> Option<Service> {
        let due = self.services.get(id)?.expires_at <= now;
        due.then(|| self.services.remove(id)).flatten()
    }

    /// Whether a new id would be refused.
    pub fn is_full(&self) -> bool {
        self.services.len() >= self.max_services
    }

    pub fn get(&self, id: &str) -> Option<&Service> {
        self.services.get(id)
    }

    /// Puts a service as another replica made it (the cluster store's copy, with its own
    /// times); `true` when it is new or its routing changed (name, address, weight).
    pub fn mirror(&mut self, service: Service) -> bool {
        let changed = self.services.get(&service.id).is_none_or(|old| {
            (&old.name, &old.address, old.weight)
                != (&service.name, &service.address, service.weight)
        });
        self.services.insert(service.id.clone(), service);
        changed
    }

    /// Ids held now.
    pub fn ids(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// Services matching the optional name and tag, ordered by name then id.
    pub fn list(&self, name: Option<&str>, tag: Option<&str>) -> Vec<Service> {
        let mut out: Vec<Service> = self
            .services
            .values()
            .filter(|s| name.is_none_or(|n| s.name == n))
            .filter(|s| tag.is_none_or(|t| s.tags.iter().any(|x| x == t)))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn spec(id: Option<&str>, name: &str, ttl_ms: Option<u64>) -> ServiceSpec {
        let mut s = ServiceSpec::new(name, "127.0.0.1:9001");
        s.id = id.map(str::to_string);
        s.ttl = ttl_ms.map(MS);
        s
    }

    fn store() -> ServiceStore {
        ServiceStore::new(Duration::from_secs(30), 3)
    }

    #[test]
    fn expiry_is_precise_to_within_the_cleanup_interval() {
        let mut st = store();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        st.register(spec(Some("a"), "api", Some(300)), t0, w0)
            .unwrap();
        // Cleanup ticks every 50 ms: the service is gone on the first tick at or after 300 ms.
        let interval = MS(50);
        let mut removed_at = None;
        for tick in 1..=10u32 {
            let now = t0 + interval * tick;
            if !st.expire(now).is_empty() {
                removed_at = Some(now - t0);
                break;
            }
        }
        let at = removed_at.expect("expired");
        assert!(at >= MS(300) && at < MS(300) + interval, "{at:?}");
        assert!(st.expire(t0 + MS(299)).is_empty());
    }

    #[test]
    fn default_ttl_applies_without_a_ttl() {
        let mut st = store();
        let t0 = Instant::now();
        let r = st
            .register(spec(None, "api", None), t0, SystemTime::now())
            .unwrap();
        assert_eq!(r.service().ttl, Duration::from_secs(30));
        assert!(st.expire(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(st.expire(t0 + Duration::from_secs(30)).len(), 1);
    }

    #[test]
    fn heartbeat_extends_life_and_unknown_ids_fail() {
        let mut st = store();
        let t0 = Instant::now();
        st.register(spec(Some("a"), "api", Some(300)), t0, SystemTime::now())
            .unwrap();
        assert!(st.heartbeat("a", t0 + MS(200), SystemTime::now()));
        assert!(
            st.expire(t0 + MS(450)).is_empty(),
            "heartbeat at 200 ms lives to 500 ms"
        );
        assert_eq!(st.expire(t0 + MS(500)).len(), 1);
        assert!(!st.heartbeat("a", t0 + MS(600), SystemTime::now()));
        assert!(!st.heartbeat("nope", t0, SystemTime::now()));
    }

    #[test]
    fn expire_id_removes_only_a_due_service() {
        let mut st = store();
        let t0 = Instant::now();
        st.register(spec(Some("a"), "api", Some(300)), t0, SystemTime::now())
            .unwrap();
        assert!(st.expire_id("a", t0 + MS(299)).is_none());
        assert!(st.expire_id("nope", t0 + MS(300)).is_none());
        assert_eq!(
            st.expire_id("a", t0 + MS(300)).map(|s| s.id).as_deref(),
            Some("a")
        );
        assert!(st.is_empty());
    }

    #[test]
    fn registering_an_existing_id_updates_it() {
        let mut st = store();
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let first = st
            .register(spec(Some("a"), "api", Some(300)), t0, w0)
            .unwrap();
        assert!(matches!(first, Registration::Created(_)));
        let w1 = w0 + MS(100);
        let mut s = spec(Some("a"), "web", Some(1000));
        s.address = "10.0.0.2:80".into();
        let second = st.register(s, t0 + MS(100), w1).unwrap();
        let Registration::Updated(svc) = second else {
            panic!("expected an update")
        };
        assert_eq!(
            (svc.name.as_str(), svc.address.as_str()),
            ("web", "10.0.0.2:80")
        );
        assert_eq!((svc.registered_at, svc.last_heartbeat), (w0, w1));
        assert_eq!(st.len(), 1);
        assert!(
            st.expire(t0 + MS(1000)).is_empty(),
            "new ttl counts from the update"
        );
    }

    #[test]
    fn max_services_refuses_new_ids_only() {
        let mut st = store();
        let (t, w) = (Instant::now(), SystemTime::now());
        for id in ["a", "b", "c"] {
            st.register(spec(Some(id), "api", None), t, w).unwrap();
        }
        assert_eq!(
            st.register(spec(Some("d"), "api", None), t, w),
            Err(Full { max: 3 })
        );
        assert_eq!(
            st.register(spec(None, "api", None), t, w),
            Err(Full { max: 3 })
        );
        assert!(st.register(spec(Some("b"), "web", None), t, w).is_ok());
        st.deregister("a").unwrap();
        assert!(st.register(spec(Some("d"), "api", None), t, w).is_ok());
    }

    #[test]
    fn generated_ids_are_32_hex_chars_and_unique() {
        let mut st = ServiceStore::new(Duration::from_secs(30), 10_000);
        let (t, w) = (Instant::now(), SystemTime::now());
        let mut seen = HashSet::new();
        for _ in 0..5000 {
            let r = st.register(spec(None, "api", None), t, w).unwrap();
            let id = r.service().id.clone();
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert!(seen.insert(id));
        }
        assert_eq!(st.len(), 5000);
    }

    #[test]
    fn list_filters_by_name_and_tag() {
        let mut st = ServiceStore::new(Duration::from_secs(30), 10);
        let (t, w) = (Instant::now(), SystemTime::now());
        for (id, name, tags) in [
            ("1", "api", vec!["v1"]),
            ("2", "api", vec!["v2"]),
            ("3", "web", vec!["v2"]),
        ] {
            let mut s = spec(Some(id), name, None);
            s.tags = tags.into_iter().map(String::from).collect();
            st.register(s, t, w).unwrap();
        }
        let ids = |v: Vec<Service>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(st.list(None, None)), ["1", "2", "3"]);
        assert_eq!(ids(st.list(Some("api"), None)), ["1", "2"]);
        assert_eq!(ids(st.list(None, Some("v2"))), ["2", "3"]);
        assert_eq!(ids(st.list(Some("api"), Some("v2"))), ["2"]);
        assert!(st.list(Some("nope"), None).is_empty());
    }
}
