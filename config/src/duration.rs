//! Durations as operators write them: `"500ms"`, `"5s"`, `"1m30s"`, `"1h"`, or a bare number of
//! seconds. Parsed once at load time into [`std::time::Duration`]; serialized back in the same
//! compact form so `GET /config` shows what the operator wrote (normalised).

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A configuration duration. Always positive once validated (zero is rejected by the parser).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parses `"1m30s"`-style text. Units: `ms`, `s`, `m`, `h` (and `us`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. \"5s\", \"500ms\" or \"1m30s\"".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return from_secs_f64(secs, text);
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} ends without a unit (ms, s, m, h)"))?;
        if num_len == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number before each unit, e.g. \"1m30s\""
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid number in duration {text:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in duration {text:?}; allowed units: ms, s, m, h"
                ))
            }
        };
        total += from_secs_f64(value * factor, text)?;
    }
    if total.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(total)
}

fn from_secs_f64(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "duration {text:?} must be a positive number of seconds"
        ));
    }
    if secs > 365.0 * 24.0 * 3600.0 {
        return Err(format!("duration {text:?} is longer than a year"));
    }
    let d = Duration::from_secs_f64(secs);
    if d.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(d)
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return write!(f, "{}us", self.0.as_micros());
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut s = self.0.as_secs();
        let h = s / 3600;
        s %= 3600;
        let m = s / 60;
        s %= 60;
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || (h == 0 && m == 0) {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"500ms\", \"5s\", \"1m30s\" or a number of seconds",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                from_secs_f64(v as f64, &v.to_string())
                    .map(Dur)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                from_secs_f64(v as f64, &v.to_string())
                    .map(Dur)
                    .map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                from_secs_f64(v, &v.to_string()).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "0", "0s", "-1s", "5x", "s", "5 s", "1m30", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(Dur::secs(90).to_string(), "1m30s");
        assert_eq!(Dur::millis(500).to_string(), "500ms");
        assert_eq!(Dur::secs(3600).to_string(), "1h");
        assert_eq!(Dur::secs(5).to_string(), "5s");
    }

    #[test]
    fn deserializes_strings_and_numbers() {
        let d: Dur = serde_yaml::from_str("\"1m\"").unwrap();
        assert_eq!(d, Dur::secs(60));
        let d: Dur = serde_yaml::from_str("2").unwrap();
        assert_eq!(d, Dur::secs(2));
        let d: Dur = serde_yaml::from_str("0.25").unwrap();
        assert_eq!(d, Dur::millis(250));
        assert!(serde_yaml::from_str::<Dur>("0").is_err());
    }
}
