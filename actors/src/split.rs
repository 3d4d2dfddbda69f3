//! Traffic-split choice for a route's weighted targets: weighted random per request, or sticky,
//! where a cookie or header value is hashed onto the cumulative weights so the same value
//! always lands on the same target while the weights stay the same.
//!
//! The sticky hash is fixed and documented so every gateway replica (and every restart) agrees:
//! 64-bit FNV-1a of the value's bytes, finished with MurmurHash3's `fmix64` avalanche (FNV-1a
//! alone leaves similar values such as `user-1`, `user-2` close together), then mapped onto
//! `[0, total weight)` by a multiply-high (`hash × total >> 64`), which is unbiased enough for
//! weights of at most 10,000 × targets and needs no division.

use actix_http::header::{HeaderMap, HeaderName, COOKIE};
use gogate_config::Sticky;

/// A route's `sticky` setting, ready for the request path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StickyKey {
    #[default]
    None,
    Cookie(String),
    Header(HeaderName),
}

impl StickyKey {
    pub fn new(cfg: &Sticky) -> Self {
        match cfg {
            Sticky::None => StickyKey::None,
            Sticky::Cookie(name) => StickyKey::Cookie(name.clone()),
            Sticky::Header(name) => HeaderName::try_from(name.as_str())
                .map(StickyKey::Header)
                .unwrap_or_default(),
        }
    }

    /// The setting as written in the config (`cookie:NAME`, `header:name`); `None` when the
    /// route is not sticky.
    pub fn describe(&self) -> Option<String> {
        match self {
            StickyKey::None => None,
            StickyKey::Cookie(name) => Some(format!("cookie:{name}")),
            StickyKey::Header(name) => Some(format!("header:{name}")),
        }
    }

    /// The request's sticky value, if the route is sticky and the request carries a non-empty one.
    #[inline]
    pub fn value<'a>(&self, headers: &'a HeaderMap) -> Option<&'a [u8]> {
        let v = match self {
            StickyKey::None => return None,
            StickyKey::Header(name) => headers.get(name).map(|v| v.as_bytes()),
            StickyKey::Cookie(name) => headers
                .get_all(COOKIE)
                .find_map(|h| cookie_value(h.as_bytes(), name.as_bytes())),
        };
        v.filter(|v| !v.is_empty())
    }
}

/// The value of cookie `name` in one `Cookie` header (`a=1; b="2"`), quotes removed.
pub fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        if pair[..eq].trim_ascii() != name {
            return None;
        }
        let v = pair[eq + 1..].trim_ascii();
        Some(
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v),
        )
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The point in `[0, total)` that `value` sticks to (`total` > 0).
pub fn sticky_point(value: &[u8], total: u64) -> u64 {
    let h = fmix64(fnv1a(value));
    ((u128::from(h) * u128::from(total)) >> 64) as u64
}

/// The index of the weight range holding `point` (`point` < sum of `weights`).
pub fn index_at<I: IntoIterator<Item = u64>>(weights: I, mut point: u64) -> Option<usize> {
    for (i, w) in weights.into_iter().enumerate() {
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn same_value_same_point_and_values_spread_by_weight() {
        assert_eq!(sticky_point(b"user-42", 100), sticky_point(b"user-42", 100));
        let weights = [90u64, 10];
        let mut hits = [0usize; 2];
        for i in 0..10_000 {
            let p = sticky_point(format!("user-{i}").as_bytes(), 100);
            hits[index_at(weights, p).unwrap()] += 1;
        }
        let share = hits[1] as f64 / 100.0;
        assert!((8.0..=12.0).contains(&share), "10% target got {share}%");
    }

    #[test]
    fn cookie_and_header_values_are_found() {
        assert_eq!(
            cookie_value(b"a=1; sid=\"xyz\"; b=2", b"sid"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie_value(b"asid=1;sid2=2", b"sid"), None);
        let mut h = HeaderMap::new();
        h.append(COOKIE, "x=1".parse().unwrap());
        h.append(COOKIE, "sid=abc".parse().unwrap());
        h.insert(HeaderName::from_static("x-user"), "u1".parse().unwrap());
        let cookie = StickyKey::new(&Sticky::Cookie("sid".into()));
        assert_eq!(cookie.value(&h), Some(&b"abc"[..]));
        let header = StickyKey::new(&Sticky::Header("x-user".into()));
        assert_eq!(header.value(&h), Some(&b"u1"[..]));
        assert_eq!(
            StickyKey::new(&Sticky::Cookie("x-user".into())).value(&h),
            None
        );
        h.insert(HeaderName::from_static("x-user"), "".parse().unwrap());
        assert_eq!(header.value(&h), None, "an empty value is no value");
    }

    #[test]
    fn index_at_walks_cumulative_weights() {
        assert_eq!(index_at([3, 0, 2], 0), Some(0));
        assert_eq!(index_at([3, 0, 2], 3), Some(2));
        assert_eq!(index_at([3, 0, 2], 5), None);
    }
}
