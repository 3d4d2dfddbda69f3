//! A resolver for tests: maps `host:port` targets to answers the test sets and changes at will
//! (addresses of its own upstreams, or a failure), and counts the lookups it served.

use futures_util::future::BoxFuture;
use gogate_actors::Resolver;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a name answers: addresses, or a lookup error with this text.
#[derive(Debug, Clone)]
pub enum Answer {
    Addrs(Vec<SocketAddr>),
    Fail(String),
}

/// Names unknown to the map fail like NXDOMAIN.
#[derive(Default)]
pub struct MapResolver {
    answers: Mutex<HashMap<String, Answer>>,
    lookups: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
}

impl MapResolver {
    pub fn new() -> Arc<MapResolver> {
        Arc::new(MapResolver::default())
    }

    /// `target` now resolves to `addrs` (an empty list is an empty answer).
    pub fn set(&self, target: &str, addrs: &[SocketAddr]) {
        self.answers
            .lock()
            .unwrap()
            .insert(target.into(), Answer::Addrs(addrs.to_vec()));
    }

    /// Lookups of `target` fail from now on.
    pub fn fail(&self, target: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(target.into(), Answer::Fail("simulated SERVFAIL".into()));
    }

    /// Lookups of `target` so far.
    pub fn lookups(&self, target: &str) -> usize {
        self.lookups
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    /// Lookups of every name so far.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// As the trait object the gateway takes.
    pub fn dyn_arc(self: &Arc<Self>) -> Arc<dyn Resolver> {
        Arc::clone(self) as Arc<dyn Resolver>
    }
}

impl Resolver for MapResolver {
    fn lookup(&self, target: &str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        self.total.fetch_add(1, Ordering::SeqCst);
        *self
            .lookups
            .lock()
            .unwrap()
            .entry(target.to_string())
            .or_default() += 1;
        let answer = self.answers.lock().unwrap().get(target).cloned();
        let result = match answer {
            Some(Answer::Addrs(a)) => Ok(a),
            Some(Answer::Fail(e)) => Err(io::Error::other(e)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("unknown test name {target}"),
            )),
        };
        Box::pin(async move { result })
    }
}
