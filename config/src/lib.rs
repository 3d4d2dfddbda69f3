//! gogate-config: the YAML schema, defaults, validation and error reporting of gogate.
//! It knows nothing of actix: the actors crate turns a validated [`Config`] into snapshots.
//!
//! Loading is parse (serde, unknown keys rejected) → normalise (fold dialects, name routes)
//! → validate (every value) → locate (line/column for each error).

pub mod addr;
pub mod cluster;
pub mod cors;
pub mod diff;
pub mod duration;
pub mod error;
pub mod jwt;
mod locate;
pub mod model;
pub mod rate_limit;
pub mod redact;
mod sections;
pub mod sticky;
pub mod tls;
pub mod validate;

pub use addr::{check_backend_addr, parse_listen_addr, Cidr};
pub use duration::{parse_duration, Dur};
pub use error::{ConfigError, ConfigErrors};
pub use jwt::{read_key_files, JwtConfig, JwtKeys, KeyFiles};
pub use model::*;

use std::path::Path;

/// The configuration `gogate` runs with when no file is given.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

/// The name of the upstream made of `server.backends`.
pub const DEFAULT_UPSTREAM: &str = "default";

/// Hints for keys of the original gateway that have no meaning here.
const RENAMED_KEYS: &[(&str, &str)] = &[
    ("window", "the circuit breaker counts consecutive failures (failureThreshold); remove circuitBreaker.window"),
    ("http_transport", "upstream connection reuse is server.tcpPool and upstream timeouts are server.timeouts"),
];

/// Reads, parses and validates the file at `path`, and the key files it references.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut err = ConfigError::new("", format!("cannot read the configuration file: {e}"));
        err.file = Some(path.to_path_buf());
        ConfigErrors::single(err)
    })?;
    load_str(&text, Some(path))
}

/// The embedded default configuration (always valid; a unit test keeps it so).
pub fn default_config() -> Config {
    load_str(DEFAULT_CONFIG_YAML, None).expect("the embedded default configuration is valid")
}

/// Parses and validates YAML text, then reads the key files it references (blocking I/O)
/// relative to the directory of `file` (the working directory without one); `file` also names
/// the file in error messages.
pub fn load_str(text: &str, file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let pending = prepare(text, file)?;
    let files = read_key_files(&pending.key_files());
    pending.finish(&files)
}

/// A parsed configuration whose key files are still to be read: [`prepare`] needs no I/O, the
/// caller reads [`key_files`](Self::key_files) as suits it (the reload pipeline asynchronously),
/// and [`finish`](Self::finish) compiles them and reports every error of the file at once.
#[derive(Debug)]
pub struct PendingConfig {
    text: String,
    file: Option<std::path::PathBuf>,
    config: Config,
    errors: Vec<ConfigError>,
}

impl PendingConfig {
    /// The files to read: nothing when the YAML itself is invalid.
    pub fn key_files(&self) -> Vec<std::path::PathBuf> {
        match (&self.config.jwt, self.errors.is_empty()) {
            (Some(j), true) => j
                .key_files(&base_dir(self.file.as_deref()))
                .into_iter()
                .map(|(_, p)| p)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The configuration without its keys (for comparisons that ignore the key files).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Compiles the keys from `files` and returns the configuration, or every error found.
    pub fn finish(mut self, files: &KeyFiles) -> Result<Config, ConfigErrors> {
        if self.errors.is_empty() {
            if let Some(j) = &mut self.config.jwt {
                match JwtKeys::load(j, &base_dir(self.file.as_deref()), files) {
                    Ok(keys) => j.keys = Some(std::sync::Arc::new(keys)),
                    Err(e) => self.errors.extend(e),
                }
            }
        }
        if self.errors.is_empty() {
            return Ok(self.config);
        }
        let (text, file) = (&self.text, self.file.as_deref());
        Err(ConfigErrors(
            self.errors
                .into_iter()
                .map(|mut e| {
                    if let Some((line, col)) = locate::locate(text, &e.path) {
                        e.line = Some(line);
                        e.column = Some(col);
                    }
                    e.file = file.map(Path::to_path_buf);
                    e
                })
                .collect(),
        ))
    }
}

/// Where relative key paths point: the config file's directory (DESIGN B10).
fn base_dir(file: Option<&Path>) -> std::path::PathBuf {
    file.and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

impl Config {
    /// This configuration with its compiled keys dropped: equal to what [`prepare`] gives for
    /// the same text.
    pub fn without_keys(&self) -> Config {
        let mut c = self.clone();
        if let Some(j) = &mut c.jwt {
            j.keys = None;
        }
        c
    }
}

/// Parses, normalises and validates YAML text without reading any other file. Syntax errors
/// fail here; value errors are kept for [`PendingConfig::finish`], so they are reported
/// together with the key files' ones.
pub fn prepare(text: &str, file: Option<&Path>) -> Result<PendingConfig, ConfigErrors> {
    let with_file = |mut e: ConfigError| {
        e.file = file.map(Path::to_path_buf);
        e
    };
    let blank = text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    });
    let mut cfg: Config = if blank {
        Config::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| ConfigErrors::single(with_file(from_serde(&e))))?
    };
    normalize(&mut cfg);
    // Files named in the config are relative to its directory (DESIGN B10).
    if !cfg.cluster.ca_file.is_empty() {
        let path = base_dir(file).join(&cfg.cluster.ca_file);
        cfg.cluster.ca_file = path.display().to_string();
    }
    let errors = validate::validate(&cfg);
    Ok(PendingConfig {
        text: text.to_string(),
        file: file.map(Path::to_path_buf),
        config: cfg,
        errors,
    })
}

/// Turns serde_yaml's error ("server.health: unknown field `x`, expected ... at line 3 column 5")
/// into a located [`ConfigError`] with the path split out.
fn from_serde(e: &serde_yaml::Error) -> ConfigError {
    let mut msg = e.to_string();
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    let (path, mut message) = match msg.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
        _ => (String::new(), msg),
    };
    let mut path = path;
    // Our scalar parsers say `invalid KEY "value"; allowed: ...`, but serde_yaml's path stops at
    // the enclosing mapping: name the key too.
    if let Some((key, rest)) = message
        .strip_prefix("invalid ")
        .and_then(|m| m.split_once(' '))
    {
        if !path.is_empty()
            && rest.starts_with('"')
            && key.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            path = format!("{path}.{key}");
        }
    }
    for (key, hint) in RENAMED_KEYS {
        if message.starts_with(&format!("unknown field `{key}`")) {
            message = format!("unknown field `{key}`: {hint}");
        }
    }
    let mut err = ConfigError::new(path, message);
    if let Some(loc) = e.location() {
        err.line = Some(loc.line());
        err.column = Some(loc.column());
    }
    err
}

/// Folds dialects into one form: the original's `server.logging`, unnamed routes, method and
/// host case.
fn normalize(cfg: &mut Config) {
    if let Some(logging) = cfg.server.logging.take() {
        cfg.logging = logging;
    }
    for (i, r) in cfg.routes.iter_mut().enumerate() {
        if r.name.is_empty() {
            r.name = format!("route-{}", i + 1);
        }
        for m in &mut r.matcher.methods {
            *m = m.to_ascii_uppercase();
        }
        r.matcher.host = r.matcher.host.to_ascii_lowercase();
    }
}

/// The effective settings of one upstream: its own keys over `server.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub name: String,
    pub backends: Vec<BackendConfig>,
    pub load_balancer: LbAlgorithm,
    pub health: HealthConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub retry: RetryConfig,
    pub timeouts: TimeoutsConfig,
    pub tcp_pool: TcpPoolConfig,
}

impl Config {
    /// Effective settings of upstream `name` (`default` = `server.backends`). An unknown name
    /// yields the server settings with no backends.
    pub fn upstream_settings(&self, name: &str) -> UpstreamSettings {
        let s = &self.server;
        let base = UpstreamSettings {
            name: name.to_string(),
            backends: s.backends.clone(),
            load_balancer: s.load_balancer,
            health: s.health.clone(),
            circuit_breaker: s.circuit_breaker.clone(),
            retry: s.retry.clone(),
            timeouts: s.timeouts.clone(),
            tcp_pool: s.tcp_pool.clone(),
        };
        if name == DEFAULT_UPSTREAM {
            return base;
        }
        let Some(up) = self.upstreams.get(name) else {
            return UpstreamSettings {
                backends: Vec::new(),
                ..base
            };
        };
        UpstreamSettings {
            name: name.to_string(),
            backends: up.backends.clone(),
            load_balancer: up.load_balancer.unwrap_or(s.load_balancer),
            health: up
                .health
                .as_ref()
                .map_or(base.health.clone(), |o| s.health.merged(o)),
            circuit_breaker: up
                .circuit_breaker
                .as_ref()
                .map_or(base.circuit_breaker.clone(), |o| {
                    s.circuit_breaker.merged(o)
                }),
            retry: up
                .retry
                .as_ref()
                .map_or(base.retry.clone(), |o| s.retry.merged(o)),
            timeouts: up
                .timeouts
                .as_ref()
                .map_or(base.timeouts.clone(), |o| s.timeouts.merged(o)),
            tcp_pool: up
                .tcp_pool
                .as_ref()
                .map_or(base.tcp_pool.clone(), |o| s.tcp_pool.merged(o)),
        }
    }

    /// Names of every upstream, `default` first.
    pub fn upstream_names(&self) -> Vec<String> {
        std::iter::once(DEFAULT_UPSTREAM.to_string())
            .chain(self.upstreams.keys().cloned())
            .collect()
    }

    /// The config as JSON with secrets replaced by `"<redacted>"` (for `GET /config`; see
    /// [`redact`] for what counts as a secret).
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        redact::redact(&mut value);
        // The store URL may carry a password.
        if let Some(store) = value.pointer_mut("/cluster/store") {
            if let Some(text) = store.as_str().filter(|s| !s.is_empty()) {
                *store = serde_json::Value::String(match cluster::StoreUrl::parse(text) {
                    Ok(u) => u.redacted(),
                    Err(_) => cluster::redact_text(text),
                });
            }
        }
        value
    }
}

#[cfg(test)]
mod tests;
