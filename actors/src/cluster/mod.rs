//! Shared state for several gateway replicas (DESIGN B11 "Cluster"): a small Redis client of
//! gogate's own (`resp` the wire protocol, `conn` a pipelined connection), the global token
//! bucket (`ratelimit`) and the shared registry (`registry`). With no `cluster.store` none of
//! it runs and every replica keeps its state in process.

pub mod conn;
pub mod ratelimit;
pub mod registry;
pub mod resp;

use crate::metrics::Metrics;
use conn::Target;
use gogate_config::cluster::{OnStoreDown, PASSWORD_ENV};
use gogate_config::Config;
use prometheus::IntCounter;
use std::time::Duration;

/// The cluster store as one configuration generation uses it (in the snapshot).
pub struct StoreSettings {
    pub target: Target,
    /// Bound on each operation on the request path.
    pub timeout: Duration,
    pub on_down: OnStoreDown,
    pub prefix: String,
    /// `gogate_store_errors_total{op="ratelimit"}`.
    pub ratelimit_errors: IntCounter,
    /// What makes two settings reach the same store the same way: a worker keeps its
    /// connection across reloads that do not change it.
    identity: String,
}

impl StoreSettings {
    /// `None` without `cluster.store` (or with one that did not validate).
    pub fn from_config(cfg: &Config, metrics: &Metrics) -> Option<Self> {
        let c = &cfg.cluster;
        let url = c.store_url()?;
        let password = url
            .password
            .is_none()
            .then(|| std::env::var(PASSWORD_ENV).ok())
            .flatten()
            .filter(|p| !p.is_empty());
        let ca_file = (!c.ca_file.is_empty()).then(|| std::path::PathBuf::from(&c.ca_file));
        let identity = format!(
            "{}|{:?}|{:?}|{:?}|{:?}",
            url.redacted(),
            url.password,
            url.username,
            password,
            ca_file
        );
        Some(StoreSettings {
            target: Target {
                url,
                password,
                ca_file,
            },
            timeout: c.timeout.get(),
            on_down: c.on_store_down,
            prefix: c.key_prefix.clone(),
            ratelimit_errors: metrics.store_errors.with_label_values(&["ratelimit"]),
            identity,
        })
    }

    /// Whether a connection made for `other` serves these settings.
    pub fn same_store(&self, other: &StoreSettings) -> bool {
        self.identity == other.identity && self.prefix == other.prefix
    }
}

/// Keeps `gogate_store_up` current: every second, PINGs the store the published snapshot names
/// (on a connection of its own, made again when a reload changes the store); 0 without one.
/// Runs for the life of the process.
pub async fn monitor(cell: crate::SnapshotCell, gauge: prometheus::IntGauge) {
    let mut current: Option<(std::sync::Arc<StoreSettings>, conn::Conn)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let snap = cell.load();
        let Some(store) = snap.store.clone() else {
            current = None;
            gauge.set(0);
            continue;
        };
        if !current.as_ref().is_some_and(|(s, _)| s.same_store(&store)) {
            current = Some((
                std::sync::Arc::clone(&store),
                conn::Conn::start(store.target.clone()),
            ));
        }
        let Some((_, c)) = &current else { continue };
        let ping = tokio::time::timeout(Duration::from_secs(1), c.call(&["PING"])).await;
        gauge.set(i64::from(matches!(ping, Ok(Ok(_)))));
    }
}
