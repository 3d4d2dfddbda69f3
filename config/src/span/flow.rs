//! Flow collections (`{addr: "a:1", weight: 2}`, `[x, y]`, over several lines too) for
//! `span.rs`: each entry with its extent and the comma after it.

use super::{Doc, Entry, Node, Value};

impl Doc<'_> {
    /// Skips white space, line breaks and comments inside a flow collection.
    pub(super) fn ws(&self, mut p: usize) -> usize {
        loop {
            match self.b.get(p) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => p += 1,
                Some(b'#') => p = self.line_end(p),
                _ => return p,
            }
        }
    }

    /// The flow node at `pos` and the offset after it.
    pub(super) fn flow_node(&self, pos: usize) -> Option<(Value, usize)> {
        let b = self.b;
        match *b.get(pos)? {
            open @ (b'[' | b'{') => {
                let close = if open == b'[' { b']' } else { b'}' };
                let mut entries = Vec::new();
                let mut p = self.ws(pos + 1);
                loop {
                    if *b.get(p)? == close {
                        let value = if open == b'[' {
                            Value::Seq(entries)
                        } else {
                            Value::Map(entries)
                        };
                        return Some((value, p + 1));
                    }
                    let (key, value, end) = if open == b'[' {
                        let (value, end) = self.flow_node(p)?;
                        if self.b.get(self.ws(end)) == Some(&b':') {
                            return None; // a single-pair mapping inside [...]
                        }
                        (String::new(), value, end)
                    } else {
                        self.flow_entry(p)?
                    };
                    let q = self.ws(end);
                    let (blank_end, next) = match *b.get(q)? {
                        b',' => (q + 1, self.ws(q + 1)),
                        c if c == close => (end, q),
                        _ => return None,
                    };
                    entries.push(Entry {
                        key,
                        node: Node {
                            at: p,
                            blank: p..blank_end,
                        },
                        value,
                    });
                    p = next;
                }
            }
            b'&' | b'!' => {
                let mut p = pos;
                while p < b.len() && !matches!(b[p], b' ' | b'\t' | b'\r' | b'\n') {
                    p += 1;
                }
                self.flow_node(self.ws(p))
            }
            _ => {
                let (_, end) = self.flow_scalar(pos)?;
                Some((Value::Scalar, end))
            }
        }
    }

    /// `key: value` (or a bare `key`) inside `{...}`.
    fn flow_entry(&self, pos: usize) -> Option<(String, Value, usize)> {
        let (key, key_end) = self.flow_scalar(pos)?;
        let q = self.ws(key_end);
        if self.b.get(q) != Some(&b':') {
            return Some((key, Value::Scalar, key_end));
        }
        let r = self.ws(q + 1);
        match self.b.get(r) {
            Some(b',' | b'}') => Some((key, Value::Scalar, q + 1)),
            _ => {
                let (value, end) = self.flow_node(r)?;
                Some((key, value, end))
            }
        }
    }

    /// A scalar inside a flow collection: its text and the offset after it.
    fn flow_scalar(&self, pos: usize) -> Option<(String, usize)> {
        let b = self.b;
        match *b.get(pos)? {
            b'"' | b'\'' => self.quoted(pos),
            b'[' | b'{' | b']' | b'}' | b',' | b'?' => None,
            _ => {
                let mut i = pos;
                while i < b.len() {
                    let c = b[i];
                    let colon = c == b':'
                        && matches!(
                            b.get(i + 1),
                            None | Some(
                                b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'{' | b'}'
                            )
                        );
                    let comment = c == b'#' && i > pos && matches!(b[i - 1], b' ' | b'\t');
                    if matches!(c, b',' | b'[' | b']' | b'{' | b'}' | b'\n') || colon || comment {
                        break;
                    }
                    i += 1;
                }
                let end = pos + self.text[pos..i].trim_end().len();
                (end > pos).then(|| (self.text[pos..end].to_string(), end))
            }
        }
    }
}
