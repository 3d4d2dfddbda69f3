//! Watches the configuration file's *directory* with `notify` (editors replace files by atomic
//! rename and Kubernetes swaps a ConfigMap's `..data` symlink: watching the file itself would
//! lose track of it), debounces bursts of events and tells the config actor "the file may have
//! changed". The actor then reads the file through its path (following symlinks) and reloads only
//! when a hash of the bytes differs. Runs on its own threads; never blocks an actor.
//!
//! Only events that name the configuration file, the file its symlink points to in the same
//! directory, or the `..data` link count: a log written beside the config (`gogate -config
//! ./gw.yaml > ./gw.log`) must not keep restarting the quiet period. And a burst of relevant
//! events (an editor saving every keystroke) postpones the notification by at most
//! [`MAX_DELAY`] after its first event.
//!
//! The directories of the TLS certificate and key files are watched the same way (filtered to
//! those files, their symlink targets and `..data`, as Kubernetes Secret volumes swap them):
//! a change there asks for a full reload even when the configuration's bytes did not change,
//! since every reload loads the certificates again.

use crate::config_actor::{ConfigActor, FileChanged};
use crate::reload::Reload;
use actix::Addr;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use prometheus::IntCounter;
use slog::{info, warn, Logger};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Quiet time after the last event before the actor is told (an editor's save is a burst).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Longest wait from the first event of a burst to the notification, however long it lasts.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// The name Kubernetes gives the symlink it swaps when a ConfigMap volume changes.
const CONFIGMAP_DATA: &str = "..data";

/// Keeps the watch alive; dropping it stops watching (and ends the debounce thread).
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

/// The directory entries whose changes may change the configuration's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relevant {
    names: Vec<OsString>,
}

impl Relevant {
    /// The file's own name, `..data`, and, when the file is a symlink to a file of the same
    /// directory, that file's name (editing the target in place changes the configuration too).
    fn of(file: &Path, dir: &Path) -> Relevant {
        let mut names: Vec<OsString> = file.file_name().map(OsString::from).into_iter().collect();
        names.push(OsString::from(CONFIGMAP_DATA));
        if let Ok(target) = std::fs::read_link(file) {
            let target = if target.is_relative() {
                dir.join(target)
            } else {
                target
            };
            if target.parent() == Some(dir) || target.parent() == Some(Path::new("")) {
                names.extend(target.file_name().map(OsString::from));
            }
        }
        Relevant { names }
    }

    fn matches(&self, event: &notify::Event) -> bool {
        !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| self.names.iter().any(|r| r.as_os_str() == n))
            })
    }

    /// Like `matches`, for entries of `dir` only (certificate directories are told apart from
    /// the configuration's, which may hold a file of the same name).
    fn matches_in(&self, dir: &Path, event: &notify::Event) -> bool {
        !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| {
                p.parent() == Some(dir)
                    && p.file_name()
                        .is_some_and(|n| self.names.iter().any(|r| r.as_os_str() == n))
            })
    }
}

/// The directory of `file` (`.` for a bare name).
fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The certificate files grouped by directory, each with the names that matter in it.
fn cert_dirs(certs: &[PathBuf]) -> Vec<(PathBuf, Relevant)> {
    let mut dirs: Vec<(PathBuf, Relevant)> = Vec::new();
    for cert in certs {
        let dir = dir_of(cert);
        let rel = Relevant::of(cert, &dir);
        match dirs.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, r)) => r.names.extend(rel.names),
            None => dirs.push((dir, rel)),
        }
    }
    dirs
}

/// Starts watching the directory of `file` and those of the certificate files `certs`;
/// `None` (after a warning) when the configuration's directory cannot be watched, since
/// `SIGHUP` and `POST /reload` still work.
pub fn watch(
    file: &Path,
    certs: &[PathBuf],
    actor: Addr<ConfigActor>,
    dropped: IntCounter,
    log: &Logger,
) -> Option<FileWatch> {
    let dir = dir_of(file);
    let relevant = Relevant::of(file, &dir);
    let cert_dirs = cert_dirs(certs);
    let extra_dirs: Vec<PathBuf> = cert_dirs.iter().map(|(d, _)| d.clone()).collect();
    // Set by the watcher when a certificate file changed, taken when the burst is notified.
    let certs_changed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&certs_changed);
    let (tx, rx) = mpsc::channel::<()>();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            let cert = cert_dirs.iter().any(|(d, r)| r.matches_in(d, &ev));
            if cert {
                flag.store(true, Ordering::Release);
            }
            if cert || relevant.matches(&ev) {
                let _ = tx.send(());
            }
        }
        // The watcher lost events (queue overflow): the files may have changed unseen.
        Err(_) => {
            flag.store(true, Ordering::Release);
            let _ = tx.send(());
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
    for d in extra_dirs.iter().filter(|d| **d != dir) {
        match watcher.watch(d, RecursiveMode::NonRecursive) {
            Ok(()) => info!(log, "watching a certificate directory"; "dir" => %d.display()),
            Err(e) => {
                warn!(log, "cannot watch a certificate directory (reload to pick up new certificates)";
                            "dir" => %d.display(), "error" => %e)
            }
        }
    }
    let spawned = std::thread::Builder::new()
        .name("gogate-config-watch".into())
        .spawn(move || {
            debounce(&rx, DEBOUNCE, MAX_DELAY, || {
                // A full mailbox is busy with other work; the next event (or `POST /reload`)
                // checks the files again. Counted, so an operator can tell.
                let sent = if certs_changed.swap(false, Ordering::AcqRel) {
                    // The configuration may be unchanged: a full reload loads the certificates.
                    actor
                        .try_send(Reload {
                            trigger: "certificates",
                        })
                        .is_ok()
                } else {
                    actor.try_send(FileChanged).is_ok()
                };
                if !sent {
                    dropped.inc();
                }
            })
        });
    if let Err(e) = spawned {
        warn!(log, "cannot start the configuration watcher thread"; "error" => %e);
        return None;
    }
    info!(log, "watching the configuration directory"; "dir" => %dir.display());
    Some(FileWatch { _watcher: watcher })
}

/// Waits for an event, then for `quiet` without one (but no longer than `max` after the first),
/// then calls `notify`. Returns when the sender is dropped (the watcher stopped).
fn debounce(rx: &mpsc::Receiver<()>, quiet: Duration, max: Duration, mut notify: impl FnMut()) {
    while rx.recv().is_ok() {
        let deadline = Instant::now() + max;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(quiet.min(left)) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    notify();
                    return;
                }
            }
        }
        notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut ev = notify::Event::new(kind);
        for p in paths {
            ev = ev.add_path(PathBuf::from(p));
        }
        ev
    }

    #[test]
    fn only_the_config_file_and_the_configmap_link_are_relevant() {
        let r = Relevant::of(Path::new("/etc/gw/gw.yaml"), Path::new("/etc/gw"));
        let data = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
        assert!(!r.matches(&event(data, &["/etc/gw/gw.log"])));
        assert!(!r.matches(&event(data, &["/etc/gw/.gw.yaml.swp"])));
        assert!(r.matches(&event(data, &["/etc/gw/gw.yaml"])));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(r.matches(&event(rename, &["/etc/gw/gw.yaml.tmp1", "/etc/gw/gw.yaml"])));
        assert!(r.matches(&event(rename, &["/etc/gw/..data_tmp", "/etc/gw/..data"])));
        let create = EventKind::Create(CreateKind::File);
        assert!(!r.matches(&event(create, &["/etc/gw/gw.yaml.tmp1"])));
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(!r.matches(&event(read, &["/etc/gw/gw.yaml"])));
    }

    #[test]
    fn certificate_files_count_only_in_their_own_directory() {
        let certs = [
            PathBuf::from("/etc/tls/a.crt"),
            PathBuf::from("/etc/tls/a.key"),
            PathBuf::from("/srv/b.crt"),
        ];
        let dirs = cert_dirs(&certs);
        assert_eq!(dirs.len(), 2);
        let (dir, rel) = &dirs[0];
        assert_eq!(dir, Path::new("/etc/tls"));
        let data = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
        assert!(rel.matches_in(dir, &event(data, &["/etc/tls/a.key"])));
        assert!(rel.matches_in(dir, &event(data, &["/etc/tls/..data"])));
        assert!(!rel.matches_in(dir, &event(data, &["/etc/gw/a.key"])));
        assert!(!rel.matches_in(dir, &event(data, &["/etc/tls/other.pem"])));
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(!rel.matches_in(dir, &event(read, &["/etc/tls/a.crt"])));
    }

    #[test]
    fn a_symlink_target_in_the_same_directory_is_relevant() {
        let dir = std::env::temp_dir().join(format!("gogate-watch-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::os::unix::fs::symlink("real-v2.yaml", dir.join("gw.yaml")).expect("symlink");
        let r = Relevant::of(&dir.join("gw.yaml"), &dir);
        let _ = std::fs::remove_dir_all(&dir);
        let data = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
        let target = dir.join("real-v2.yaml");
        let ev = notify::Event::new(data).add_path(target);
        assert!(r.matches(&ev));
    }

    #[test]
    fn a_steady_burst_is_notified_within_the_max_delay() {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        // Events every 10 ms for 3 s: the quiet period (200 ms) never comes.
        let sender = std::thread::spawn(move || {
            for _ in 0..300 {
                if tx.send(()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let mut notified = Vec::new();
        debounce(&rx, DEBOUNCE, MAX_DELAY, || notified.push(start.elapsed()));
        sender.join().expect("sender thread");
        let first = notified.first().expect("notified during the burst");
        assert!(
            *first < Duration::from_millis(2500),
            "first notification after {first:?}, burst lasted 3 s"
        );
        assert!(notified.len() >= 2, "a long burst notifies more than once");
    }

    #[test]
    fn a_single_event_is_notified_after_the_quiet_period() {
        let (tx, rx) = mpsc::channel();
        tx.send(()).expect("send");
        drop(tx);
        let mut n = 0;
        debounce(&rx, Duration::from_millis(20), MAX_DELAY, || n += 1);
        assert_eq!(n, 1);
    }
}
