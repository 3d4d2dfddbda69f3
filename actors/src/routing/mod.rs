//! Route choice as pure logic (DESIGN B4): exact host beats wildcard host beats no host; then an
//! exact `path` beats a longer `pathPrefix` beats a shorter one; then routes with `methods` or
//! `headers` conditions beat routes without; then file order. The table is sorted once when the
//! snapshot is built, so a lookup is a scan that stops at the first rule that matches.

use gogate_config::MatchConfig;
use std::cmp::Reverse;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches any deeper name, not the apex.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    Any,
    Exact(String),
    /// Segment-aware prefix without a trailing slash (`/` itself matches everything).
    Prefix(String),
}

/// Specificity sort key: host class, path class, conditions (all descending), file order.
type Rank = (
    Reverse<(u8, usize)>,
    Reverse<(u8, usize)>,
    Reverse<bool>,
    usize,
);

/// The compiled `match:` block of one route.
#[derive(Debug, Clone)]
pub struct RouteRule {
    host: HostMatch,
    path: PathMatch,
    methods: Vec<String>,
    headers: Vec<(String, String)>,
    index: usize,
}

/// What the matcher needs to know about a request.
pub struct RequestFacts<'a> {
    /// Host without port (any case), if the request named one.
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub method: &'a str,
    /// Value of a request header by (lower-case) name.
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
}

impl RouteRule {
    /// Compiles a validated `match:` block; `index` is the route's position in the file.
    pub fn new(m: &MatchConfig, index: usize) -> Self {
        let host = if m.host.is_empty() {
            HostMatch::Any
        } else if let Some(suffix) = m.host.strip_prefix('*') {
            HostMatch::Suffix(suffix.to_ascii_lowercase())
        } else {
            HostMatch::Exact(m.host.to_ascii_lowercase())
        };
        let path = if !m.path.is_empty() {
            PathMatch::Exact(m.path.clone())
        } else if !m.path_prefix.is_empty() {
            PathMatch::Prefix(normalize_prefix(&m.path_prefix).to_string())
        } else {
            PathMatch::Any
        };
        RouteRule {
            host,
            path,
            methods: m.methods.iter().map(|s| s.to_ascii_uppercase()).collect(),
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            index,
        }
    }

    /// Sort key: smaller sorts first (more specific first).
    fn rank(&self) -> Rank {
        let host = match &self.host {
            HostMatch::Exact(_) => (2, 0),
            HostMatch::Suffix(s) => (1, s.len()),
            HostMatch::Any => (0, 0),
        };
        let path = match &self.path {
            PathMatch::Exact(p) => (2, p.len()),
            PathMatch::Prefix(p) => (1, p.len()),
            PathMatch::Any => (0, 0),
        };
        let conditions = !self.methods.is_empty() || !self.headers.is_empty();
        (
            Reverse(host),
            Reverse(path),
            Reverse(conditions),
            self.index,
        )
    }

    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        let host_ok = match (&self.host, req.host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(h), Some(got)) => got.eq_ignore_ascii_case(h),
            (HostMatch::Suffix(s), Some(got)) => {
                got.len() > s.len()
                    && got.is_char_boundary(got.len() - s.len())
                    && got[got.len() - s.len()..].eq_ignore_ascii_case(s)
            }
            (_, None) => false,
        };
        host_ok
            && match &self.path {
                PathMatch::Any => true,
                PathMatch::Exact(p) => req.path == p,
                PathMatch::Prefix(p) => prefix_matches(p, req.path),
            }
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == req.method))
            && self
                .headers
                .iter()
                .all(|(k, v)| (req.header)(k) == Some(v.as_str()))
    }

    /// What makes this rule more or less specific, in the order routes are ranked by, as words
    /// (`/explain`): `["exact host api.example.com", "path prefix /api (4 bytes)", ...]`.
    pub fn specificity(&self) -> Vec<String> {
        let mut out = vec![match &self.host {
            HostMatch::Exact(h) => format!("exact host {h}"),
            HostMatch::Suffix(s) => format!("wildcard host *{s}"),
            HostMatch::Any => "any host".to_string(),
        }];
        out.push(match &self.path {
            PathMatch::Exact(p) => format!("exact path {p}"),
            PathMatch::Prefix(p) => format!("path prefix {p} ({} bytes)", p.len()),
            PathMatch::Any => "any path".to_string(),
        });
        if !self.methods.is_empty() {
            out.push(format!("methods {}", self.methods.join(",")));
        }
        for (k, v) in &self.headers {
            out.push(format!("header {k}: {v}"));
        }
        if self.methods.is_empty() && self.headers.is_empty() {
            out.push("no method or header condition".to_string());
        }
        out.push(if self.index == usize::MAX {
            "the default upstream (no route matched)".to_string()
        } else {
            format!("route #{} in the file", self.index + 1)
        });
        out
    }

    /// Why `self` outranks `other` (both match): the first ranking criterion that differs.
    pub fn beats(&self, other: &RouteRule) -> &'static str {
        let (a, b) = (self.rank(), other.rank());
        if a.0 != b.0 {
            "a more specific host"
        } else if a.1 != b.1 {
            "a more specific path"
        } else if a.2 != b.2 {
            "a method or header condition"
        } else {
            "earlier in the file"
        }
    }

    /// The prefix this rule strips with `stripPrefix`, if it is a prefix rule.
    pub fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(p) => Some(p),
            _ => None,
        }
    }
}

fn normalize_prefix(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

/// `/api` matches `/api` and `/api/x`, never `/apiary`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

/// `stripPrefix`: `/api/x` → `/x`; the whole path → `/`.
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> &'a str {
    if prefix == "/" {
        return path;
    }
    match path.get(prefix.len()..) {
        Some("") | None => "/",
        Some(rest) => rest,
    }
}

mod index;

/// Routes sorted by specificity, each with its payload `T`, and, for a table of more than
/// [`INDEX_FROM`] routes, the index that narrows a lookup to the routes that can match
/// (`index.rs`). A smaller table is scanned: a few comparisons cost less than the index's
/// hash lookups (10 ns against about 150 ns), and both give the same answer.
#[derive(Debug)]
pub struct RouteTable<T> {
    entries: Vec<(RouteRule, T)>,
    index: Option<index::Index>,
}

/// Tables with more routes than this are indexed.
pub const INDEX_FROM: usize = 16;

impl<T> RouteTable<T> {
    pub fn new(mut entries: Vec<(RouteRule, T)>) -> Self {
        entries.sort_by_key(|(rule, _)| rule.rank());
        let index =
            (entries.len() > INDEX_FROM).then(|| index::Index::new(entries.iter().map(|(r, _)| r)));
        RouteTable { entries, index }
    }

    /// The routes, best rank first.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, t)| t)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most specific route matching the request.
    #[inline]
    pub fn find(&self, req: &RequestFacts<'_>) -> Option<(&RouteRule, &T)> {
        self.matching(req).next().map(|(_, r, t)| (r, t))
    }

    /// Every route matching the request, most specific first, each with its rank (its 1-based
    /// position in specificity order): the first is the one [`find`](Self::find) chooses.
    pub fn matching<'s, 'r, 'f>(
        &'s self,
        req: &'r RequestFacts<'f>,
    ) -> impl Iterator<Item = (usize, &'s RouteRule, &'s T)> + use<'s, 'r, 'f, T> {
        let (indexed, scanned) = match &self.index {
            Some(ix) => (Some(ix.candidates(req.host, req.path)), None),
            None => (None, Some(0..self.entries.len())),
        };
        indexed
            .into_iter()
            .flatten()
            .chain(scanned.into_iter().flatten())
            .filter_map(|i| self.entries.get(i).map(|(r, t)| (i, r, t)))
            .filter(|(_, rule, _)| rule.matches(req))
            .map(|(i, r, t)| (i + 1, r, t))
    }
}

#[cfg(test)]
mod tests;
