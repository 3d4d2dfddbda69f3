//! Request path normalisation, applied before routing so that a route (say `auth: jwt` on
//! `/admin`) cannot be bypassed by spelling its path differently for a looser route, and so that
//! the upstream serves exactly the path that was routed and authorised:
//!
//! - percent-encoded unreserved characters are decoded (`%2e` → `.`, `%41` → `A`, any hex case);
//!   other escapes stay as sent;
//! - dot segments are removed (RFC 3986 5.2.4) and repeated slashes merged;
//! - path parameters (`;...` in a segment) are ignored for matching, kept for forwarding;
//! - refused (400, never forwarded): an encoded `/`, `\` or `;` (`%2F`, `%5C`, `%3B`), a raw
//!   `\`, an encoded control character (`%00`-`%1F`, `%7F`), an invalid escape, `..` above the
//!   root, and a dot or empty segment carrying parameters (`/..;x/`, `/;x/`), which servers
//!   read differently.

use std::borrow::Cow;

/// A normalised request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// What the upstream receives (before `stripPrefix`), parameters kept.
    pub forward: Cow<'a, str>,
    /// What routes match against: `forward` without segment parameters.
    pub matching: Cow<'a, str>,
}

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    EncodedSeparator,
    Backslash,
    ControlCharacter,
    InvalidEscape,
    AboveRoot,
    AmbiguousParameter,
}

impl PathError {
    /// The client-facing message (400 body).
    pub fn message(self) -> &'static str {
        match self {
            PathError::EncodedSeparator => {
                "invalid request path: encoded '/', '\\' or ';' is not allowed"
            }
            PathError::Backslash => "invalid request path: '\\' is not allowed",
            PathError::ControlCharacter => "invalid request path: encoded control character",
            PathError::InvalidEscape => "invalid request path: invalid percent-encoding",
            PathError::AboveRoot => "invalid request path: '..' above the root",
            PathError::AmbiguousParameter => {
                "invalid request path: parameters on an empty or dot segment"
            }
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether the path may already be in normal form (no escape, backslash, parameter, empty or
/// dot segment): then no copy is made.
fn looks_normal(path: &str) -> bool {
    let b = path.as_bytes();
    !b.iter().any(|c| matches!(c, b'%' | b'\\' | b';'))
        && !path.contains("//")
        && !path.contains("/.")
}

/// Normalises `path` (the request target's path, without the query).
pub fn normalize(path: &str) -> Result<NormalPath<'_>, PathError> {
    if !path.starts_with('/') || looks_normal(path) {
        // `*` (OPTIONS) and paths already normal are used as they are.
        return Ok(NormalPath {
            forward: Cow::Borrowed(path),
            matching: Cow::Borrowed(path),
        });
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let raw: Vec<&str> = decoded[1..].split('/').collect();
    for seg in &raw {
        let name = seg.split(';').next().unwrap_or_default();
        let with_params = name.len() != seg.len();
        match name {
            "" if with_params => return Err(PathError::AmbiguousParameter),
            "" => {}
            "." | ".." if with_params => return Err(PathError::AmbiguousParameter),
            "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => segments.push(seg),
        }
    }
    // A trailing slash, `/.` or `/..` leaves the path ending in `/` (RFC 3986 5.2.4).
    let last = raw.last().copied().unwrap_or_default();
    let trailing = matches!(last, "" | "." | "..") && !segments.is_empty();
    let join = |segs: &mut dyn Iterator<Item = &str>| {
        let mut out = String::with_capacity(decoded.len());
        for s in segs {
            out.push('/');
            out.push_str(s);
        }
        if out.is_empty() || trailing {
            out.push('/');
        }
        out
    };
    let forward = join(&mut segments.iter().copied());
    let matching = if forward.contains(';') {
        Cow::Owned(join(
            &mut segments
                .iter()
                .map(|s| s.split(';').next().unwrap_or_default()),
        ))
    } else {
        Cow::Owned(forward.clone())
    };
    Ok(NormalPath {
        forward: Cow::Owned(forward),
        matching,
    })
}

/// Decodes escapes of unreserved characters; refuses the dangerous ones (see the module doc).
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (hi, lo) = match (b.get(i + 1).copied(), b.get(i + 2).copied()) {
                    (Some(h), Some(l)) => (hex(h), hex(l)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::InvalidEscape);
                };
                let c = hi * 16 + lo;
                match c {
                    b'/' | b'\\' | b';' => return Err(PathError::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ if unreserved(c) => out.push(char::from(c)),
                    _ => out.push_str(&path[i..i + 3]),
                }
                i += 3;
            }
            _ => {
                // The request line is ASCII (the HTTP parser refuses anything else), so a byte
                // is a char; a stray non-ASCII byte would only come through `from_utf8` here.
                let end = path[i..].find(['%', '\\']).map_or(path.len(), |n| i + n);
                out.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    Ok(out)
}

/// `stripPrefix` on a forwarded path whose segments may carry parameters: drops as many
/// segments as the (normalised, parameter-free) `prefix` has; the whole path → `/`.
pub fn strip_segments<'a>(prefix: &str, forward: &'a str) -> &'a str {
    let n = prefix.split('/').filter(|s| !s.is_empty()).count();
    if n == 0 {
        return forward;
    }
    let mut seen = 0;
    for (i, c) in forward.char_indices().skip(1) {
        if c == '/' {
            seen += 1;
            if seen == n {
                return &forward[i..];
            }
        }
    }
    "/"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(p: &str) -> String {
        normalize(p)
            .map(|n| n.forward.into_owned())
            .unwrap_or_else(|e| format!("{e:?}"))
    }

    fn mat(p: &str) -> String {
        normalize(p)
            .map(|n| n.matching.into_owned())
            .unwrap_or_else(|e| format!("{e:?}"))
    }

    #[test]
    fn normal_paths_are_borrowed() {
        let n = normalize("/api/v1/users").unwrap();
        assert!(matches!(n.forward, Cow::Borrowed(_)));
        assert!(matches!(n.matching, Cow::Borrowed(_)));
        assert_eq!(fwd("/"), "/");
        assert_eq!(fwd("*"), "*");
        assert_eq!(fwd("/a.b/c~d"), "/a.b/c~d");
    }

    #[test]
    fn dot_segments_and_repeated_slashes() {
        assert_eq!(fwd("/public/../admin"), "/admin");
        assert_eq!(fwd("/./admin"), "/admin");
        assert_eq!(fwd("//admin"), "/admin");
        assert_eq!(fwd("/a//b///c"), "/a/b/c");
        assert_eq!(fwd("/a/b/.."), "/a/");
        assert_eq!(fwd("/a/."), "/a/");
        assert_eq!(fwd("/a/.."), "/");
        assert_eq!(fwd("/admin/"), "/admin/");
        assert_eq!(fwd("/.hidden/x"), "/.hidden/x");
        assert_eq!(fwd("/.."), "AboveRoot");
        assert_eq!(fwd("/a/../../b"), "AboveRoot");
    }

    #[test]
    fn unreserved_escapes_are_decoded_in_any_case() {
        assert_eq!(fwd("/%2e%2e/admin"), "AboveRoot");
        assert_eq!(fwd("/x/%2E%2E/admin"), "/admin");
        assert_eq!(fwd("/%61dmin"), "/admin");
        assert_eq!(fwd("/%41%7e"), "/A~");
        assert_eq!(fwd("/a%20b/%C3%A9"), "/a%20b/%C3%A9", "others stay as sent");
    }

    #[test]
    fn dangerous_escapes_are_refused() {
        assert_eq!(fwd("/admin%2fx"), "EncodedSeparator");
        assert_eq!(fwd("/admin%2Fx"), "EncodedSeparator");
        assert_eq!(fwd("/admin%5cx"), "EncodedSeparator");
        assert_eq!(fwd("/admin%3bx"), "EncodedSeparator");
        assert_eq!(fwd("/admin\\x"), "Backslash");
        assert_eq!(fwd("/a%00"), "ControlCharacter");
        assert_eq!(fwd("/a%0d%0a"), "ControlCharacter");
        assert_eq!(fwd("/a%7F"), "ControlCharacter");
        assert_eq!(fwd("/a%2"), "InvalidEscape");
        assert_eq!(fwd("/a%zz"), "InvalidEscape");
        assert_eq!(fwd("/a%"), "InvalidEscape");
    }

    #[test]
    fn parameters_are_ignored_for_matching_and_kept_for_forwarding() {
        assert_eq!(fwd("/admin;x"), "/admin;x");
        assert_eq!(mat("/admin;x"), "/admin");
        assert_eq!(mat("/admin;x/y"), "/admin/y");
        assert_eq!(mat("/a;p=1/../admin;q"), "/admin");
        assert_eq!(fwd("/..;x/admin"), "AmbiguousParameter");
        assert_eq!(fwd("/public/..;/admin"), "AmbiguousParameter");
        assert_eq!(fwd("/;x/admin"), "AmbiguousParameter");
        assert_eq!(fwd("/.;x"), "AmbiguousParameter");
    }

    #[test]
    fn strip_segments_counts_prefix_segments() {
        assert_eq!(strip_segments("/api", "/api;v=1/users"), "/users");
        assert_eq!(strip_segments("/api/v1", "/api;x/v1;y/u"), "/u");
        assert_eq!(strip_segments("/api", "/api;x"), "/");
        assert_eq!(strip_segments("/", "/x"), "/x");
    }
}
