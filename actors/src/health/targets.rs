//! Which backends to probe and how: each upstream's effective `health` block (its own keys over
//! `server.health`) applied to its backends. Upstreams with `enabled: false` get no probes, so
//! their backends keep the verdict they have (healthy from the start). Built from the config
//! actor's maps, so a reload can rebuild the list and hand it to `SetTargets`.

use crate::backend::actor::BackendActor;
use crate::build::BackendStates;
use crate::health::actor::HealthTarget;
use crate::health::probe::ProbeSpec;
use crate::health::tracker::Thresholds;
use actix::Addr;
use gogate_config::Config;
use std::collections::HashMap;

/// One target per backend (static or registry) of every upstream whose health checks are
/// enabled, in id order.
pub fn health_targets(
    config: &Config,
    states: &BackendStates,
    actors: &HashMap<String, Addr<BackendActor>>,
) -> Vec<HealthTarget> {
    let mut out = Vec::new();
    let mut settings = HashMap::new();
    let mut ids: Vec<&String> = states.keys().collect();
    ids.sort();
    for id in ids {
        let (Some(state), Some(actor)) = (states.get(id), actors.get(id)) else {
            continue;
        };
        let s = settings
            .entry(state.upstream.clone())
            .or_insert_with(|| config.upstream_settings(&state.upstream));
        if !s.health.enabled {
            continue;
        }
        out.push(HealthTarget {
            spec: ProbeSpec {
                addr: state.addr.clone(),
                host: state.with_host(str::to_string),
                check: s.health.check_type,
                http_path: s.health.http_path.clone(),
                timeout: s.health.timeout.get(),
            },
            interval: s.health.interval.get(),
            thresholds: Thresholds::from_config(&s.health),
            report_to: actor.clone().recipient(),
            id: id.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::state::{BackendState, Source};
    use crate::build::backend_id;
    use gogate_config::CheckType;
    use std::time::Duration;

    #[actix_rt::test]
    async fn upstream_overrides_inherit_server_health_and_disabled_upstreams_get_no_probes() {
        let yaml = "server:\n  backends: [{addr: \"127.0.0.1:9001\"}]\n  health: {interval: 3s, timeout: 1s, unhealthyThreshold: 4}\nupstreams:\n  api:\n    backends: [{addr: \"127.0.0.1:9002\"}]\n    health: {checkType: http, httpPath: /hz}\n  quiet:\n    backends: [{addr: \"127.0.0.1:9003\"}]\n    health: {enabled: false}\n";
        let config = gogate_config::load_str(yaml, None).expect("valid config");
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let (mut states, mut actors) = (BackendStates::new(), HashMap::new());
        for name in config.upstream_names() {
            for b in config.upstream_settings(&name).backends {
                let state = BackendState::new(&name, &b.addr, b.weight, Source::Static);
                let actor = actix::Actor::start(BackendActor::new(state.clone(), &log));
                actors.insert(backend_id(&name, &b.addr), actor);
                states.insert(backend_id(&name, &b.addr), state);
            }
        }
        let mut targets = health_targets(&config, &states, &actors);
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["api/127.0.0.1:9002", "default/127.0.0.1:9001"]);

        let (api, default) = (&targets[0], &targets[1]);
        assert_eq!(default.spec.check, CheckType::Tcp);
        assert_eq!(api.spec.check, CheckType::Http);
        assert_eq!(api.spec.http_path, "/hz");
        for t in [api, default] {
            assert_eq!(t.interval, Duration::from_secs(3), "{}", t.id);
            assert_eq!(t.spec.timeout, Duration::from_secs(1), "{}", t.id);
            assert_eq!(
                t.thresholds,
                Thresholds {
                    unhealthy: 4,
                    healthy: 2
                },
                "{}",
                t.id
            );
        }
    }
}
