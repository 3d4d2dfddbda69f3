//! `routes[].sticky:` which request value pins a client to one split target (`cookie:NAME` or
//! `header:NAME`); `""` keeps the per-request weighted random choice. Parsed here so a typo is
//! a config error with its key path, never a silently random split.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// How a route's traffic split is made sticky.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sticky {
    /// Weighted random per request.
    #[default]
    None,
    /// The value of this cookie (name compared exactly, as cookies are case-sensitive).
    Cookie(String),
    /// The value of this header (lower-case name).
    Header(String),
}

impl Sticky {
    pub const ALLOWED: &'static str = "\"\" (per-request choice), cookie:NAME, header:NAME";

    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if t.is_empty() {
            return Some(Sticky::None);
        }
        let (kind, name) = t.split_once(':')?;
        let name = name.trim();
        if !crate::validate::is_token(name) {
            return None;
        }
        match kind.trim().to_ascii_lowercase().as_str() {
            "cookie" => Some(Sticky::Cookie(name.to_string())),
            "header" => Some(Sticky::Header(name.to_ascii_lowercase())),
            _ => None,
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Sticky::None
    }
}

impl fmt::Display for Sticky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sticky::None => Ok(()),
            Sticky::Cookie(n) => write!(f, "cookie:{n}"),
            Sticky::Header(n) => write!(f, "header:{n}"),
        }
    }
}

impl Serialize for Sticky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sticky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::model::parse_str(d, "a sticky key", |text| {
            Sticky::parse(text)
                .ok_or_else(|| format!("invalid sticky {text:?}; allowed: {}", Sticky::ALLOWED))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cookie_and_header_forms() {
        assert_eq!(Sticky::parse(""), Some(Sticky::None));
        assert_eq!(
            Sticky::parse("cookie:Session_ID"),
            Some(Sticky::Cookie("Session_ID".into()))
        );
        assert_eq!(
            Sticky::parse("Header:X-User"),
            Some(Sticky::Header("x-user".into()))
        );
        for bad in ["cookie", "cookie:", "query:x", "header:a b", "ip"] {
            assert_eq!(Sticky::parse(bad), None, "{bad}");
        }
        assert_eq!(Sticky::Cookie("s".into()).to_string(), "cookie:s");
    }
}
