//! Structured logs (DESIGN B8): slog with JSON or text to stdout behind an asynchronous drain,
//! so a request never waits on stdout. The level sits in an atomic in front of the async drain
//! (filtered records cost nothing and the level can change on reload); when the channel is full
//! records are dropped rather than blocking the data plane, and counted
//! (`gogate_log_records_dropped_total`).

use gogate_config::{LogFormat, LogLevel, LoggingConfig};
use slog::{Drain, Level, Logger, OwnedKVList, Record};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Records dropped because the log channel was full (process-wide, like the log itself).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log records dropped so far because stdout could not keep up.
pub fn dropped_records() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The asynchronous channel to the writer thread, counting what a full channel drops.
struct CountingAsync(slog_async::AsyncCore);

impl Drain for CountingAsync {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        if self.0.log(record, values).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Shared, changeable minimum level.
#[derive(Clone)]
pub struct LogLevelHandle(Arc<AtomicUsize>);

impl LogLevelHandle {
    pub fn set(&self, level: LogLevel) {
        self.0.store(to_slog(level).as_usize(), Ordering::Relaxed);
    }
}

fn to_slog(level: LogLevel) -> Level {
    match level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warning,
        LogLevel::Error => Level::Error,
    }
}

struct LevelFilter<D> {
    drain: D,
    level: Arc<AtomicUsize>,
}

impl<D: Drain> Drain for LevelFilter<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        if self.is_enabled(record.level()) {
            self.drain.log(record, values).map(Some)
        } else {
            Ok(None)
        }
    }

    #[inline]
    fn is_enabled(&self, level: Level) -> bool {
        level.as_usize() <= self.level.load(Ordering::Relaxed)
    }
}

/// A running logger: keep `guard` alive until exit so buffered lines are flushed.
pub struct Logging {
    pub logger: Logger,
    pub level: LogLevelHandle,
    pub guard: Option<slog_async::AsyncGuard>,
}

/// Builds the process logger from `logging:`.
pub fn build_logger(cfg: &LoggingConfig) -> Logging {
    let level = Arc::new(AtomicUsize::new(to_slog(cfg.level).as_usize()));
    let (async_drain, guard) = match cfg.format {
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stdout())
                .add_default_keys()
                .build()
                .fuse();
            async_from(json, CHANNEL)
        }
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(std::io::stdout());
            let text = slog_term::FullFormat::new(decorator).build().fuse();
            async_from(text, CHANNEL)
        }
    };
    let filtered = LevelFilter {
        drain: async_drain,
        level: Arc::clone(&level),
    }
    .fuse();
    Logging {
        logger: Logger::root(filtered, slog::o!()),
        level: LogLevelHandle(level),
        guard: Some(guard),
    }
}

/// Records the channel to the writer thread holds before it drops (access-log lines included).
const CHANNEL: usize = 16_384;

fn async_from<D>(drain: D, chan_size: usize) -> (CountingAsync, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (core, guard) = slog_async::AsyncCore::custom(drain)
        .chan_size(chan_size)
        .blocking(false)
        .thread_name("gogate-log".into())
        .build_with_guard();
    (CountingAsync(core), guard)
}

/// A logger that discards everything (tests, `validate`).
pub fn discard() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

/// Puts a changeable level in front of `drain` (for embedders and tests that log elsewhere than
/// stdout but still want reloads to change the level).
pub fn with_level<D>(drain: D, level: LogLevel) -> (Logger, LogLevelHandle)
where
    D: Drain<Err = slog::Never>
        + Send
        + Sync
        + std::panic::RefUnwindSafe
        + std::panic::UnwindSafe
        + 'static,
{
    let handle = Arc::new(AtomicUsize::new(to_slog(level).as_usize()));
    let filtered = LevelFilter {
        drain,
        level: Arc::clone(&handle),
    };
    (
        Logger::root(slog::IgnoreResult::new(filtered), slog::o!()),
        LogLevelHandle(handle),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Mutex;

    /// A writer stuck until the test lets it go (stdout not keeping up), reporting each line it
    /// finally writes.
    struct Stuck {
        gate: Arc<Mutex<()>>,
        written: Mutex<mpsc::Sender<String>>,
    }

    impl Drain for Stuck {
        type Ok = ();
        type Err = slog::Never;

        fn log(&self, record: &Record<'_>, _: &OwnedKVList) -> Result<(), slog::Never> {
            let _open = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(tx) = self.written.lock() {
                let _ = tx.send(record.msg().to_string());
            }
            Ok(())
        }
    }

    #[test]
    fn access_lines_a_stuck_writer_cannot_take_are_counted_as_dropped() {
        let gate = Arc::new(Mutex::new(()));
        let (tx, rx) = mpsc::channel();
        let held = gate.lock().unwrap_or_else(|e| e.into_inner());
        let (drain, guard) = async_from(
            Stuck {
                gate: Arc::clone(&gate),
                written: Mutex::new(tx),
            },
            4,
        );
        let log = Logger::root(drain.fuse(), slog::o!());
        let before = dropped_records();
        const SENT: u64 = 200;
        for i in 0..SENT {
            // The access-log line of the proxy (DESIGN B8 fields).
            slog::info!(log, "request completed"; "method" => "GET", "path" => "/", "status" => 200u16,
                "route" => "r", "backend" => "127.0.0.1:1", "request_id" => i);
        }
        let dropped = dropped_records() - before;
        drop(held);
        drop(log);
        drop(guard); // flushes what the channel held
        let written: Vec<String> = rx.try_iter().collect();
        assert!(written.iter().all(|m| m == "request completed"));
        // At most the channel (4) plus the line the writer was stuck on got through.
        assert!(written.len() <= 5, "written {}", written.len());
        assert!(!written.is_empty());
        // Every line is either written or counted (the counter is process-wide: other tests may
        // add to it, never take from it).
        assert!(
            dropped >= SENT - written.len() as u64,
            "dropped {dropped}, written {}",
            written.len()
        );
    }
}
