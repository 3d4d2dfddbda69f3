//! Gateways started from a real file (so reloads re-read it): a private temp directory, a writer
//! that replaces the file atomically (write a temp file, rename over), and a start helper that
//! passes `file: Some(path)` and a level-filtered log so `logging.level` reloads are visible.

use super::{LogBuffer, TestGateway};
use gogate::gateway::{Gateway, GatewayOptions};
use gogate_actors::config_actor::SetLogLevelHandle;
use serde_yaml::{Mapping, Value};
use slog::Drain;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gogate-reload-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `yaml` with every listener on 127.0.0.1:0 (a listener set to `""` stays disabled), so a
/// reload of the same text never changes a listener address.
pub fn pin_listeners(yaml: &str) -> String {
    let mut root: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
    let map = root.as_mapping_mut().expect("YAML mapping");
    let server = map
        .entry("server".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()))
        .as_mapping_mut()
        .expect("server is a mapping");
    for key in ["listenAddr", "httpListenAddr"] {
        if server.get(key).and_then(Value::as_str) != Some("") {
            server.insert(key.into(), "127.0.0.1:0".into());
        }
    }
    for section in ["admin", "metrics"] {
        let m = server
            .entry(section.into())
            .or_insert_with(|| Value::Mapping(Mapping::new()))
            .as_mapping_mut()
            .expect("section is a mapping");
        m.insert("enabled".into(), true.into());
        m.insert("listenAddr".into(), "127.0.0.1:0".into());
    }
    serde_yaml::to_string(&root).expect("YAML serializes")
}

/// Replaces `path` atomically with `text` as is (write beside, then rename over it).
pub fn write_raw(path: &Path, text: &str) {
    let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
    std::fs::write(&tmp, text).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

/// Replaces `path` atomically with `yaml`, listeners pinned.
pub fn write_config(path: &Path, yaml: &str) {
    write_raw(path, &pin_listeners(yaml));
}

/// Starts a gateway from the file at `path` (already written with [`write_config`]).
pub async fn gateway_from_file(path: &Path) -> TestGateway {
    gateway_from_file_with(path, None).await
}

/// Like [`gateway_from_file`], resolving host-name backends with `resolver` (`None` = system).
pub async fn gateway_from_file_with(
    path: &Path,
    resolver: Option<std::sync::Arc<dyn gogate_actors::Resolver>>,
) -> TestGateway {
    let cfg = gogate_config::load_file(path).unwrap_or_else(|e| panic!("bad test config: {e}"));
    let logs = LogBuffer::default();
    let drain = Mutex::new(
        slog_json::Json::new(logs.clone())
            .add_default_keys()
            .build(),
    )
    .fuse();
    let (log, level) = gogate_actors::logging::with_level(drain, cfg.logging.level);
    let gw = Gateway::start(GatewayOptions {
        config: cfg,
        file: Some(path.to_path_buf()),
        log,
        workers: Some(1),
        env_admin_token: None,
        resolver,
    })
    .await
    .unwrap_or_else(|e| panic!("gateway failed to start: {e}"));
    gw.reload_handle().do_send(SetLogLevelHandle(level));
    TestGateway {
        http: gw.http_addr,
        tcp: gw.tcp_addr,
        admin: gw.admin_addr.expect("admin enabled"),
        metrics: gw.metrics_addr.expect("metrics enabled"),
        gw: Some(gw),
        logs,
    }
}

/// `yaml` with listeners pinned as [`pin_listeners`] does, then each `(key, value)` set under
/// `server` (`key` may be dotted: `admin.listenAddr`), e.g. to move one listener.
pub fn with_server(yaml: &str, sets: &[(&str, &str)]) -> String {
    let mut root: Value = serde_yaml::from_str(&pin_listeners(yaml)).expect("test YAML parses");
    for (key, value) in sets {
        let mut node = root
            .as_mapping_mut()
            .and_then(|m| m.get_mut("server"))
            .expect("server section");
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node
                .as_mapping_mut()
                .and_then(|m| m.get_mut(*part))
                .unwrap_or_else(|| panic!("no server.{part}"));
        }
        node.as_mapping_mut()
            .expect("a mapping")
            .insert(parts[parts.len() - 1].into(), (*value).into());
    }
    serde_yaml::to_string(&root).expect("YAML serializes")
}
