//! The route table's lookup index, so a request is checked against the few routes that can
//! match it instead of all of them. Specificity ranks routes by host class first (exact, then
//! wildcard, then none), so the table splits into those three classes, each already in rank
//! order: exact-host routes by their host and wildcard ones by their suffix (hash maps, looked
//! up in lower case), and in every class by the first segment of the path they match (`/api`
//! and `/api/v1` under `api`; routes for any path, or `/`, in a list of their own). A lookup
//! walks the request host's exact routes, then the wildcard ones of each of its suffixes
//! (longest first), then the host-less ones, each as the merge of the request's segment bucket
//! and the catch-all list, in rank order: the first rule that matches is the one a full scan
//! would find.

use super::{HostMatch, PathMatch, RouteRule};
use std::collections::HashMap;

/// Routes of one host class, by first path segment.
#[derive(Debug, Default)]
pub(super) struct ClassIndex {
    by_segment: HashMap<Box<str>, Vec<u32>>,
    /// Routes that match any first segment (no path condition, or the prefix `/`).
    rest: Vec<u32>,
}

impl ClassIndex {
    fn add(&mut self, rule: &RouteRule, i: u32) {
        let seg = match &rule.path {
            PathMatch::Any => None,
            PathMatch::Prefix(p) if p == "/" => None,
            PathMatch::Prefix(p) | PathMatch::Exact(p) => first_segment(p),
        };
        match seg {
            Some(s) => self.by_segment.entry(s.into()).or_default().push(i),
            None => self.rest.push(i),
        }
    }

    /// Candidate entries for a path whose first segment is `seg`, in rank order.
    fn candidates(&self, seg: Option<&str>) -> Merge<'_> {
        let bucket = seg
            .and_then(|s| self.by_segment.get(s))
            .map_or(&[][..], Vec::as_slice);
        Merge {
            a: bucket,
            b: &self.rest,
        }
    }
}

/// The whole index (entry numbers are positions in the rank-sorted table).
#[derive(Debug, Default)]
pub(super) struct Index {
    exact: HashMap<Box<str>, ClassIndex>,
    /// Wildcard routes by their suffix (`*.example.com` under `.example.com`).
    wildcard: HashMap<Box<str>, ClassIndex>,
    /// Every wildcard route, for a host with more matching suffixes than a lookup tracks.
    wildcard_all: ClassIndex,
    any: ClassIndex,
}

/// Longest host name looked up without allocating (DNS names are at most 253 bytes).
const MAX_HOST: usize = 255;

impl Index {
    pub(super) fn new<'a>(rules: impl Iterator<Item = &'a RouteRule>) -> Self {
        let mut ix = Index::default();
        for (i, rule) in rules.enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match &rule.host {
                HostMatch::Exact(h) => ix.exact.entry(h.as_str().into()).or_default().add(rule, i),
                HostMatch::Suffix(sfx) => {
                    ix.wildcard
                        .entry(sfx.as_str().into())
                        .or_default()
                        .add(rule, i);
                    ix.wildcard_all.add(rule, i);
                }
                HostMatch::Any => ix.any.add(rule, i),
            }
        }
        ix
    }

    /// Candidate entries for a request, in rank order (each still to be checked in full).
    pub(super) fn candidates<'a, 'p>(
        &'a self,
        host: Option<&str>,
        path: &'p str,
    ) -> impl Iterator<Item = usize> + use<'a, 'p> {
        let seg = first_segment(path);
        let mut buf = [0u8; MAX_HOST];
        let host = host.and_then(|h| lower(h, &mut buf));
        let exact: Option<&'a ClassIndex> = host.and_then(|h| self.exact.get(h));
        // Wildcard routes rank by suffix length, longest first: the host's suffixes from its
        // first dot to its last come in that order, and each names at most one suffix entry.
        let mut wildcard: [Option<&'a ClassIndex>; 8] = [None; 8];
        if let Some(h) = host {
            let mut hits = h
                .match_indices('.')
                .filter_map(|(pos, _)| self.wildcard.get(&h[pos..]));
            for slot in wildcard.iter_mut() {
                *slot = hits.next();
            }
            if hits.next().is_some() {
                // More than eight wildcard suffixes of one host: check them all, in rank order.
                wildcard = [None; 8];
                wildcard[0] = Some(&self.wildcard_all);
            }
        }
        exact
            .into_iter()
            .chain(wildcard.into_iter().flatten())
            .chain(std::iter::once(&self.any))
            .flat_map(move |c| c.candidates(seg))
            .map(|i| i as usize)
    }
}

/// `host` in lower case, in `buf`; `None` when too long to be a host (such a request matches
/// no exact-host route: none can be that long).
fn lower<'b>(host: &str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let b = host.as_bytes();
    let out = buf.get_mut(..b.len())?;
    for (o, c) in out.iter_mut().zip(b) {
        *o = c.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// The first segment of `/a/b` is `a`; of `/` it is `` (empty); a path not starting with `/`
/// (`*`) has none.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    Some(rest.split('/').next().unwrap_or(""))
}

/// Two ascending lists merged into one ascending sequence.
pub(super) struct Merge<'a> {
    a: &'a [u32],
    b: &'a [u32],
}

impl Iterator for Merge<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(x), Some(y)) => x < y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let list = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(*first)
    }
}
