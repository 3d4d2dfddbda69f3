//! Reload triggers outside the admin API: `SIGHUP` (B3, B10). Each signal sends one `Reload` to
//! the config actor, which re-reads the file; the outcome is logged there.

use actix::Addr;
use gogate_actors::config_actor::SetLogLevelHandle;
use gogate_actors::logging::LogLevelHandle;
use gogate_actors::reload::Reload;
use gogate_actors::ConfigActor;
use slog::{warn, Logger};

/// Hands the config actor the process log level (so reloads apply `logging.level`) and reloads
/// on every `SIGHUP` until the process exits.
pub fn on_sighup(actor: Addr<ConfigActor>, level: LogLevelHandle, log: Logger) {
    actor.do_send(SetLogLevelHandle(level));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Installed before returning, so a SIGHUP right after start cannot kill the process.
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!(log, "cannot install the SIGHUP handler; reload with POST /reload"; "error" => %e);
                return;
            }
        };
        actix_rt::spawn(async move {
            while hup.recv().await.is_some() {
                // The config actor logs the outcome (and counts it); nothing to add here.
                let _ = actor.send(Reload { trigger: "sighup" }).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (actor, log);
}
