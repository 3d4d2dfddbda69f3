//! One L4 session: choose a backend from the published snapshot, connect (trying the next
//! eligible backend on failure), then relay bytes both ways. Each direction forwards its FIN
//! separately (half-close). Reads go through one reusable per-thread buffer and are written
//! straight on; only bytes the peer cannot take at once are copied into a per-session `Vec`,
//! which is freed as soon as it drains. An idle session therefore pins no copy buffer.

use super::connect::{connect_eligible, Connected};
use crate::backend::state::BackendState;
use crate::snapshot::SnapshotCell;
use crate::stats::Stats;
use slog::{debug, Logger};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// What a session needs besides its sockets (shared by every session of a listener).
pub struct SessionContext {
    pub cell: SnapshotCell,
    pub stats: Arc<Stats>,
    pub log: Logger,
}

/// Serves one accepted client connection to completion.
pub async fn serve(client: TcpStream, peer: SocketAddr, ctx: &SessionContext) {
    let started = Instant::now();
    let snap = ctx.cell.load();
    let tcp = &snap.tcp;
    let up = &tcp.upstream;
    let connected = connect_eligible(up, &tcp.counters, |i, why| {
        debug!(ctx.log, "tcp connect failed"; "backend" => up.backends[i].addr.as_str(), "error" => format!("{why:?}"));
    })
    .await;
    let Connected {
        index: i,
        stream: server,
        guard,
    } = match connected {
        Ok(c) => c,
        Err(why) => {
            debug!(ctx.log, "tcp session rejected: no backend reachable";
                "client_ip" => peer.ip().to_string(), "reason" => format!("{why:?}"));
            ctx.stats
                .record_request(false, started.elapsed().as_micros() as u64);
            return;
        }
    };
    let backend = &up.backends[i];
    // For L4 only a connect failure counts against the breaker: report the success now, so a
    // half-open probe does not wait for a long session to end.
    up.record_outcome(&guard, true);
    let _ = client.set_nodelay(true);
    let (sent, received, result) = relay(&client, &server, up.timeouts.idle.get(), backend).await;
    if result
        .as_ref()
        .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut)
    {
        snap.idle_timeouts.tcp.inc();
    }
    tcp.counters[i].success.inc();
    let elapsed = started.elapsed();
    tcp.metrics.observe_duration(elapsed.as_secs_f64());
    ctx.stats.record_request(true, elapsed.as_micros() as u64);
    debug!(ctx.log, "tcp session closed";
        "client_ip" => peer.ip().to_string(), "backend" => backend.addr.as_str(),
        "bytes_in" => sent, "bytes_out" => received, "duration_ms" => elapsed.as_millis() as u64,
        "end" => match &result { Ok(()) => "closed".to_string(), Err(e) => e.to_string() });
}

/// Relays until both directions have closed, an error, or `idle` without traffic.
/// Returns (bytes client→backend, bytes backend→client, how it ended).
async fn relay(
    client: &TcpStream,
    server: &TcpStream,
    idle: Duration,
    backend: &BackendState,
) -> (u64, u64, io::Result<()>) {
    let activity = Cell::new(0u64);
    let sent = Cell::new(0u64);
    let received = Cell::new(0u64);
    let up = pump(client, server, &activity, |n| {
        sent.set(sent.get() + n);
        backend.add_bytes(n, 0);
    });
    let down = pump(server, client, &activity, |n| {
        received.set(received.get() + n);
        backend.add_bytes(0, n);
    });
    let result = tokio::select! {
        r = futures_util::future::try_join(up, down) => r.map(|_| ()),
        _ = idle_watch(&activity, idle) => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    };
    (sent.get(), received.get(), result)
}

enum Step {
    Eof,
    Done,
    Pending,
    Spurious,
}

/// Copies `from` → `to` until EOF, then half-closes `to`.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    activity: &Cell<u64>,
    count: impl Fn(u64),
) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        from.readable().await?;
        let step = READ_BUF.with(|buf| -> io::Result<Step> {
            let mut buf = buf.borrow_mut();
            let n = match from.try_read(&mut buf[..]) {
                Ok(0) => return Ok(Step::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Spurious),
                Err(e) => return Err(e),
            };
            count(n as u64);
            activity.set(activity.get() + 1);
            match to.try_write(&buf[..n]) {
                Ok(w) if w == n => Ok(Step::Done),
                Ok(w) => {
                    pending.extend_from_slice(&buf[w..n]);
                    Ok(Step::Pending)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pending.extend_from_slice(&buf[..n]);
                    Ok(Step::Pending)
                }
                Err(e) => Err(e),
            }
        })?;
        match step {
            Step::Eof => {
                // Forward the FIN; the other direction keeps flowing.
                let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
                return Ok(());
            }
            Step::Pending => {
                while !pending.is_empty() {
                    to.writable().await?;
                    match to.try_write(&pending) {
                        Ok(w) => {
                            pending.drain(..w);
                            activity.set(activity.get() + 1);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                pending = Vec::new();
            }
            Step::Done | Step::Spurious => {}
        }
    }
}

/// Completes once `activity` has not changed for `idle` (checked in quarter steps).
async fn idle_watch(activity: &Cell<u64>, idle: Duration) {
    let step = (idle / 4).max(Duration::from_millis(10));
    let mut last = activity.get();
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(step).await;
        let now = activity.get();
        if now == last {
            quiet += step;
            if quiet >= idle {
                return;
            }
        } else {
            last = now;
            quiet = Duration::ZERO;
        }
    }
}
