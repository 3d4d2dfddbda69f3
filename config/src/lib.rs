//! gogate-config: the YAML schema, defaults, validation and error reporting of gogate.
//! It knows nothing of actix: the actors crate turns a validated [`Config`] into snapshots.
//!
//! Loading is parse (serde, unknown keys rejected; every structural error is collected, see
//! `collect.rs`) → normalise (fold dialects, name routes) → validate (every value) → locate
//! (line/column for each error) → sort by line.

pub mod addr;
pub mod cluster;
mod collect;
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
mod span;
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

    /// The configuration without its keys (for comparisons that ignore the key files); with
    /// [`has_errors`](Self::has_errors), only what could be parsed of it.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the text has errors ([`finish`](Self::finish) then reports them all).
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
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
        let mut errors: Vec<ConfigError> = Vec::with_capacity(self.errors.len());
        for mut e in self.errors {
            if e.line.is_none() {
                // The entry itself where it is written (flow collections too), else the deepest
                // key of its path that is.
                let exact = span::find(text, &e.path).map(|n| span::line_col(text, n.at));
                if let Some((line, col)) = exact.or_else(|| locate::locate(text, &e.path)) {
                    e.line = Some(line);
                    e.column = Some(col);
                }
            }
            e.file = file.map(Path::to_path_buf);
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
        // By line and column; errors without a line (whole-file ones) last. Stable: errors on
        // one spot keep the order they were found in.
        errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        Err(ConfigErrors(errors))
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
/// (invalid YAML) fail here, as the one error they are; every other error is kept for
/// [`PendingConfig::finish`], so that they are all reported together with the key files' ones.
pub fn prepare(text: &str, file: Option<&Path>) -> Result<PendingConfig, ConfigErrors> {
    let blank = text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    });
    let collected = if blank {
        collect::Collected {
            config: Some(Config::default()),
            errors: Vec::new(),
            removed: collect::Removed::default(),
        }
    } else {
        collect::collect(text).map_err(|mut e| {
            e.file = file.map(Path::to_path_buf);
            ConfigErrors::single(e)
        })?
    };
    let mut errors = collected.errors;
    let removed = &collected.removed;
    let config = match collected.config {
        Some(mut cfg) => {
            normalize(&mut cfg);
            // Files named in the config are relative to its directory (DESIGN B10).
            if !cfg.cluster.ca_file.is_empty() {
                let path = base_dir(file).join(&cfg.cluster.ca_file);
                cfg.cluster.ca_file = path.display().to_string();
            }
            // Checks that a removed entry would make misleading (an empty list that had an
            // item with a bad key, a reference to a removed upstream) are skipped, and errors of
            // removed entries, or of a list about what it holds once an item was removed,
            // dropped: the parse error says what is wrong.
            let incomplete = |path: &str| removed.touches(&removed.to_original(path));
            for mut e in validate::check(&cfg, &incomplete) {
                e.path = removed.to_original(&e.path);
                if !removed.covers(&e.path) && !removed.lost_item(&e.path) {
                    errors.push(e);
                }
            }
            cfg
        }
        None => Config::default(),
    };
    Ok(PendingConfig {
        text: text.to_string(),
        file: file.map(Path::to_path_buf),
        config,
        errors,
    })
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
