//! Upstream HTTP clients. `awc::Client` is per worker thread (it is `!Send` and its connection
//! pool is per thread), so each actix-web worker keeps its own small cache of clients, one per
//! distinct upstream pool setting (`tcpPool` + connect timeout). Almost every config has one.

use awc::{Client, Connector};
use gogate_actors::snapshot::PoolSettings;
use std::cell::RefCell;
use std::time::Duration;

/// Per-worker client cache (global to nothing: lives inside one worker's app data).
#[derive(Default)]
pub struct ClientCache {
    clients: RefCell<Vec<(PoolSettings, Client)>>,
}

impl ClientCache {
    /// The client for these pool settings, built on first use.
    pub fn get(&self, settings: &PoolSettings) -> Client {
        if let Some((_, c)) = self.clients.borrow().iter().find(|(s, _)| s == settings) {
            return c.clone();
        }
        let client = build(settings);
        let mut clients = self.clients.borrow_mut();
        // Bounded: settings come from config; reloads may add a few, so keep the newest 16.
        if clients.len() >= 16 {
            clients.remove(0);
        }
        clients.push((settings.clone(), client.clone()));
        client
    }
}

fn build(s: &PoolSettings) -> Client {
    let keep_alive = if s.enabled {
        s.idle_timeout
    } else {
        Duration::ZERO
    };
    let connector = Connector::new()
        .timeout(s.connect_timeout)
        .conn_keep_alive(keep_alive)
        .conn_lifetime(s.max_lifetime)
        // No per-scheme cap: client connections are bounded by limits.maxConnections.
        .limit(0);
    Client::builder()
        .connector(connector)
        .disable_redirects()
        .no_default_headers()
        .finish()
}
