//! Per-worker pool of idle upstream connections, keyed by backend address. Each actix-web
//! worker owns one (it is `!Send`, like the connections in it), so checkout and checkin are a
//! `RefCell` borrow and a `Vec` push/pop: no lock, no cross-thread wake-up. Bounded by
//! `tcpPool.maxIdle` per backend; `idleTimeout` and `maxLifetime` are checked on checkout and
//! by a sweep that closes connections idle for too long.

use gogate_actors::snapshot::PoolSettings;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A connection with its birth time (for `maxLifetime`).
pub struct PooledConn {
    pub stream: TcpStream,
    pub created: Instant,
    /// True when it came from the pool (a failure before any response byte may be staleness).
    pub reused: bool,
}

struct Idle {
    stream: TcpStream,
    created: Instant,
    since: Instant,
    idle_timeout: Duration,
}

/// Idle connections per backend address.
#[derive(Default)]
pub struct ConnPool {
    idle: RefCell<HashMap<String, Vec<Idle>>>,
}

impl ConnPool {
    /// The most recently used live connection to `addr`, if any; with `max_idle`, only one idle
    /// for less than that (older ones stay pooled for requests that may take them).
    pub fn checkout(
        &self,
        addr: &str,
        settings: &PoolSettings,
        max_idle: Option<Duration>,
    ) -> Option<PooledConn> {
        if !settings.enabled {
            return None;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(addr)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if max_idle.is_some_and(|limit| now.duration_since(c.since) >= limit) {
                // The newest left is too old for this request; the older ones are older still.
                list.push(c);
                return None;
            }
            let expired = now.duration_since(c.since) >= settings.idle_timeout
                || now.duration_since(c.created) >= settings.max_lifetime;
            if expired || !looks_alive(&c.stream) {
                continue; // dropped: closed
            }
            return Some(PooledConn {
                stream: c.stream,
                created: c.created,
                reused: true,
            });
        }
        None
    }

    /// Returns a connection whose exchange completed cleanly.
    pub fn checkin(&self, addr: &str, conn: TcpStream, created: Instant, settings: &PoolSettings) {
        if !settings.enabled || settings.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        if now.duration_since(created) >= settings.max_lifetime {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() >= settings.max_idle as usize {
            // Keep the newest: the oldest is the likeliest to be closed by the upstream soon.
            list.remove(0);
        }
        list.push(Idle {
            stream: conn,
            created,
            since: now,
            idle_timeout: settings.idle_timeout,
        });
    }

    /// Closes connections idle past their timeout; drops empty entries.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        idle.retain(|_, list| {
            list.retain(|c| now.duration_since(c.since) < c.idle_timeout && looks_alive(&c.stream));
            !list.is_empty()
        });
    }

    /// Idle connections held (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// An idle connection must have nothing to read: data or EOF means the upstream closed it (or
/// broke protocol), so it cannot carry another request.
fn looks_alive(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
