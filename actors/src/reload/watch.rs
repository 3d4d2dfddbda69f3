//! Watches the configuration file's *directory* with `notify` (editors replace files by atomic
//! rename and Kubernetes swaps a ConfigMap's `..data` symlink: watching the file itself would
//! lose track of it), debounces bursts of events and tells the config actor "the file may have
//! changed". The actor then reads the file through its path (following symlinks) and reloads only
//! when a hash of the bytes differs. Runs on its own threads; never blocks an actor.

use crate::config_actor::{ConfigActor, FileChanged};
use actix::Addr;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use slog::{info, warn, Logger};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Quiet time after the last event before the actor is told (an editor's save is a burst).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops watching (and ends the debounce thread).
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

/// Starts watching the directory of `file`; `None` (after a warning) when that fails, since
/// `SIGHUP` and `POST /reload` still work.
pub fn watch(file: &Path, actor: Addr<ConfigActor>, log: &Logger) -> Option<FileWatch> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let (tx, rx) = mpsc::channel::<()>();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!(log, "configuration file watcher unavailable"; "error" => %e);
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        warn!(log, "cannot watch the configuration directory";
              "dir" => %dir.display(), "error" => %e);
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("gogate-config-watch".into())
        .spawn(move || debounce(rx, actor));
    if let Err(e) = spawned {
        warn!(log, "cannot start the configuration watcher thread"; "error" => %e);
        return None;
    }
    info!(log, "watching the configuration directory"; "dir" => %dir.display());
    Some(FileWatch { _watcher: watcher })
}

/// Waits for an event, then for `DEBOUNCE` of quiet, then notifies. Ends when the watcher is
/// dropped (the channel closes).
fn debounce(rx: mpsc::Receiver<()>, actor: Addr<ConfigActor>) {
    while rx.recv().is_ok() {
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        // A full mailbox already holds a pending notification: dropping this one loses nothing.
        let _ = actor.try_send(FileChanged);
    }
}
