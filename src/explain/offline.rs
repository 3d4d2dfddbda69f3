//! `gogate explain -config FILE`: the snapshot the gateway would publish when it starts with
//! FILE, built by the same code (`ConfigActor::with_dns`, which runs `build_snapshot`) without
//! starting any listener, probe or DNS lookup: every backend is healthy, undrained and closed,
//! as at start, and backend host names stay unresolved (CI pipelines checking a routing change
//! must not depend on DNS; the answer lists them under `unresolved`).

use super::{explain, ExplainRequest, Explanation};
use gogate_actors::dns::DnsTable;
use gogate_actors::{ConfigActor, Metrics, SystemResolver};
use gogate_config::{load_file, ConfigErrors};
use std::path::Path;
use std::sync::Arc;

/// Loads `path` (every error of the file reported, as `gogate validate` does) and explains
/// `req` against it.
pub fn explain_file(path: &Path, req: &ExplainRequest) -> Result<Explanation, ConfigErrors> {
    let config = load_file(path)?;
    let file = path.to_path_buf();
    // The backend and health actors the config actor creates need a running system; they are
    // dropped with it, before any of their timers fires.
    let system = actix_rt::System::new();
    Ok(system.block_on(async move {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let actor = ConfigActor::with_dns(
            config,
            Some(file),
            Metrics::new(),
            &log,
            Arc::new(SystemResolver),
            DnsTable::default(),
        );
        explain(&actor.cell().load(), req)
    }))
}
