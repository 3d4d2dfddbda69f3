//! Parsing that reports every structural error of a file, not just serde's first one: on an
//! error (an unknown key, a bad enum value or duration, a wrong type, a missing field) the
//! offending entry is located (`span.rs`), recorded with its key path and line, blanked out of
//! the text (line breaks kept, so every other position stays true) and the text parsed again,
//! until it parses or [`MAX_ROUNDS`] is reached. The typed model and serde's own messages are
//! kept; what was removed is remembered so that validation of the rest does not report its
//! consequences, and so that item indexes after a removed sequence item are the file's own.

use crate::error::ConfigError;
use crate::locate::{key_matches, parse_path, Step};
use crate::model::Config;
use crate::span;

/// Parse rounds at most: each finds one error.
pub(crate) const MAX_ROUNDS: usize = 100;

/// Hints for keys of the original gateway that have no meaning here.
const RENAMED_KEYS: &[(&str, &str)] = &[
    ("window", "the circuit breaker counts consecutive failures (failureThreshold); remove circuitBreaker.window"),
    ("http_transport", "upstream connection reuse is server.tcpPool and upstream timeouts are server.timeouts"),
];

/// What parsing found.
pub(crate) struct Collected {
    /// The configuration without the removed entries; `None` when no round parsed.
    pub config: Option<Config>,
    /// Located errors, paths as in the file.
    pub errors: Vec<ConfigError>,
    pub removed: Removed,
}

/// Parses `text`; a syntax error (invalid YAML) is the one error returned as `Err`.
pub(crate) fn collect(text: &str) -> Result<Collected, ConfigError> {
    if let Err(e) = serde_yaml::from_str::<serde::de::IgnoredAny>(text) {
        return Err(from_serde(&e));
    }
    let mut work = text.to_string();
    let mut errors = Vec::new();
    let mut removed = Removed(Vec::new());
    for round in 0..=MAX_ROUNDS {
        let e = match serde_yaml::from_str::<Config>(&work) {
            Ok(config) => {
                return Ok(Collected {
                    config: Some(config),
                    errors,
                    removed,
                })
            }
            Err(e) => e,
        };
        if round == MAX_ROUNDS {
            let msg = format!("more than {MAX_ROUNDS} errors; fix these first");
            errors.push(ConfigError::new("", msg));
            break;
        }
        let mut err = from_serde(&e);
        let (node_path, node, duplicate) = offending_node(&work, &err);
        let original = removed.to_original(&node_path);
        // An error of a node that holds a removed one (a `missing field` once a bad value was
        // taken out) is a consequence of the removal, not a second mistake.
        let consequence = removed.holds(&original);
        err.path = removed.to_original(&err.path);
        let node = node.filter(|_| !node_path.is_empty() && !removed.0.contains(&original));
        let Some(node) = node else {
            if !consequence {
                errors.push(err);
            }
            break;
        };
        let (line, column) = span::line_col(&work, node.at);
        (err.line, err.column) = (Some(line), Some(column));
        if !consequence {
            errors.push(err);
        }
        span::blank(&mut work, node.blank);
        // A second spelling of a key goes without a trace: the first stays and is checked.
        if !duplicate {
            removed.0.push(original);
        }
        if serde_yaml::from_str::<serde::de::IgnoredAny>(&work).is_err() {
            break; // the text could not be cut there; report what was found
        }
    }
    Ok(Collected {
        config: None,
        errors,
        removed,
    })
}

/// The path of the entry an error is about (as serde_yaml names it), where it is written, and
/// whether it is the second occurrence of a key.
fn offending_node(text: &str, err: &ConfigError) -> (String, Option<span::Node>, bool) {
    let join = |key: &str| match err.path.as_str() {
        "" => key.to_string(),
        p => format!("{p}.{key}"),
    };
    if let Some(key) = backticked(&err.message, "unknown field `") {
        let path = join(key);
        let node = span::find(text, &path);
        return (path, node, false);
    }
    if let Some(field) = backticked(&err.message, "duplicate field `") {
        let node = span::find_duplicate(text, &err.path, field);
        return (join(field), node, true);
    }
    (err.path.clone(), span::find(text, &err.path), false)
}

/// The text between `prefix` (ending in a backtick) at the start of `message` and the next one.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.find('`').map(|i| &rest[..i])
}

/// Turns serde_yaml's error ("server.health: unknown field `x`, expected ... at line 3 column 5")
/// into a [`ConfigError`] with the path split out and serde's location.
fn from_serde(e: &serde_yaml::Error) -> ConfigError {
    let mut msg = e.to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    let (path, mut message) = match msg.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
        _ => (String::new(), msg),
    };
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

/// The entries blanked out of the text, by their path in the file (keys as written).
#[derive(Debug, Default)]
pub(crate) struct Removed(Vec<String>);

fn same_key(a: &str, b: &str) -> bool {
    a == b || key_matches(a, b) || key_matches(b, a)
}

/// Whether `outer` is `inner` or one of its ancestors.
fn contains(outer: &[Step], inner: &[Step]) -> bool {
    outer.len() <= inner.len()
        && outer.iter().zip(inner).all(|pair| match pair {
            (Step::Key(a), Step::Key(b)) => same_key(a, b),
            (Step::Index(a), Step::Index(b)) => a == b,
            _ => false,
        })
}

impl Removed {
    /// Whether `path` (in the file's numbering) or one of its ancestors was removed.
    pub fn covers(&self, path: &str) -> bool {
        let steps = parse_path(path);
        self.0.iter().any(|r| contains(&parse_path(r), &steps))
    }

    /// Whether an item of the sequence at `path` was removed (what is said of the list as a
    /// whole, such as that it is empty, may then only follow from the removal).
    pub fn lost_item(&self, path: &str) -> bool {
        let steps = parse_path(path);
        self.0.iter().map(|r| parse_path(r)).any(|r| {
            r.len() == steps.len() + 1
                && matches!(r.last(), Some(Step::Index(_)))
                && contains(&steps, &r)
        })
    }

    /// Whether something at or under `path` was removed.
    pub fn holds(&self, path: &str) -> bool {
        let steps = parse_path(path);
        self.0.iter().any(|r| contains(&steps, &parse_path(r)))
    }

    /// Whether `path` (in the file's numbering) lost anything to a removal: it, an ancestor or
    /// something under it.
    pub fn touches(&self, path: &str) -> bool {
        self.covers(path) || self.holds(path)
    }

    /// `path` with the indexes of the parsed text (where removed items no longer count) turned
    /// into the file's.
    pub fn to_original(&self, path: &str) -> String {
        let removed: Vec<Vec<Step>> = self.0.iter().map(|r| parse_path(r)).collect();
        let mut done: Vec<Step> = Vec::new();
        let mut out = String::new();
        for step in parse_path(path) {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&k);
                    done.push(Step::Key(k));
                }
                Step::Index(i) => {
                    let mut gone: Vec<usize> = removed
                        .iter()
                        .filter(|r| r.len() == done.len() + 1 && contains(&done, r))
                        .filter_map(|r| match r.last() {
                            Some(Step::Index(n)) => Some(*n),
                            _ => None,
                        })
                        .collect();
                    gone.sort_unstable();
                    let mut o = i;
                    for g in gone {
                        if g <= o {
                            o += 1;
                        }
                    }
                    out.push_str(&format!("[{o}]"));
                    done.push(Step::Index(o));
                }
            }
        }
        out
    }
}
