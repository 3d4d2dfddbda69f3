//! Finds where one node of a YAML document is written, by key path as serde_yaml names it
//! (`server.backends[1].addr`, keys as written): the byte offset of its key (or of its `-`), and
//! the bytes that make up the entry, so that it can be blanked out of the text and the document
//! parsed again without it (see `collect.rs`). It reads block mappings and sequences, flow
//! collections (`{a: 1}`, `[x, y]`, over several lines too), quoted and plain scalars, comments
//! and anchors/tags before a value; for anything else (`? ` keys, pairs inside `[...]`) it finds
//! nothing, and the caller stops there.

use crate::locate::key_matches;
use std::ops::Range;

/// One mapping entry or sequence item in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// Byte offset of the key, or of the item (its `-` in a block sequence).
    pub at: usize,
    /// The bytes of the entry (key and value; a flow entry's comma too).
    pub blank: Range<usize>,
}

/// The node at `path` (`""` has none: the root is not an entry).
pub(crate) fn find(text: &str, path: &str) -> Option<Node> {
    Doc::new(text).walk(path)?.0
}

/// The second entry of the mapping at `map_path` whose key is `field` or an alias spelling of it
/// (serde's `duplicate field` error names the mapping, not the entry).
pub(crate) fn find_duplicate(text: &str, map_path: &str, field: &str) -> Option<Node> {
    let doc = Doc::new(text);
    let (_, value) = doc.walk(map_path)?;
    let (true, entries) = doc.children(value)? else {
        return None;
    };
    entries
        .into_iter()
        .filter(|e| e.key == field || key_matches(&e.key, field))
        .nth(1)
        .map(|e| e.node)
}

/// 1-based line and column (in characters) of byte offset `pos`.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// Replaces the characters of `range` with spaces, keeping line breaks, so that every other
/// node keeps its line and column.
pub(crate) fn blank(text: &mut String, range: Range<usize>) {
    let spaces: String = text[range.clone()]
        .chars()
        .map(|c| if c == '\n' || c == '\r' { c } else { ' ' })
        .collect();
    text.replace_range(range, &spaces);
}

struct Line {
    start: usize,
    /// End of the line's text (before `\r\n` / `\n`).
    end: usize,
    indent: usize,
    /// Not blank, not only a comment, not a document marker.
    sig: bool,
}

/// A node written in block context: it starts at `pos` on line `line`; the lines after it up to
/// `end` (exclusive) are its own or its children's.
#[derive(Clone, Copy)]
struct Block {
    pos: usize,
    line: usize,
    end: usize,
}

enum Value {
    /// Not yet read (block context).
    Block(Block),
    Map(Vec<Entry>),
    Seq(Vec<Entry>),
    Scalar,
}

struct Entry {
    /// The key as written (unquoted); empty for sequence items.
    key: String,
    node: Node,
    value: Value,
}

struct Doc<'a> {
    text: &'a str,
    b: &'a [u8],
    lines: Vec<Line>,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        for piece in text.split('\n') {
            let body = piece.strip_suffix('\r').unwrap_or(piece);
            let trimmed = body.trim();
            let indent = body.len() - body.trim_start_matches(' ').len();
            // `---` / `...` alone or before a comment (content after `--- ` is not read).
            let marker = (body.starts_with("---") || body.starts_with("..."))
                && (body.len() == 3 || body[3..].starts_with([' ', '\t']));
            lines.push(Line {
                start,
                end: start + body.len(),
                indent,
                sig: !trimmed.is_empty() && !trimmed.starts_with('#') && !marker,
            });
            start += piece.len() + 1;
        }
        Doc {
            text,
            b: text.as_bytes(),
            lines,
        }
    }

    fn next_sig(&self, from: usize, end: usize) -> Option<usize> {
        (from..end).find(|&i| self.lines[i].sig)
    }

    fn last_sig(&self, from: usize, end: usize) -> usize {
        (from..end)
            .rev()
            .find(|&i| self.lines[i].sig)
            .unwrap_or(from)
    }

    fn root(&self) -> Option<Value> {
        let n = self.lines.len();
        let j = self.next_sig(0, n)?;
        let l = &self.lines[j];
        Some(Value::Block(Block {
            pos: l.start + l.indent,
            line: j,
            end: n,
        }))
    }

    /// Follows `path` from the root: the entry it names (none for `""`) and its value.
    fn walk(&self, path: &str) -> Option<(Option<Node>, Value)> {
        let mut value = self.root()?;
        let mut node = None;
        let mut rest = path;
        while !rest.is_empty() {
            let (is_map, mut entries) = self.children(value)?;
            let entry = if let Some(r) = rest.strip_prefix('[') {
                let close = r.find(']')?;
                let n: usize = r[..close].parse().ok()?;
                rest = &r[close + 1..];
                if is_map {
                    return None;
                }
                entries.into_iter().nth(n)?
            } else {
                let r = rest.strip_prefix('.').unwrap_or(rest);
                if !is_map {
                    return None;
                }
                // The longest key that the path continues from (keys may contain dots), else
                // another spelling of the next key (`tcp_pool` for `tcpPool`, an alias).
                let fits = |k: &str| {
                    !k.is_empty()
                        && r.strip_prefix(k)
                            .is_some_and(|t| t.is_empty() || t.starts_with(['.', '[']))
                };
                let seg = &r[..r.find(['.', '[']).unwrap_or(r.len())];
                if seg.is_empty() {
                    return None;
                }
                let exact = (0..entries.len()).filter(|&i| fits(&entries[i].key)).fold(
                    None,
                    |best: Option<usize>, i| match best {
                        Some(b) if entries[b].key.len() >= entries[i].key.len() => Some(b),
                        _ => Some(i),
                    },
                );
                let (i, len) = match exact {
                    Some(i) => (i, entries[i].key.len()),
                    None => (
                        entries.iter().position(|e| key_matches(&e.key, seg))?,
                        seg.len(),
                    ),
                };
                rest = &r[len..];
                entries.swap_remove(i)
            };
            node = Some(entry.node);
            value = entry.value;
        }
        Some((node, value))
    }

    /// The entries of a mapping (`true`) or the items of a sequence; `None` for a scalar.
    fn children(&self, value: Value) -> Option<(bool, Vec<Entry>)> {
        match value {
            Value::Map(e) => Some((true, e)),
            Value::Seq(e) => Some((false, e)),
            Value::Scalar => None,
            Value::Block(b) => match self.b.get(b.pos)? {
                b'[' | b'{' => self.children(self.flow_node(b.pos)?.0),
                b'-' if self.is_dash(b.pos) => Some((false, self.block_seq(b)?)),
                b'?' => None,
                _ => {
                    self.parse_key(b.pos)?;
                    Some((true, self.block_map(b)?))
                }
            },
        }
    }

    fn line_end(&self, pos: usize) -> usize {
        self.text[pos..].find('\n').map_or(self.b.len(), |i| {
            let e = pos + i;
            if e > pos && self.b[e - 1] == b'\r' {
                e - 1
            } else {
                e
            }
        })
    }

    fn is_dash(&self, pos: usize) -> bool {
        self.b.get(pos) == Some(&b'-')
            && matches!(
                self.b.get(pos + 1),
                None | Some(b' ' | b'\t' | b'\r' | b'\n')
            )
    }

    /// Where each entry (`dash`: item) of the block collection `b` starts, and the line after it.
    fn block_starts(&self, b: Block, dash: bool) -> Vec<(usize, usize)> {
        let col = b.pos - self.lines[b.line].start;
        let mut starts = vec![(b.line, b.pos)];
        let mut end = b.end;
        for i in b.line + 1..b.end {
            let l = &self.lines[i];
            if !l.sig || l.indent > col {
                continue;
            }
            let at_dash = l.indent == col && self.is_dash(l.start + col);
            if l.indent < col || (dash && !at_dash) {
                end = i;
                break;
            }
            // In a mapping, a `-` at the keys' column is a sequence value written unindented.
            if dash || !at_dash {
                starts.push((i, l.start + col));
            }
        }
        starts.push((end, 0));
        starts
    }

    fn block_map(&self, b: Block) -> Option<Vec<Entry>> {
        let starts = self.block_starts(b, false);
        let mut entries = Vec::new();
        for w in starts.windows(2) {
            let ((line, pos), (next, _)) = (w[0], w[1]);
            let (key, after) = self.parse_key(pos)?;
            let last = self.last_sig(line, next);
            entries.push(Entry {
                key,
                node: Node {
                    at: pos,
                    blank: pos..self.lines[last].end,
                },
                value: self.value_at(after, line, next),
            });
        }
        Some(entries)
    }

    fn block_seq(&self, b: Block) -> Option<Vec<Entry>> {
        let starts = self.block_starts(b, true);
        let mut items = Vec::new();
        for w in starts.windows(2) {
            let ((line, pos), (next, _)) = (w[0], w[1]);
            let last = self.last_sig(line, next);
            items.push(Entry {
                key: String::new(),
                node: Node {
                    at: pos,
                    blank: pos..self.lines[last].end,
                },
                value: self.value_at(pos + 1, line, next),
            });
        }
        Some(items)
    }

    /// The value that starts after a key's colon or an item's dash at `pos` on `line`: inline,
    /// or on the next significant line before `end`.
    fn value_at(&self, mut pos: usize, line: usize, end: usize) -> Value {
        let line_end = self.lines[line].end;
        loop {
            while pos < line_end && matches!(self.b[pos], b' ' | b'\t') {
                pos += 1;
            }
            // Anchors and tags before the value.
            if pos < line_end && matches!(self.b[pos], b'&' | b'!') {
                while pos < line_end && !matches!(self.b[pos], b' ' | b'\t') {
                    pos += 1;
                }
                continue;
            }
            break;
        }
        if pos < line_end && self.b[pos] != b'#' {
            return Value::Block(Block { pos, line, end });
        }
        match self.next_sig(line + 1, end) {
            Some(j) => Value::Block(Block {
                pos: self.lines[j].start + self.lines[j].indent,
                line: j,
                end,
            }),
            None => Value::Scalar,
        }
    }

    /// A block mapping key at `pos` (`name:`, `"name":`): the key and the offset after `:`.
    fn parse_key(&self, pos: usize) -> Option<(String, usize)> {
        let end = self.line_end(pos);
        let b = self.b;
        if matches!(b[pos], b'"' | b'\'') {
            let (key, mut p) = self.quoted(pos)?;
            while p < end && matches!(b[p], b' ' | b'\t') {
                p += 1;
            }
            return (p < end && b[p] == b':').then_some((key, p + 1));
        }
        if matches!(
            b[pos],
            b'[' | b'{' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>'
        ) {
            return None;
        }
        for i in pos..end {
            if b[i] == b'#' && i > pos && matches!(b[i - 1], b' ' | b'\t') {
                return None;
            }
            if b[i] == b':' && (i + 1 == end || matches!(b[i + 1], b' ' | b'\t')) {
                let key = self.text[pos..i].trim_end();
                return (!key.is_empty()).then(|| (key.to_string(), i + 1));
            }
        }
        None
    }

    /// A quoted scalar at `pos`: its text and the offset after the closing quote.
    fn quoted(&self, pos: usize) -> Option<(String, usize)> {
        let (b, q) = (self.b, self.b[pos]);
        let mut i = pos + 1;
        while i < b.len() {
            if q == b'"' && b[i] == b'\\' {
                i += 2;
                continue;
            }
            if b[i] == q {
                if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                let inner = &self.text[pos + 1..i];
                let key = if q == b'\'' {
                    inner.replace("''", "'")
                } else {
                    inner.to_string()
                };
                return Some((key, i + 1));
            }
            i += 1;
        }
        None
    }
}

mod flow;
#[cfg(test)]
mod tests;
