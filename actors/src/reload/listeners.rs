//! Live listener changes (B3: "new listeners start, old ones drain"). The config actor does not
//! own the listeners: the binary's listener manager does. A reload that changes
//! `server.listenAddr`, `server.httpListenAddr` or `server.tls` (its address, or enabling it)
//! asks it, through the recipient registered with
//! [`SetListenerSink`], to bind and start the new listener and drain the old one *before* the new
//! snapshot is swapped in. A bind failure fails the whole reload (the old config keeps serving).

use actix::prelude::*;
use gogate_config::Config;
use std::time::Duration;

/// Command to the listener manager: move (or enable, or disable) the data-plane listeners, and
/// move the admin and metrics listeners that run. `Some(addr)` = this listener changes to `addr`
/// (`""` = disabled, for `tcp` and `http` only); `None` = unchanged.
/// Replies once the new listeners accept (old ones drain in the background for up to `drain`),
/// or with an error naming the key and address when nothing was changed.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<(), String>")]
pub struct ApplyListeners {
    pub tcp: Option<String>,
    pub http: Option<String>,
    /// The HTTPS listener (`server.tls.listenAddr` while `server.tls.enabled`, else `""`).
    pub tls: Option<String>,
    pub admin: Option<String>,
    pub metrics: Option<String>,
    pub drain: Duration,
}

/// Whether the admin and metrics endpoints share one listener in `c` (then they move only with
/// a restart).
pub fn control_shared(c: &Config) -> bool {
    let s = &c.server;
    s.admin.enabled && s.metrics.enabled && s.metrics.listen_addr == s.admin.listen_addr
}

impl ApplyListeners {
    /// What must change to go from `old` to `new` (`None` when no listener address changed).
    /// The admin and metrics listeners move only when they did not share one at `boot`, and
    /// never to `""`.
    pub fn between(boot: &Config, old: &Config, new: &Config) -> Option<ApplyListeners> {
        let (o, n) = (&old.server, &new.server);
        let changed = |a: &String, b: &String| (a != b).then(|| b.clone());
        let control = |a: &String, b: &String| {
            (!control_shared(boot) && !b.is_empty())
                .then(|| changed(a, b))
                .flatten()
        };
        let msg = ApplyListeners {
            tcp: changed(&o.listen_addr, &n.listen_addr),
            http: changed(&o.http_listen_addr, &n.http_listen_addr),
            tls: (o.tls.active_addr() != n.tls.active_addr())
                .then(|| n.tls.active_addr().to_string()),
            admin: control(&o.admin.listen_addr, &n.admin.listen_addr),
            metrics: control(&o.metrics.listen_addr, &n.metrics.listen_addr),
            drain: n.shutdown.drain_timeout.get(),
        };
        let any = [&msg.tcp, &msg.http, &msg.tls, &msg.admin, &msg.metrics];
        any.iter().any(|c| c.is_some()).then_some(msg)
    }
}

/// Command to the config actor: where to send [`ApplyListeners`]. Without one (a config actor
/// running without listeners), listener address changes are reported as `restart_required`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetListenerSink(pub Recipient<ApplyListeners>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_listeners_are_named() {
        let yaml = "server: {listenAddr: \":1\", backends: [{addr: \"127.0.0.1:2\"}]}\n";
        let old = gogate_config::load_str(yaml, None).expect("valid");
        assert_eq!(ApplyListeners::between(&old, &old, &old), None);
        let mut new = old.clone();
        new.server.listen_addr = String::new();
        new.server.admin.listen_addr = "127.0.0.1:3".into();
        let msg = ApplyListeners::between(&old, &old, &new).expect("a change");
        assert_eq!((msg.tcp.as_deref(), msg.http), (Some(""), None));
        assert_eq!(
            (msg.admin.as_deref(), msg.metrics),
            (Some("127.0.0.1:3"), None)
        );
        // Admin and metrics on one listener at start: they do not move.
        let mut shared = old.clone();
        shared.server.admin.enabled = true;
        shared.server.metrics.enabled = true;
        shared.server.metrics.listen_addr = shared.server.admin.listen_addr.clone();
        let msg = ApplyListeners::between(&shared, &old, &new).expect("a change");
        assert_eq!(msg.admin, None);
    }

    #[test]
    fn the_https_listener_follows_tls_enabled_and_its_address() {
        let yaml = "server: {listenAddr: \":1\", backends: [{addr: \"127.0.0.1:2\"}]}\n";
        let off = gogate_config::load_str(yaml, None).expect("valid");
        let mut on = off.clone();
        on.server.tls.enabled = true;
        let msg = ApplyListeners::between(&off, &off, &on).expect("enabled");
        assert_eq!((msg.tls.as_deref(), msg.http), (Some(":8443"), None));
        let msg = ApplyListeners::between(&off, &on, &off).expect("disabled");
        assert_eq!(msg.tls.as_deref(), Some(""));
        // The address of a disabled listener changes nothing.
        let mut moved_off = off.clone();
        moved_off.server.tls.listen_addr = ":9443".into();
        assert_eq!(ApplyListeners::between(&off, &off, &moved_off), None);
        let mut moved_on = on.clone();
        moved_on.server.tls.listen_addr = ":9443".into();
        let msg = ApplyListeners::between(&off, &on, &moved_on).expect("moved");
        assert_eq!(msg.tls.as_deref(), Some(":9443"));
    }
}
